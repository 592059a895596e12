package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/client"
	"hongbao/internal/proto"
)

var testSecret = []byte("test-secret")

// testAdminToken is the admin token of the servers startServer starts;
// httpDo sends it.
const testAdminToken = "test-admin-token-0123456789"

// startServer starts a real server on 127.0.0.1:0 and stops it with the test.
func startServer(t testing.TB, mod func(*Options)) *Server {
	t.Helper()
	o := Options{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Secret: testSecret, Sets: 8, AdminToken: testAdminToken,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// mint returns a token for user expiring at exp, signed with secret.
func mint(t testing.TB, secret []byte, user uint32, exp time.Time) proto.Token {
	t.Helper()
	sg, err := auth.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return sg.Mint(user, exp)
}

func token(t testing.TB, user uint32, ttl time.Duration) proto.Token {
	t.Helper()
	return mint(t, testSecret, user, time.Now().Add(ttl))
}

// dial connects to s without logging in; the connection closes with the test.
func dial(t testing.TB, s *Server) *client.Conn {
	t.Helper()
	c, err := client.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// login dials s and logs user in with a valid token.
func login(t testing.TB, s *Server, user uint32) *client.Conn {
	t.Helper()
	c := dial(t, s)
	if err := c.LoginToken(user, token(t, user, time.Hour)); err != nil {
		t.Fatalf("login %d: %v", user, err)
	}
	return c
}

// expectClosed reads from c, which must get the server's error frame with
// reason want as its next frame and then end of stream.
func expectClosed(t testing.TB, c *client.Conn, want proto.Reason) {
	t.Helper()
	f, err := c.Read()
	var se *client.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("want error frame %q, got frame %+v err %v", want, f.Header, err)
	}
	if se.Reason != want {
		t.Fatalf("server closed with %q (cause %#04x), want %q", se.Reason, uint16(se.Cause), want)
	}
	expectEOF(t, c)
}

// expectEOF reads c to its end, which must be a clean close with no more bytes.
func expectEOF(t testing.TB, c *client.Conn) {
	t.Helper()
	if f, err := c.Read(); err != io.EOF {
		t.Fatalf("after the error frame: frame %+v err %v, want EOF", f.Header, err)
	}
}

// isReset reports whether err is the peer resetting the connection.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// httpDo sends an admin request and returns the status and body.
func httpDo(t testing.TB, s *Server, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// httpJSON is httpDo that also decodes the JSON answer into v.
func httpJSON(t testing.TB, s *Server, method, path, body string, v any) int {
	t.Helper()
	code, b := httpDo(t, s, method, path, body)
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON: %v", method, path, code, b, err)
	}
	return code
}

// fund tops user up with cents through POST /api/topup (a key of its own
// each call): a user sends group packets only from what it holds.
func fund(t testing.TB, s *Server, user uint32, cents uint64) {
	t.Helper()
	var tr Transfer
	body := fmt.Sprintf(`{"user":%d,"cents":%d,"key":"fund-%d-%d"}`, user, cents, user, fundKey.Add(1))
	if code := httpJSON(t, s, "POST", "/api/topup", body, &tr); code != http.StatusOK || tr.User != user || tr.Cents != cents {
		t.Fatalf("top-up of %d cents to user %d: %d %+v", cents, user, code, tr)
	}
}

var fundKey atomic.Uint64
