// Package chrome runs headless Chromium for the tests that check a page
// after its scripts ran (the monitor's dashboard, the plot's report).
package chrome

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Path finds Debian's chromium (installed by .ci/run). Without it the
// test is skipped, except in CI (CI set), where that is a failure; what
// names the test in the skip message.
func Path(t testing.TB, what string) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (CI is set: .ci/run installs it with apt-get install chromium)")
	}
	t.Skip("chromium not installed; apt-get install chromium to run " + what)
	return ""
}

// DumpDOM loads url in headless Chromium (bin from Path), lets its scripts
// run for budget of virtual time, and returns the DOM they left.
func DumpDOM(t testing.TB, bin, url string, budget time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget="+strconv.FormatInt(budget.Milliseconds(), 10),
		"--window-size=1400,1800", "--dump-dom", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return string(out)
}
