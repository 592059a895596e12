package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"hongbao/internal/adminauth"
	"hongbao/internal/proto"
)

// adminReq sends method path to s's admin listener with the given
// Authorization header ("" for none) and returns the status.
func adminReq(t *testing.T, s *Server, method, path, body, authz string) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminTokenGuardsPrivateAndStateChangingEndpoints: pprof, every POST,
// the classic control GETs, the audit and balances are refused (401)
// without the admin token or with a wrong one and served with it; the
// read-only public endpoints answer without it.
func TestAdminTokenGuardsPrivateAndStateChangingEndpoints(t *testing.T) {
	s := startServer(t, func(o *Options) { o.DataDir = t.TempDir(); o.Users = 100 })
	bearer := "Bearer " + testAdminToken
	guarded := []struct {
		method, path, body string
		want               int // with the token
	}{
		{"GET", "/debug/pprof/", "", 200},
		{"GET", "/debug/pprof/cmdline", "", 200},
		{"GET", "/debug/pprof/goroutine?debug=1", "", 200},
		{"GET", "/debug/pprof/heap", "", 200},
		{"POST", "/api/campaigns", `{"count":10,"rate":10,"min":1,"max":2}`, 201},
		{"POST", "/api/campaigns/1/stop", "", 200},
		{"GET", "/yaohongbao?qps=10&sum=10", "", 201},
		{"POST", "/yaohongbao?qps=10&sum=10", "", 201},
		{"GET", "/fahongbao?qps=1&sum=1&min=1&max=10", "", 201},
		{"POST", "/api/generators", `{"count":1,"rate":1,"from":1,"to":10}`, 201},
		{"GET", "/api/audit", "", 200},
		{"GET", "/api/balance/7", "", 200},
		{"POST", "/debug/monitor?paused=1", "", 404}, // guarded first; 404 because no --monitor
		{"POST", "/api/stats", "", 405},              // a method the open GET does not cover
		{"GET", "/api/stats/", "", 404},              // not the open path
		{"DELETE", "/api/campaigns", "", 405},
	}
	for _, g := range guarded {
		for _, authz := range []string{"", "Bearer", "Bearer ", "Bearer wrong-token-0123456789", "Basic " + testAdminToken,
			"Bearer " + testAdminToken + "x", "Bearer " + testAdminToken[:len(testAdminToken)-1]} {
			if code := adminReq(t, s, g.method, g.path, g.body, authz); code != http.StatusUnauthorized {
				t.Errorf("%s %s with Authorization %q: %d, want 401", g.method, g.path, authz, code)
			}
		}
		if code := adminReq(t, s, g.method, g.path, g.body, bearer); code != g.want {
			t.Errorf("%s %s with the token: %d, want %d", g.method, g.path, code, g.want)
		}
	}
	// The scheme is case-insensitive (RFC 7235).
	if code := adminReq(t, s, "GET", "/api/balance/7", "", "bearer "+testAdminToken); code != 200 {
		t.Errorf("lower-case 'bearer': %d, want 200", code)
	}
	for _, path := range []string{"/healthz", "/metrics", "/api/stats", "/api/campaigns", "/api/generators"} {
		for _, method := range []string{"GET", "HEAD"} {
			if code := adminReq(t, s, method, path, "", ""); code != 200 {
				t.Errorf("%s %s without a token: %d, want 200", method, path, code)
			}
		}
	}
	// The refused requests changed nothing: the campaigns and generators
	// are those started with the token.
	if n := len(s.Campaigns()); n != 3 {
		t.Errorf("%d campaigns, want the 3 started with the token", n)
	}
	if n := len(s.Generators()); n != 2 {
		t.Errorf("%d generators, want the 2 started with the token", n)
	}
}

