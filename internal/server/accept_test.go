package server

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hongbao/internal/client"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

// health asks /healthz without keeping the connection (these tests count
// descriptors).
func health(t *testing.T, s *Server) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get("http://" + s.AdminAddr() + "/healthz")
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMaxConnsFitsTheOpenFileLimit(t *testing.T) {
	const limit = 1000
	reserve := fdReserve(1)
	cases := []struct {
		max     int
		want    int   // MaxConns after the defaults
		wantErr error // nil: accepted
		say     string
	}{
		{0, limit - reserve, nil, ""},
		{10, 10, nil, ""},
		{limit - reserve, limit - reserve, nil, ""},
		{limit - reserve + 1, 0, ErrTooFewFiles, "raise ulimit -n to 1001 or lower --max-conns to 901"},
		{5000, 0, ErrTooFewFiles, "raise ulimit -n to 5099 or lower --max-conns to 901"},
		{-1, 0, ErrBadOptions, "must not be negative"},
	}
	for _, c := range cases {
		o := Options{Loops: 1, MaxConns: c.max}
		err := o.setMaxConns(limit)
		switch {
		case c.wantErr == nil && (err != nil || o.MaxConns != c.want):
			t.Errorf("max %d: got %d, %v; want %d", c.max, o.MaxConns, err, c.want)
		case c.wantErr != nil && (!errors.Is(err, c.wantErr) || !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), c.say)):
			t.Errorf("max %d: error %v, want %v saying %q", c.max, err, c.wantErr, c.say)
		}
	}
	o := Options{Loops: 1}
	if err := o.setMaxConns(reserve); !errors.Is(err, ErrTooFewFiles) {
		t.Errorf("a limit that leaves no connection: %v", err)
	}
}

// TestShedsBeforeEMFILEAndAcceptsAgain lowers this process's open-file
// limit so that its own descriptors (the clients' sockets are in this
// process too) use up the server's reserve: the server must refuse
// connections with "server full" while accept still has descriptors
// (gnet stops accepting for good on EMFILE), say 503 on /healthz, and
// take logins again once descriptors are free.
func TestShedsBeforeEMFILEAndAcceptsAgain(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	low := unix.Rlimit{Cur: uint64(len(fds) + 300), Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old) }) // after the server's Shutdown
	s := startServer(t, func(o *Options) { o.Loops = 1 })
	if want := int(low.Cur) - fdReserve(1); s.opts.MaxConns != want {
		t.Fatalf("default max conns %d, want %d", s.opts.MaxConns, want)
	}

	// Each connection costs two descriptors here, so the table fills
	// long before MaxConns connections.
	var held []*client.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var shedErr error
	for u := uint32(1); shedErr == nil; u++ {
		if int(u) > s.opts.MaxConns {
			t.Fatalf("%d logins and no connection shed", u-1)
		}
		c, err := client.Dial(s.Addr())
		if err != nil {
			t.Fatalf("dial %d: %v (the listener must live)", u, err)
		}
		if err := c.LoginToken(u, token(t, u, time.Hour)); err != nil {
			shedErr = err
			c.Close()
			break
		}
		held = append(held, c)
	}
	var se *client.ServerError
	if !errors.As(shedErr, &se) || se.Reason != proto.ReasonOverLimit {
		t.Fatalf("after %d logins: %v, want an error frame %q", len(held), shedErr, proto.ReasonOverLimit)
	}
	if len(held) >= s.opts.MaxConns {
		t.Fatalf("shed at %d connections, which is --max-conns %d: the descriptor guard did not act", len(held), s.opts.MaxConns)
	}
	code, body := health(t, s)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "open files at the limit") {
		t.Errorf("/healthz while the table is full: %d %q", code, body)
	}
	wait.For(t, 5*time.Second, "one connection shed and the rest held", func() bool {
		st := s.Stats()
		return st.Totals.Shed == 1 && st.Connections == int64(len(held))
	})

	for _, c := range held {
		c.Close()
	}
	held = nil
	wait.For(t, 5*time.Second, "connections closed on the server", func() bool { return s.Stats().Connections == 0 })
	if code, body := health(t, s); code != http.StatusOK {
		t.Fatalf("/healthz after the clients left: %d %q", code, body)
	}
	c := login(t, s, 1)
	if _, err := c.Shake(); err != nil {
		t.Fatalf("shake after the limit: %v", err)
	}
}

