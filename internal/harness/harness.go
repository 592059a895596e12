// Package harness starts hongbao processes (servers and load clients) as
// children of a driver such as `hongbao demo` or `hongbao bench`, talks to
// their admin APIs and measures them from outside. Children die with the
// driver (PDEATHSIG) and are stopped with SIGTERM, so a run leaves nothing
// behind.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"hongbao/internal/adminauth"
	"hongbao/internal/limits"
	"hongbao/internal/procstat"
	"hongbao/internal/server"
)

// Proc is a running child process.
type Proc struct {
	Name   string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stdout bytes.Buffer
}

// Start runs bin with args; its stderr goes to logw (nil: discarded).
func Start(name, bin string, args []string, logw io.Writer) (*Proc, error) {
	return StartEnv(name, bin, args, nil, logw)
}

// StartEnv is Start with env (NAME=value) added to this process's
// environment for the child.
func StartEnv(name, bin string, args, env []string, logw io.Writer) (*Proc, error) {
	p := &Proc{Name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = logw
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the child has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Sample reads the child's CPU time and RSS.
func (p *Proc) Sample() (procstat.Sample, error) { return procstat.Read(p.Pid()) }

// Stop sends SIGTERM and waits up to grace before killing; it returns the
// child's exit error, if any.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v and was killed", p.Name, grace)
	}
	return p.exitErr()
}

// Kill sends SIGKILL (a crash: no chance to flush or clean up) and waits
// for the child to be gone.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Wait waits for the child to exit by itself.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.exitErr()
	case <-ctx.Done():
		_ = p.Stop(5 * time.Second)
		return ctx.Err()
	}
}

func (p *Proc) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("%s: %w", p.Name, p.err)
	}
	return nil
}

// Stdout is what the child printed on standard output (complete after exit).
func (p *Proc) Stdout() []byte { return p.stdout.Bytes() }

// FreePort returns a loopback address with a port that was free a moment
// ago, for a child to listen on, and that no earlier call returned. It is
// chosen below the ephemeral port range when there is room: the kernel
// never gives such a port to an outgoing connection, so it cannot be taken
// between now and the child's bind by one of the run's own connections
// (with a hundred children pushing samples, a port picked from the
// ephemeral range was, once in 52). Remembering the ports handed out keeps
// two children started close together from getting the same one before
// either has bound it. Without it, a million-user run (156 ports drawn
// from the 9,216 below 10240) failed at the start when a client's admin
// port was "already in use".
func FreePort() (string, error) {
	given.Lock()
	defer given.Unlock()
	if given.ports == nil {
		given.ports = make(map[int]bool)
	}
	if lo, _, err := limits.PortRange(); err == nil && lo > 2048 {
		for range 64 {
			if p := 1024 + mrand.IntN(lo-1024); !given.ports[p] && portFree(p) {
				given.ports[p] = true
				return fmt.Sprintf("127.0.0.1:%d", p), nil
			}
		}
	}
	for range 64 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !given.ports[p] {
			given.ports[p] = true
			return ln.Addr().String(), nil
		}
	}
	return "", errors.New("harness: no free loopback port not handed out before")
}

// given holds the ports FreePort has handed out.
var given struct {
	sync.Mutex
	ports map[int]bool
}

// portFree reports whether a listener could bind 127.0.0.1:p just now.
func portFree(p int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// Admin is a client of an admin HTTP API (server or load client).
type Admin struct {
	Base  string // http://host:port
	Token string // bearer token sent with every request ("": none)
	hc    http.Client
}

// Addr is the admin API's host:port.
func (a *Admin) Addr() string { return strings.TrimPrefix(a.Base, "http://") }

// NewAdmin returns a client of the admin API at addr (host:port).
func NewAdmin(addr string) *Admin {
	return &Admin{Base: "http://" + addr, hc: http.Client{Timeout: 5 * time.Second}}
}

// Get decodes the JSON at path into v.
func (a *Admin) Get(path string, v any) error { return a.do(http.MethodGet, path, nil, v) }

// Post sends body as JSON to path and decodes the answer into v.
func (a *Admin) Post(path string, body, v any) error { return a.do(http.MethodPost, path, body, v) }

func (a *Admin) do(method, path string, body, v any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.Base+path, r)
	if err != nil {
		return err
	}
	adminauth.SetHeader(req, a.Token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

// WaitHealthy polls /healthz until it answers 200, the child exits, or d passes.
func (a *Admin) WaitHealthy(p *Proc, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := a.hc.Get(a.Base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited before it was ready: %v", p.Name, p.exitErr())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v", p.Name, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ServerStats reads a server's /api/stats.
func (a *Admin) ServerStats() (server.Stats, error) {
	var s server.Stats
	return s, a.Get("/api/stats", &s)
}

// StartCampaign starts a shake campaign on a server.
func (a *Admin) StartCampaign(spec server.CampaignSpec) (server.CampaignInfo, error) {
	var info server.CampaignInfo
	return info, a.Post("/api/campaigns", spec, &info)
}

// ErrChildDied is returned when a child exits while it should be running.
var ErrChildDied = errors.New("child process died")

// Self is the path of the running hongbao binary, to start children with.
func Self() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the hongbao binary: %w", err)
	}
	return p, nil
}

// StopCampaign stops a campaign on a server.
func (a *Admin) StopCampaign(id uint32) (server.CampaignInfo, error) {
	var info server.CampaignInfo
	return info, a.Post(fmt.Sprintf("/api/campaigns/%d/stop", id), nil, &info)
}