// TestAdminAuthOff: with auth off on loopback everything is served without
// a token; off on an address other hosts can reach, or on with no token,
// the server refuses to be created.
func TestAdminAuthOff(t *testing.T) {
	s := startServer(t, func(o *Options) { o.AdminToken, o.AdminAuthOff = "", true })
	if code := adminReq(t, s, "POST", "/api/campaigns", `{"count":10,"rate":10,"min":1,"max":2}`, ""); code != http.StatusCreated {
		t.Errorf("POST /api/campaigns with auth off on loopback: %d, want 201", code)
	}
	if code := adminReq(t, s, "GET", "/debug/pprof/cmdline", "", ""); code != http.StatusOK {
		t.Errorf("pprof with auth off on loopback: %d, want 200", code)
	}
	for _, tc := range []struct {
		name  string
		admin string
		token string
		off   bool
	}{
		{"off on every interface", "0.0.0.0:0", "", true},
		{"off on every interface (IPv6)", "[::]:0", "", true},
		{"off with an empty host", ":0", "", true},
		{"off on a non-loopback IP", "192.0.2.1:0", "", true},
		{"on without a token", "127.0.0.1:0", "", false},
		{"on with a short token", "127.0.0.1:0", "short", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Listen: "127.0.0.1:0", Admin: tc.admin, AdminToken: tc.token, AdminAuthOff: tc.off, Secret: testSecret})
			if !errors.Is(err, ErrBadOptions) {
				t.Fatalf("New: %v, want ErrBadOptions", err)
			}
		})
	}
	for _, admin := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0"} {
		if _, err := New(Options{Listen: "127.0.0.1:0", Admin: admin, AdminAuthOff: true, Secret: testSecret}); err != nil {
			t.Errorf("auth off on %s: %v", admin, err)
		}
	}
	// Without an admin listener no token is needed.
	if _, err := New(Options{Listen: "127.0.0.1:0", Secret: testSecret}); err != nil {
		t.Errorf("no admin listener: %v", err)
	}
}

// TestMaxTokenTTL: a token whose expiry lies further ahead than the
// maximum lifetime is refused (token_expired); one within it logs in.
func TestMaxTokenTTL(t *testing.T) {
	servers := map[time.Duration]*Server{ // one per maximum, living for the whole test
		0:         startServer(t, nil),
		time.Hour: startServer(t, func(o *Options) { o.MaxTokenTTL = time.Hour }),
	}
	for _, tc := range []struct {
		name string
		max  time.Duration // 0: the default, 30 days
		ttl  time.Duration
		ok   bool
	}{
		{"default max, 1 hour", 0, time.Hour, true},
		{"default max, 29 days", 0, 29 * 24 * time.Hour, true},
		{"default max, 31 days", 0, 31 * 24 * time.Hour, false},
		{"default max, 100 years", 0, 100 * 365 * 24 * time.Hour, false},
		{"1h max, 59 minutes", time.Hour, 59 * time.Minute, true},
		{"1h max, 1h + clock skew", time.Hour, time.Hour + 50*time.Second, true},
		{"1h max, 2 hours", time.Hour, 2 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, servers[tc.max])
			tok := token(t, 42, tc.ttl)
			if err := c.Send(proto.AppendTokenLogin(nil, now64(), 42, &tok)); err != nil {
				t.Fatal(err)
			}
			if !tc.ok {
				expectClosed(t, c, proto.ReasonTokenExpired)
				return
			}
			f, err := c.Read()
			if err != nil || f.Cmd != proto.CmdLoginResp || f.Field(1) != proto.ResultOK {
				t.Fatalf("login with a %v token: %+v %v", tc.ttl, f.Header, err)
			}
		})
	}
}

// syncBuf is a log destination safe for concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestWarnsWhenListenersAreExposed: a client or admin listener on every
// interface logs a warning naming what is exposed; loopback ones do not.
// The only traffic goes to 127.0.0.1.
func TestWarnsWhenListenersAreExposed(t *testing.T) {
	var logs syncBuf
	s := startServer(t, func(o *Options) {
		o.Listen, o.Admin = "0.0.0.0:0", "0.0.0.0:0"
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	_, port, _ := net.SplitHostPort(s.AdminAddr())
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://127.0.0.1:"+port+"/healthz", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz on 127.0.0.1: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	out := logs.String()
	for _, want := range []string{
		`level=WARN msg="client listener reachable from other hosts" listener=client`,
		`level=WARN msg="admin listener reachable from other hosts" listener=admin`,
		"pprof, audit, balances and every state-changing endpoint to holders of the admin token",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	var quiet syncBuf
	startServer(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&quiet, nil)) })
	if strings.Contains(quiet.String(), "WARN") {
		t.Errorf("loopback server warned:\n%s", quiet.String())
	}
	if adminauth.Loopback(s.Addr()) {
		t.Errorf("%s counted as loopback", s.Addr())
	}
}
