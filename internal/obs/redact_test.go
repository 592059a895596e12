package obs

import (
	"slices"
	"strings"
	"testing"
)

func TestRedactArgs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hongbao server --secret s3 --listen :1", "hongbao server --secret REDACTED --listen :1"},
		{"hongbao server -secret s3", "hongbao server -secret REDACTED"},
		{"hongbao server --secret=s3 --budget 5", "hongbao server --secret=REDACTED --budget 5"},
		{"hongbao server --SECRET=s3", "hongbao server --SECRET=REDACTED"},
		{"hongbao server --admin-token tk --x", "hongbao server --admin-token REDACTED --x"},
		{"hongbao x --db-password=pw", "hongbao x --db-password=REDACTED"},
		{"hongbao server --secret-file /etc/s --admin-token-file /etc/t", "hongbao server --secret-file /etc/s --admin-token-file /etc/t"},
		{"hongbao token --max-token-ttl 24h --ttl 1h", "hongbao token --max-token-ttl 24h --ttl 1h"},
		{"hongbao server --secret", "hongbao server --secret"},
		{"hongbao server --secret=", "hongbao server --secret=REDACTED"},
		{"hongbao server -- --secret s3", "hongbao server -- --secret s3"},
		{"--secret s3", "--secret s3"}, // args[0] is the program
	}
	for _, tc := range tests {
		in := strings.Fields(tc.in)
		orig := slices.Clone(in)
		got := strings.Join(RedactArgs(in), " ")
		if got != tc.want {
			t.Errorf("RedactArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !slices.Equal(in, orig) {
			t.Errorf("RedactArgs changed its input %q", tc.in)
		}
	}
}

// FuzzRedactArgs: the value after a --secret flag never survives.
func FuzzRedactArgs(f *testing.F) {
	f.Add("--listen", "s3cret-value", true)
	f.Add("-x", "v", false)
	f.Fuzz(func(t *testing.T, before, value string, eq bool) {
		args := []string{"hongbao", before}
		if eq {
			args = append(args, "--secret="+value)
		} else {
			args = append(args, "--secret", value)
		}
		if before == "--" || (strings.HasPrefix(before, "-") && !strings.Contains(before, "=") && secretFlag(strings.ToLower(strings.TrimLeft(before, "-")))) {
			return // the flag ends parsing, or takes --secret as its value
		}
		out := RedactArgs(args)
		if last := out[len(out)-1]; last != Redacted && last != "--secret="+Redacted {
			t.Fatalf("RedactArgs(%q) = %q", args, out)
		}
	})
}
