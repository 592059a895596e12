// Package adminauth guards the admin HTTP listeners of the server and the
// load client. Anything that changes state, reveals private data (the
// ledger audit, a user's balance) or profiles the process (pprof) needs
// `Authorization: Bearer TOKEN`; only a short list of read-only public
// endpoints (health, metrics, stats, lists) stays open, so an endpoint
// added later is guarded unless it is listed as open.
//
// It also reads and generates tokens and tells loopback addresses from
// addresses other hosts can reach, for the warnings and for the rule that
// auth may be turned off only on loopback.
package adminauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// EnvToken is the environment variable a token may be given in. Children
// of the orchestrators get their token there, never on the command line
// (which every user of the machine can read in /proc/PID/cmdline).
const EnvToken = "HONGBAO_ADMIN_TOKEN"

// MinTokenLen is the shortest token accepted: a guessable token would
// guard nothing. A generated token is 64 hex digits (256 bits).
const MinTokenLen = 16

// Sentinel errors.
var (
	// ErrShortToken: the token is shorter than MinTokenLen.
	ErrShortToken = fmt.Errorf("admin token shorter than %d characters", MinTokenLen)
	// ErrOffNotLoopback: auth was turned off on an address other hosts can reach.
	ErrOffNotLoopback = errors.New("admin auth may be turned off only when the admin listener binds a loopback address")
	// ErrEmptyFile: a token or secret file holds nothing.
	ErrEmptyFile = errors.New("file is empty")
)

// Check validates a token given by an operator.
func Check(token string) error {
	if len(token) < MinTokenLen {
		return ErrShortToken
	}
	return nil
}

// CheckOff returns ErrOffNotLoopback unless addr, the admin listener's
// address, is loopback: without auth, whoever can connect can start
// campaigns and read profiles.
func CheckOff(addr string) error {
	if !Loopback(addr) {
		return fmt.Errorf("%w (got %q)", ErrOffNotLoopback, addr)
	}
	return nil
}

// Wrap returns h guarded by token: a request needs `Authorization: Bearer
// token` unless it is a GET or HEAD of one of the open paths (exact
// match). An empty token turns the guard off (the caller has checked
// that this is allowed, see CheckOff).
func Wrap(h http.Handler, token string, open ...string) http.Handler {
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	isOpen := make(map[string]bool, len(open))
	for _, p := range open {
		isOpen[p] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && isOpen[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		if !authorized(r, &want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hongbao admin"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, "{\"error\": %q}\n", "admin token required: send 'Authorization: Bearer TOKEN' (the token of --admin-token-file or "+EnvToken+")")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authorized compares the request's bearer token with want in constant
// time: both sides are hashed first, so neither the content nor the
// length of the token leaks through the time of a refusal.
func authorized(r *http.Request, want *[32]byte) bool {
	v := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(v[len(prefix):])))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// SetHeader sets the Authorization header of an admin request (nothing
// when token is empty).
func SetHeader(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// Loopback reports whether addr (host:port, or a bare host) is reachable
// only from this machine: its host is a loopback IP, or a name all of
// whose addresses are loopback. An empty host, 0.0.0.0 and :: listen on
// every interface and are not loopback.
func Loopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// WarnExposed logs a warning when addr, where a listener is bound, can be
// reached from other hosts, naming the listener and what it exposes.
func WarnExposed(log *slog.Logger, listener, addr, exposes string) {
	if Loopback(addr) {
		return
	}
	log.Warn(listener+" listener reachable from other hosts", "listener", listener, "addr", addr, "exposes", exposes)
}

// NewToken returns a new random token: 256 bits in hex.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// WriteFile writes tok to path, readable by the owner only (0600). The
// file is replaced atomically, so a file that was there with looser
// permissions is not reused.
func WriteFile(path, tok string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	f, err := os.CreateTemp(dir, ".admin.token-*") // created 0600
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("admin token: writing %s: %w", path, err)
	}
	return nil
}

// ReadFile reads a token or secret from path: its content without
// surrounding white space, which must not be empty. A file that other
// users may read is used but logged as a warning (what names it).
func ReadFile(path, what string, log *slog.Logger) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s: %s: %w", what, path, ErrEmptyFile)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && log != nil {
		log.Warn(what+" file is readable by other users; chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
	}
	return v, nil
}

// Resolve returns the admin token an operator gave: read from file when
// it is set, else taken from $HONGBAO_ADMIN_TOKEN; "" when neither is
// given (the caller then generates one with NewToken and, once its
// listener is up, writes it with WriteFile and logs the file's path,
// never the token: secrets stay out of logs).
func Resolve(file string, log *slog.Logger) (string, error) {
	if file != "" {
		tok, err := ReadFile(file, "admin token", log)
		if err != nil {
			return "", err
		}
		if err := Check(tok); err != nil {
			return "", fmt.Errorf("admin token file %s: %w", file, err)
		}
		return tok, nil
	}
	if tok, ok := os.LookupEnv(EnvToken); ok {
		tok = strings.TrimSpace(tok)
		if err := Check(tok); err != nil {
			return "", fmt.Errorf("%s: %w", EnvToken, err)
		}
		return tok, nil
	}
	return "", nil
}
