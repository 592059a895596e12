package monitor_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"hongbao/internal/testutil/chrome"
)

// TestDashboardInHeadlessChromium loads the dashboard of a monitor fed by a
// real server and two real load clients in headless Chromium, and checks in
// the DOM, after the page's scripts ran, that the tiles show live non-zero
// values and that the charts hold data points.
func TestDashboardInHeadlessChromium(t *testing.T) {
	t.Parallel()
	bin := chrome.Path(t, "the dashboard test")
	// The load outlasts a cold start of chromium; the cleanup cancels it.
	l := startLive(t, 400, 800, 30*time.Second)
	// Wait until the monitor has closed a couple of seconds of load.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		for _, s := range l.mon.Series(0) {
			if s.Phase == "load" && s.Client["sent"] > 0 {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no load seconds at the monitor after 20 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	dom := chrome.DumpDOM(t, bin, l.mon.URL(), 5*time.Second)
	for _, id := range []string{"v-sent", "v-shakes", "v-conns", "v-issued", "v-p99"} {
		m := regexp.MustCompile(`id="` + id + `"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
		if m == nil {
			t.Errorf("%s not in the DOM", id)
			continue
		}
		v, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
		if err != nil || v <= 0 {
			t.Errorf("%s shows %q, want a live non-zero number", id, m[1])
		}
	}
	// Every chart was drawn with data points (uPlot canvases present).
	charts := regexp.MustCompile(`class="chart" id="chart-[a-z0-9]+" data-points="(\d+)"`).FindAllStringSubmatch(dom, -1)
	if len(charts) < 8 {
		t.Errorf("%d charts with data in the DOM, want 8", len(charts))
	}
	for _, c := range charts {
		if n, _ := strconv.Atoi(c[1]); n < 2 {
			t.Errorf("a chart has %s points", c[1])
		}
	}
	if strings.Count(dom, "<canvas") < 8 {
		t.Errorf("%d canvases, want a uPlot canvas per chart", strings.Count(dom, "<canvas"))
	}
	// The latest second shown is recent: the page is live.
	m := regexp.MustCompile(`data-latest="(\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no data-latest on body")
	}
	if ts, _ := strconv.ParseInt(m[1], 10, 64); time.Now().Unix()-ts > 10 {
		t.Errorf("latest second shown %d is %d s old", ts, time.Now().Unix()-ts)
	}
	if t.Failed() {
		t.Logf("DOM:\n%.4000s", dom)
	}
}
