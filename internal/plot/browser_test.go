package plot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"hongbao/internal/monitor"
)

// chromium finds Debian's chromium (installed by .ci/run). Without it the
// test is skipped, except in CI (CI set), where that is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (CI is set: .ci/run installs it with apt-get install chromium)")
	}
	t.Skip("chromium not installed; apt-get install chromium to run the report test")
	return ""
}

// TestReportInHeadlessChromium opens the report, offline, in headless
// Chromium and checks in the DOM, after its scripts ran, that every chart
// was drawn by uPlot with every second and that the legends name the
// lines of the table, and that every chart shaded and named the phases.
func TestReportInHeadlessChromium(t *testing.T) {
	bin := chromium(t)
	out, err := Render(recording(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=2000", "--window-size=1400,1800", "--dump-dom",
		"file://"+filepath.ToSlash(out.Report))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := string(b)
	charts := regexp.MustCompile(`class="chart" id="chart-([a-z0-9]+)" data-points="(\d+)"`).FindAllStringSubmatch(dom, -1)
	if len(charts) != len(monitor.Charts) {
		t.Errorf("%d charts drawn, want %d", len(charts), len(monitor.Charts))
	}
	for i, c := range charts {
		if c[1] != monitor.Charts[i].ID || c[2] != "30" {
			t.Errorf("chart %d: %s with %s points, want %s with 30", i, c[1], c[2], monitor.Charts[i].ID)
		}
	}
	if n := strings.Count(dom, "<canvas"); n != len(monitor.Charts) {
		t.Errorf("%d canvases, want one per chart", n)
	}
	for _, want := range []string{"client shakes sent", "group cents opened (clients)", "latency p99.9", "load-2 RSS", "server CPU", "tx kpackets/s"} {
		if !regexp.MustCompile(`class="u-label">` + regexp.QuoteMeta(want) + `<`).MatchString(dom) {
			t.Errorf("no legend entry %q", want)
		}
	}
	// Every chart shades and names the run's phases.
	if n := strings.Count(dom, `data-phases="phase 1: connect + hold|phase 2: 5,000/s|phase 3: 8,000/s|settle"`); n != len(monitor.Charts) {
		t.Errorf("%d charts name the phases, want every one of %d", n, len(monitor.Charts))
	}
	if t.Failed() {
		t.Logf("DOM:\n%.4000s", dom)
	}
}
