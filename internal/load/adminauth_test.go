package load

import (
	"errors"
	"testing"
)

// TestAdminTokenOptions: an admin listener needs a token of a sane length,
// or auth turned off on a loopback address; off on any other address is
// refused before anything listens.
func TestAdminTokenOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		admin string
		token string
		off   bool
		ok    bool
	}{
		{"token", "127.0.0.1:0", "load-test-admin-token", false, true},
		{"no token", "127.0.0.1:0", "", false, false},
		{"short token", "127.0.0.1:0", "short", false, false},
		{"off on loopback", "127.0.0.1:0", "", true, true},
		{"off on every interface", "0.0.0.0:0", "", true, false},
		{"off with an empty host", ":0", "", true, false},
		{"no admin listener, no token", "", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Options{Addr: "127.0.0.1:1", Total: 10, Secret: testSecret, Loops: 1,
				Admin: tc.admin, AdminToken: tc.token, AdminAuthOff: tc.off})
			if c != nil {
				_ = c.Close()
			}
			if tc.ok && err != nil {
				t.Fatalf("New: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrOptions) {
				t.Fatalf("New: %v, want ErrOptions", err)
			}
		})
	}
}
