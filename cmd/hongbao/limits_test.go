package main

import (
	"strings"
	"testing"
)

// TestBadLimitFlagsExit2: the limits of live state refuse nonsense with a
// reason and exit 2, on the command line and in the environment alike.
func TestBadLimitFlagsExit2(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--max-live-packets", "0"}, nil, "--max-live-packets"},
		{[]string{"--max-live-per-sender", "-3"}, nil, "--max-live-per-sender"},
		{nil, []string{"HONGBAO_MAX_WAITING=0"}, "--max-waiting"},
		{[]string{"--max-campaigns", "0"}, nil, "--max-campaigns"},
		{[]string{"--max-sender-rate", "10"}, nil, "--max-sender-rate must be at least --max-recipients (500)"},
		{[]string{"--max-campaign-rate", "0"}, nil, "--max-campaign-rate"},
		{[]string{"--max-campaign-count", "4294967296"}, nil, "--max-campaign-count"},
		{[]string{"--max-waiting", "lots"}, nil, "invalid value"},
	}
	for _, c := range cases {
		args := append([]string{"server", "--secret", "s", "--ledger=false"}, c.args...)
		t.Run(strings.Join(append(c.args, c.env...), "_"), func(t *testing.T) {
			_, stderr, code := run(t, c.env, args...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, want 2 with %q; stderr: %s", code, c.want, stderr)
			}
		})
	}
}
