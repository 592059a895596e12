package adminauth

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tok = "a-good-admin-token-0123456789"

func serve(t *testing.T, h http.Handler, method, target, authz string) int {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestWrap(t *testing.T) {
	reached := 0
	inner := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached++ })
	h := Wrap(inner, tok, "/healthz", "/api/stats")
	tests := []struct {
		method, target, authz string
		want                  int
	}{
		{"GET", "/healthz", "", 200},
		{"HEAD", "/api/stats", "", 200},
		{"GET", "/api/stats?x=1", "", 200},
		{"POST", "/api/stats", "", 401},
		{"PUT", "/healthz", "", 401},
		{"GET", "/healthz/", "", 401},
		{"GET", "/api/stats/x", "", 401},
		{"GET", "/debug/pprof/cmdline", "", 401},
		{"GET", "/debug/pprof/cmdline", "Bearer " + tok, 200},
		{"GET", "/debug/pprof/cmdline", "bearer " + tok, 200},
		{"GET", "/debug/pprof/cmdline", "BEARER  " + tok + " ", 200},
		{"POST", "/api/campaigns", "Bearer " + tok, 200},
		{"POST", "/api/campaigns", "Bearer " + tok[:len(tok)-1], 401},
		{"POST", "/api/campaigns", "Bearer " + tok + "0", 401},
		{"POST", "/api/campaigns", "Bearer", 401},
		{"POST", "/api/campaigns", "Bearer ", 401},
		{"POST", "/api/campaigns", tok, 401},
		{"POST", "/api/campaigns", "Basic " + tok, 401},
		{"POST", "/api/campaigns", "Token " + tok, 401},
	}
	for _, tc := range tests {
		before := reached
		code := serve(t, h, tc.method, tc.target, tc.authz)
		if code != tc.want {
			t.Errorf("%s %s %q: %d, want %d", tc.method, tc.target, tc.authz, code, tc.want)
		}
		if (reached > before) != (tc.want == 200) {
			t.Errorf("%s %s %q: reached the handler %v", tc.method, tc.target, tc.authz, reached > before)
		}
	}
	// A refusal says how to authenticate.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/x", nil))
	if rec.Header().Get("WWW-Authenticate") == "" || !strings.Contains(rec.Body.String(), "Authorization: Bearer") {
		t.Errorf("401 without guidance: %v %q", rec.Header(), rec.Body.String())
	}
	// An empty token is auth off.
	if code := serve(t, Wrap(inner, ""), "POST", "/x", ""); code != 200 {
		t.Errorf("auth off: %d", code)
	}
}

// FuzzAuthorized: whatever the header, the request passes only when it is
// the scheme "Bearer" (any case) and exactly the token.
func FuzzAuthorized(f *testing.F) {
	for _, s := range []string{"Bearer " + tok, "bearer " + tok, "Bearer", "", "Basic x", "Bearer " + tok + "\x00", "Bearer\t" + tok} {
		f.Add(s)
	}
	h := Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), tok)
	f.Fuzz(func(t *testing.T, authz string) {
		req := httptest.NewRequest("POST", "/x", nil)
		req.Header["Authorization"] = []string{authz}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		v := authz
		ok := len(v) > 7 && strings.EqualFold(v[:7], "bearer ") && strings.TrimSpace(v[7:]) == tok
		if (rec.Code == 200) != ok {
			t.Fatalf("Authorization %q: %d", authz, rec.Code)
		}
	})
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7001": true, "127.1.2.3:0": true, "[::1]:7001": true, "localhost:7001": true, "LOCALHOST:1": true,
		"127.0.0.1": true, "::1": true,
		"0.0.0.0:7001": false, "[::]:7001": false, ":7001": false, "": false, "192.0.2.1:7001": false,
		"[2001:db8::1]:7001": false, "10.0.0.1:80": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
	if err := CheckOff("0.0.0.0:7001"); !errors.Is(err, ErrOffNotLoopback) {
		t.Errorf("CheckOff(0.0.0.0): %v", err)
	}
	if err := CheckOff("127.0.0.1:7001"); err != nil {
		t.Errorf("CheckOff(127.0.0.1): %v", err)
	}
}

func TestWarnExposed(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	WarnExposed(log, "admin", "127.0.0.1:7001", "everything")
	if buf.Len() != 0 {
		t.Errorf("warned for loopback: %s", buf.String())
	}
	WarnExposed(log, "admin", "0.0.0.0:7001", "pprof and campaigns")
	if s := buf.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "listener=admin") ||
		!strings.Contains(s, `exposes="pprof and campaigns"`) || !strings.Contains(s, "addr=0.0.0.0:7001") {
		t.Errorf("warning: %s", s)
	}
}

func TestTokenFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	path := filepath.Join(dir, "admin.token")
	// A file left with loose permissions is replaced, not reused.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	tk, err := NewToken()
	if err != nil || len(tk) != 64 {
		t.Fatalf("NewToken: %q %v", tk, err)
	}
	if other, _ := NewToken(); other == tk {
		t.Fatal("two tokens alike")
	}
	if err := WriteFile(path, tk); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v %v, want 0600", fi.Mode().Perm(), err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	got, err := Resolve(path, log)
	if err != nil || got != tk {
		t.Fatalf("Resolve(file) = %q %v, want the written token", got, err)
	}
	if logs.Len() != 0 {
		t.Errorf("a 0600 file warned: %s", logs.String())
	}
	// A readable-by-others file is used with a warning that never carries the token.
	loose := filepath.Join(t.TempDir(), "loose")
	if err := os.WriteFile(loose, []byte("  "+tok+"\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(loose, log); err != nil || got != tok {
		t.Fatalf("Resolve(loose) = %q %v", got, err)
	}
	if s := logs.String(); !strings.Contains(s, "readable by other users") || strings.Contains(s, tok) {
		t.Errorf("loose file log: %s", s)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := Resolve(empty, log); !errors.Is(err, ErrEmptyFile) {
		t.Errorf("empty file: %v", err)
	}
	short := filepath.Join(t.TempDir(), "short")
	_ = os.WriteFile(short, []byte("short"), 0o600)
	if _, err := Resolve(short, log); !errors.Is(err, ErrShortToken) {
		t.Errorf("short token: %v", err)
	}
	if _, err := Resolve(filepath.Join(t.TempDir(), "missing"), log); err == nil {
		t.Error("missing file accepted")
	}
	// Without a file: the environment, else nothing.
	t.Setenv(EnvToken, " "+tok+"\n")
	if got, err := Resolve("", log); err != nil || got != tok {
		t.Errorf("Resolve(env) = %q %v", got, err)
	}
	t.Setenv(EnvToken, "short")
	if _, err := Resolve("", log); !errors.Is(err, ErrShortToken) {
		t.Errorf("short env token: %v", err)
	}
	os.Unsetenv(EnvToken)
	if got, err := Resolve("", slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil || got != "" {
		t.Errorf("Resolve(nothing) = %q %v, want empty", got, err)
	}
}