// TestHealthzSaysWhenTheLedgerCannotWrite makes the ledger's writes fail
// for real (RLIMIT_FSIZE 0: every write that would grow a file fails with
// EFBIG) and expects /healthz to say so with a 503.
func TestHealthzSaysWhenTheLedgerCannotWrite(t *testing.T) {
	s := startServer(t, func(o *Options) { o.DataDir = t.TempDir() })
	fund(t, s, 7, 100)
	if code, body := health(t, s); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	signal.Ignore(syscall.SIGXFSZ) // the write fails instead of killing the process
	defer signal.Reset(syscall.SIGXFSZ)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	zero := unix.Rlimit{Cur: 0, Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &zero); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_FSIZE, &old)

	c := login(t, s, 7)
	res, err := c.SendPacket(100, 1, 1, []uint32{8})
	if err != nil || res.Result != proto.ResultLedgerFailed {
		t.Fatalf("send with the disk refusing writes: %+v %v, want result %d", res, err, proto.ResultLedgerFailed)
	}
	code, body := health(t, s)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "ledger cannot write") || !strings.Contains(body, "file too large") {
		t.Fatalf("/healthz with a failed ledger: %d %q", code, body)
	}
	if !errors.Is(s.Health(), ErrLedgerFailed) || !errors.Is(s.led.Err(), syscall.EFBIG) {
		t.Fatalf("Health %v, ledger %v", s.Health(), s.led.Err())
	}
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestListenerDeathIsReported fills this process's descriptor table behind
// the server's back (a leak elsewhere in the process, which no reserve can
// foresee) so that accept meets EMFILE and gnet stops: the node must then
// say so, at ERROR and with 503 on /healthz, instead of looking healthy.
func TestListenerDeathIsReported(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	low := unix.Rlimit{Cur: uint64(len(fds) + 200), Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
	var logs syncBuffer
	s := startServer(t, func(o *Options) {
		o.Loops = 1
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	login(t, s, 1).Close()
	wait.For(t, 5*time.Second, "the first connection closed", func() bool { return s.Stats().Connections == 0 })

	// Take every free descriptor but one and connect with that one: the
	// server's accept finds none. (Again if something freed one meanwhile.)
	var leak []int
	defer func() {
		for _, fd := range leak {
			unix.Close(fd)
		}
	}()
	addr, err := net.ResolveTCPAddr("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	to := &unix.SockaddrInet4{Port: addr.Port}
	copy(to.Addr[:], addr.IP.To4())
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			t.Fatal("gnet kept running with no descriptor left to accept: this test no longer reaches the fallback")
		}
		for {
			fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				break
			}
			leak = append(leak, fd)
		}
		unix.Close(leak[len(leak)-1])
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			leak = leak[:len(leak)-1]
			continue
		}
		leak[len(leak)-1] = fd
		if err := unix.Connect(fd, to); err != nil {
			t.Fatalf("connect: %v", err)
		}
		select {
		case <-s.runDone:
		case <-time.After(200 * time.Millisecond):
			continue
		}
		break
	}
	for _, fd := range leak {
		unix.Close(fd)
	}
	leak = nil
	code, body := health(t, s)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "the client listener stopped") {
		t.Errorf("/healthz after the listener stopped: %d %q", code, body)
	}
	if !strings.Contains(logs.String(), `level=ERROR msg="the client listener stopped`) {
		t.Errorf("no ERROR log of the stopped listener:\n%s", logs.String())
	}
}

// TestReusePortListenersShareOnePort: every event loop listens (SO_REUSEPORT)
// on the one port the server reports, also when asked for port 0, and a
// second server on a port that is taken refuses to start instead of
// sharing it.
func TestReusePortListenersShareOnePort(t *testing.T) {
	s := startServer(t, func(o *Options) { o.Loops = 3 })
	for u := uint32(1); u <= 30; u++ {
		login(t, s, u)
	}
	used := 0
	for _, l := range s.loops {
		if l.counters.opened.Load() > 0 {
			used++
		}
	}
	if used < 2 {
		t.Errorf("30 connections all went to one of 3 loops: the loops do not share the port")
	}

	o := Options{Listen: s.Addr(), Secret: testSecret, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(t.Context()); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("a second server on %s: %v, want address in use", s.Addr(), err)
	}
}
