package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/client"
	"hongbao/internal/harness"
)

// adminGet sends method path to an admin listener with a bearer token
// ("" for none) and returns the status and body.
func adminGet(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startServerProc starts `hongbao server` with args and env on free
// loopback ports, waits until it is healthy and stops it with the test.
// It returns the client address, the admin base URL and a stop function
// that returns the server's log.
func startServerProc(t *testing.T, args, env []string) (addr, base string, stop func() string) {
	t.Helper()
	addr, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"server", "--listen", addr, "--admin", admin}, args...)
	p, err := harness.StartEnv("server", bin, args, env, logf)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() string {
		if !stopped {
			stopped = true
			if err := p.Stop(10 * time.Second); err != nil {
				t.Errorf("server stop: %v", err)
			}
			logf.Close()
		}
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	t.Cleanup(func() { stop() })
	if err := harness.NewAdmin(admin).WaitHealthy(p, 10*time.Second); err != nil {
		t.Fatalf("%v\nlog:\n%s", err, stop())
	}
	return addr, "http://" + admin, stop
}

// TestSecretNeverInPprofCmdline: a real server process given its secret on
// the command line, in a file or in the environment serves a
// /debug/pprof/cmdline without it (and only to holders of the admin
// token); only the command-line form warns, and no form logs the secret.
func TestSecretNeverInPprofCmdline(t *testing.T) {
	const secret = "hunter2-the-token-secret"
	const token = "cmdline-test-admin-token-0123"
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		warn bool
	}{
		{"--secret", []string{"--secret", secret}, nil, true},
		{"--secret=", []string{"--secret=" + secret}, nil, true},
		{"--secret-file", []string{"--secret-file", secretFile}, nil, false},
		{"HONGBAO_SECRET", nil, []string{"HONGBAO_SECRET=" + secret}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--ledger=false", "--data-dir", t.TempDir()}, tc.args...)
			addr, base, stop := startServerProc(t, args, append([]string{"HONGBAO_ADMIN_TOKEN=" + token}, tc.env...))
			if code, _ := adminGet(t, "GET", base+"/debug/pprof/cmdline", "", ""); code != http.StatusUnauthorized {
				t.Errorf("cmdline without the token: %d, want 401", code)
			}
			code, body := adminGet(t, "GET", base+"/debug/pprof/cmdline", token, "")
			if code != 200 || !strings.Contains(body, "server") {
				t.Fatalf("cmdline with the token: %d %q", code, body)
			}
			if strings.Contains(body, secret) || strings.Contains(body, "hunter2") {
				t.Errorf("cmdline reveals the secret: %q", strings.ReplaceAll(body, "\x00", " "))
			}
			if tc.warn && !strings.Contains(body, "REDACTED") {
				t.Errorf("cmdline %q: want the secret flag's value shown as REDACTED", body)
			}
			// A token minted with the secret logs in: the server really
			// uses the secret it was given.
			out, stderr, rc := run(t, []string{"HONGBAO_SECRET=" + secret}, "token", "--user", "7")
			if rc != 0 {
				t.Fatalf("token: %d %s", rc, stderr)
			}
			lt, err := auth.ParseToken(strings.TrimSpace(out))
			if err != nil {
				t.Fatal(err)
			}
			c, err := client.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.LoginToken(7, lt); err != nil {
				t.Errorf("login with a token minted from the same secret: %v", err)
			}
			c.Close()
			log := stop()
			if strings.Contains(log, secret) || strings.Contains(log, token) {
				t.Errorf("the log carries a secret:\n%s", log)
			}
			warned := strings.Contains(log, "level=WARN") && strings.Contains(log, "--secret on the command line is visible")
			if warned != tc.warn {
				t.Errorf("warned about --secret: %v, want %v; log:\n%s", warned, tc.warn, log)
			}
		})
	}
}

// TestGeneratedAdminToken: without a token given, the server generates
// one into <data-dir>/admin.token (0600), logs the file's path but not the
// token, and refuses POSTs without it.
func TestGeneratedAdminToken(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	_, base, stop := startServerProc(t, []string{"--data-dir", data}, []string{"HONGBAO_SECRET=s3cret-generated-test"})
	path := filepath.Join(data, "admin.token")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	tok := strings.TrimSpace(string(b))
	if len(tok) != 64 {
		t.Fatalf("generated token %d characters, want 64", len(tok))
	}
	const spec = `{"count":10,"rate":10,"min":1,"max":2}`
	if code, _ := adminGet(t, "POST", base+"/api/campaigns", "", spec); code != http.StatusUnauthorized {
		t.Errorf("POST /api/campaigns without the token: %d, want 401", code)
	}
	if code, body := adminGet(t, "POST", base+"/api/campaigns", tok, spec); code != http.StatusCreated {
		t.Errorf("POST /api/campaigns with the token: %d %s", code, body)
	}
	if code, _ := adminGet(t, "GET", base+"/api/campaigns", "", ""); code != 200 {
		t.Errorf("GET /api/campaigns without a token: %d, want 200", code)
	}
	// The audit command reads the same token from the file.
	if _, stderr, code := run(t, nil, "audit", "--admin", strings.TrimPrefix(base, "http://")); code != 1 || !strings.Contains(stderr, "401") {
		t.Errorf("audit without the token: exit %d %s, want 1 and 401", code, stderr)
	}
	if out, stderr, code := run(t, nil, "audit", "--admin", strings.TrimPrefix(base, "http://"), "--admin-token-file", path); code != 0 {
		t.Errorf("audit with --admin-token-file: exit %d %s %s", code, out, stderr)
	}
	log := stop()
	if !strings.Contains(log, "admin token generated") || !strings.Contains(log, path) || strings.Contains(log, tok) {
		t.Errorf("log should name %s and not carry the token:\n%s", path, log)
	}
}

// TestAdminAuthOffOnLoopback: --admin-auth=false on a loopback admin
// serves POSTs without a token (off any other address it exits 2, see
// TestBadFlagsExit2WithReason).
func TestAdminAuthOffOnLoopback(t *testing.T) {
	_, base, _ := startServerProc(t, []string{"--ledger=false", "--data-dir", t.TempDir(), "--admin-auth=false"}, []string{"HONGBAO_SECRET=s"})
	if code, body := adminGet(t, "POST", base+"/api/campaigns", "", `{"count":10,"rate":10,"min":1,"max":2}`); code != http.StatusCreated {
		t.Errorf("POST without a token, auth off: %d %s", code, body)
	}
}
