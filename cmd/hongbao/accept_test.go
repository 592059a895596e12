package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/client"
	"hongbao/internal/harness"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

// holdEnv makes the test binary a holder process (see TestMain):
// "ADDR,SECRET,FIRST,N" logs in users FIRST..FIRST+N-1, one connection
// each, prints a holdResult line and holds the connections until its
// standard input closes.
const holdEnv = "HONGBAO_TEST_HOLD"

type holdResult struct {
	Held    int    `json:"held"`    // logged in and kept
	Shed    int    `json:"shed"`    // closed by the server as "server full"
	Refused int    `json:"refused"` // the dial failed
	Other   int    `json:"other"`   // any other failure
	LastErr string `json:"last_err,omitempty"`
}

func holdMain() int {
	f := strings.Split(os.Getenv(holdEnv), ",")
	if len(f) != 4 {
		fmt.Fprintln(os.Stderr, holdEnv, "wants ADDR,SECRET,FIRST,N")
		return 2
	}
	first, err1 := strconv.Atoi(f[2])
	n, err2 := strconv.Atoi(f[3])
	sg, err3 := auth.NewSigner([]byte(f[1]))
	if err := errors.Join(err1, err2, err3); err != nil {
		fmt.Fprintln(os.Stderr, holdEnv, err)
		return 2
	}
	var r holdResult
	var held []*client.Conn
	for i := range n {
		u := uint32(first + i)
		c, err := client.Dial(f[0])
		if err != nil {
			r.Refused++
			r.LastErr = err.Error()
			continue
		}
		err = c.LoginToken(u, sg.Mint(u, time.Now().Add(time.Hour)))
		var se *client.ServerError
		switch {
		case err == nil:
			r.Held++
			held = append(held, c)
			continue
		case errors.As(err, &se) && se.Reason == proto.ReasonOverLimit:
			r.Shed++
		default:
			r.Other++
			r.LastErr = err.Error()
		}
		c.Close()
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range held {
		c.Close()
	}
	return 0
}

// holder is a running holder process.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	res   chan holdResult
}

func startHolder(t *testing.T, addr, secret string, first, n int) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d,%d", holdEnv, addr, secret, first, n))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin, res: make(chan holdResult, 1)}
	t.Cleanup(func() { h.release() })
	go func() {
		var r holdResult
		line, err := bufio.NewReader(out).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &r)
		}
		if err != nil {
			r.Other, r.LastErr = -1, fmt.Sprintf("holder output %q: %v", line, err)
		}
		h.res <- r
		_, _ = io.Copy(io.Discard, out)
	}()
	return h
}

// release closes the holder's connections and waits for it to exit.
func (h *holder) release() error {
	if h.stdin != nil {
		h.stdin.Close()
		h.stdin = nil
		return h.cmd.Wait()
	}
	return nil
}

// TestAcceptSurvivesTheOpenFileLimit starts a server whose open-file limit
// is 400 and three processes that connect 150 users each: more connections
// than the server may have files. The server must keep --max-conns of them
// (its default: the limit less its reserve), close the rest at once as
// "server full", keep its listener, say 503 on /healthz while full, and
// take a new login once the holders are gone. (Before, accept hit EMFILE,
// gnet stopped its engine, every connection and the listener were closed,
// and /healthz still said 200.)
func TestAcceptSurvivesTheOpenFileLimit(t *testing.T) {
	const noFile, holders, each = 400, 3, 150
	secret := harness.NewSecret()
	dir := t.TempDir()
	srv, err := harness.StartServer(bin, dir, harness.ServerSpec{Secret: secret, NoFile: noFile})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(5 * time.Second)
	st, err := srv.Admin.ServerStats()
	if err != nil {
		t.Fatal(err)
	}
	maxConns := st.MaxConns
	if maxConns < noFile/2 || maxConns >= noFile {
		t.Fatalf("default max_conns %d for an open-file limit of %d", maxConns, noFile)
	}

	hs := make([]*holder, holders)
	for i := range hs {
		hs[i] = startHolder(t, srv.Addr, secret, 1+i*each, each)
	}
	var sum holdResult
	for i, h := range hs {
		select {
		case r := <-h.res:
			t.Logf("holder %d: %+v", i, r)
			sum.Held += r.Held
			sum.Shed += r.Shed
			sum.Refused += r.Refused
			sum.Other += r.Other
		case <-time.After(30 * time.Second):
			t.Fatalf("holder %d did not finish connecting", i)
		}
	}
	if sum.Held != maxConns || sum.Shed != holders*each-maxConns || sum.Refused != 0 || sum.Other != 0 {
		t.Fatalf("held %d shed %d refused %d other %d; want %d held and %d shed, none refused",
			sum.Held, sum.Shed, sum.Refused, sum.Other, maxConns, holders*each-maxConns)
	}

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.Admin.Base + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "full") {
		t.Errorf("/healthz while full: %d %q", code, body)
	}
	// Still full: one more is answered "server full" at once.
	c, err := client.Dial(srv.Addr)
	if err != nil {
		t.Fatalf("dial while full: %v (the listener must live)", err)
	}
	err = c.LoginToken(9999, mintFor(t, secret, 9999))
	c.Close()
	var se *client.ServerError
	if !errors.As(err, &se) || se.Reason != proto.ReasonOverLimit {
		t.Fatalf("login while full: %v, want %q", err, proto.ReasonOverLimit)
	}
	shed := uint64(sum.Shed + 1)
	if st, err = srv.Admin.ServerStats(); err != nil || st.Totals.Shed != shed || st.Connections != int64(maxConns) {
		t.Errorf("stats: shed %d connections %d (%v), want %d and %d", st.Totals.Shed, st.Connections, err, shed, maxConns)
	}
	if _, body := get("/metrics"); !strings.Contains(body, fmt.Sprintf("hongbao_disconnects_total{reason=\"over_limit\"} %d\n", shed)) {
		t.Errorf("/metrics has no over_limit count of %d", shed)
	}

	for i, h := range hs {
		if err := h.release(); err != nil {
			t.Errorf("holder %d: %v", i, err)
		}
	}
	wait.For(t, 10*time.Second, "/healthz 200 after the holders left", func() bool {
		code, _ := get("/healthz")
		return code == http.StatusOK
	})
	c, err = client.Dial(srv.Addr)
	if err != nil {
		t.Fatalf("dial after the limit: %v", err)
	}
	defer c.Close()
	if err := c.LoginToken(9999, mintFor(t, secret, 9999)); err != nil {
		t.Fatalf("login after the limit: %v", err)
	}
	if _, err := c.Shake(); err != nil {
		t.Fatalf("shake after the limit: %v", err)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
	if strings.Contains(string(log), "Accept() failed") || !strings.Contains(string(log), "connections shed") {
		t.Errorf("server log:\n%s", log)
	}
}

func mintFor(t *testing.T, secret string, user uint32) proto.Token {
	t.Helper()
	sg, err := auth.NewSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return sg.Mint(user, time.Now().Add(time.Hour))
}
