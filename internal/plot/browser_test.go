package plot

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"hongbao/internal/monitor"
	"hongbao/internal/testutil/chrome"
)

// TestReportInHeadlessChromium opens the report, offline, in headless
// Chromium and checks in the DOM, after its scripts ran, that every chart
// was drawn by uPlot with every second and that the legends name the
// lines of the table, and that every chart shaded and named the phases.
func TestReportInHeadlessChromium(t *testing.T) {
	bin := chrome.Path(t, "the report test")
	out, err := Render(recording(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dom := chrome.DumpDOM(t, bin, "file://"+filepath.ToSlash(out.Report), 2*time.Second)
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
