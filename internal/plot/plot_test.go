package plot

import (
	"bytes"
	"encoding/json"
	"html"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hongbao/internal/monitor"
	"hongbao/internal/sample"
)

// recording writes a series like one `hongbao monitor` records: a ramp,
// a load and a drain, a server and two clients, one second with a client
// missing and one second amended later (written twice).
func recording(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "series.ndjson")
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	T := int64(1_800_000_000)
	for i := range 30 {
		phase := "load"
		switch {
		case i < 3:
			phase = "ramp"
		case i >= 27:
			phase = "drain"
		}
		rate := 0.0
		if phase == "load" {
			rate = 5000
		}
		s := monitor.Second{T: T + int64(i), Phase: phase,
			Server: map[string]float64{"shakes": rate, "got": 200, "none": rate - 200, "issued": 200,
				"issued_cents": 20000, "granted_cents": 19000, "connections": 10000, "waiting": 3,
				"group_sent": 5, "group_sent_cents": 1500, "group_shares": 12, "group_shares_cents": 1400,
				"group_refunds": 1, "group_refunded_cents": 100, "group_pushes": 15},
			Client: map[string]float64{"sent": rate, "got": 200, "amount_cents": 19000, "connections": 10000, "timeouts": 0,
				"pushes": 15, "opens": 12, "opened_cents": 1400},
			Latency: &sample.Latency{Count: uint64(rate), P50: 400, P99: 2000, P999: 5000},
			Net:     sample.NetDev{RxBytes: 1e6, TxBytes: 1e6, RxPackets: 1e4, TxPackets: 1e4},
		}
		for _, p := range []string{"server", "load-1", "load-2"} {
			if i == 10 && p == "load-2" {
				s.Missing = []string{"load-2"}
				continue
			}
			ps := monitor.ProcSecond{Name: p, Kind: "server", ProcStats: sample.ProcStats{CPU: 0.3, RSS: 50 << 20, Goroutines: 10}}
			if p != "server" {
				ps.Kind, ps.Gauges = "load", map[string]float64{"qps": float64(recordedRate(i, p))}
			}
			s.Procs = append(s.Procs, ps)
		}
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	// An amendment of second 5 (a late sample) comes at the end.
	if err := enc.Encode(monitor.Second{T: T + 5, Phase: "load", Server: map[string]float64{"shakes": 5001}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// recordedRate is the rate client p was set to in second i of recording:
// phase 1 (0) until second 6, 5,000/s until 16 (but for client load-2's
// stray 7,000 in second 12), 8,000/s until 26, then 0 (but for a late
// 8,000 of load-1 in second 29).
func recordedRate(i int, p string) int {
	switch {
	case i == 12 && p == "load-2":
		return 7000
	case i == 29 && p == "load-1":
		return 8000
	case i < 6 || i > 26:
		return 0
	case i <= 16:
		return 5000
	}
	return 8000
}

// TestRenderWritesReport: report.html is one self-contained page: uPlot,
// the shared chart script and the style inline, nothing loaded from
// outside, every chart of monitor.Charts with its columns inline, and a
// table of every series.
func TestRenderWritesReport(t *testing.T) {
	file := recording(t)
	dir := filepath.Join(t.TempDir(), "out")
	out, err := Render(file, dir)
	if err != nil {
		t.Fatal(err)
	}
	if out.Report != filepath.Join(dir, "report.html") {
		t.Fatalf("report at %s", out.Report)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the output directory, want report.html alone", len(ents))
	}
	rep, err := os.ReadFile(out.Report)
	if err != nil {
		t.Fatal(err)
	}
	r := html.UnescapeString(string(rep))
	for _, bad := range []string{`src="`, `href="`, "http://", "https://cdn"} {
		if strings.Contains(r, bad) {
			t.Errorf("report loads something from outside: it has %q", bad)
		}
	}
	for _, name := range []string{"uPlot.iife.min.js", "charts.js", "uPlot.min.css"} {
		b, _ := monitor.Asset(name)
		if len(b) < 100 || !strings.Contains(string(rep), string(b[:100])) {
			t.Errorf("%s is not inline", name)
		}
	}
	// The columns: every chart, each line with one value per second.
	i := strings.Index(string(rep), "const report = ")
	if i < 0 {
		t.Fatal("no inline data")
	}
	var data struct {
		T      []int64
		Phase  []string
		Charts []struct {
			ID     string
			Lines  []string
			Values [][]*float64
		}
	}
	if err := json.NewDecoder(strings.NewReader(string(rep[i+len("const report = "):]))).Decode(&data); err != nil {
		t.Fatalf("inline data: %v", err)
	}
	if len(data.T) != 30 || len(data.Phase) != 30 || data.Phase[0] != "phase 1: connect + hold" ||
		data.Phase[6] != "phase 2: 5,000/s" || data.Phase[17] != "phase 3: 8,000/s" || data.Phase[29] != "settle" {
		t.Errorf("inline seconds %v phases %q", data.T, data.Phase)
	}
	// The phases beside the seed, and each phase second by second.
	for _, want := range []string{`<td>phase 2: 5,000/s</td><td>11</td><td>5,000/s</td><td>5000</td><td>5000</td><td>100%</td><td>-</td><td>-</td><td>0</td><td>30,000/s, stable</td>`,
		`<td>phase 3: 8,000/s</td><td>10</td><td>8,000/s</td><td>5000</td><td>5000</td><td>0%</td>`,
		"phase 3: 8,000/s, second by second (10 s); the seed: 60,000/s reached, with jitter",
		"<td>1,000,000 connections held</td>", `<tr><td>6</td><td>1</td><td>5000</td><td>5000</td><td>yes</td><td>0.4</td><td>2.0</td><td>0</td><td>0</td></tr>`} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if len(out.Phases) != 4 {
		t.Errorf("phases %+v, want 4", out.Phases)
	}
	if len(data.Charts) != len(monitor.Charts) {
		t.Fatalf("%d charts inline, want %d", len(data.Charts), len(monitor.Charts))
	}
	for k, c := range data.Charts {
		if c.ID != monitor.Charts[k].ID || len(c.Lines) == 0 || len(c.Lines) != len(c.Values) {
			t.Errorf("chart %d: %s with %d lines, %d columns", k, c.ID, len(c.Lines), len(c.Values))
		}
		for j, col := range c.Values {
			if len(col) != 30 {
				t.Errorf("%s %s: %d values", c.ID, c.Lines[j], len(col))
			}
		}
	}
	secs, _ := monitor.ReadFile(file)
	for _, s := range AllSeries(secs) {
		if !strings.Contains(r, "<td>"+s.Name+"</td>") {
			t.Errorf("report's table lacks series %q", s.Name)
		}
	}
	for _, want := range []string{"load-1 CPU", "load-2 RSS", "server CPU", "client shakes sent", "server shakes answered",
		"packets issued (server)", "packets received (clients)", "latency p99", "server connections", "t+10: load-2",
		"group packets sent (server)", "group shares granted (server)", "group refunds (server)", "group pushes sent (server)",
		"group pushes received (clients)", "group opens (clients)", "group cents sent (server)", "group cents granted (server)",
		"group cents refunded (server)", "group cents opened (clients)"} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The amended second replaced the first record of it; the group
	// series were plotted.
	for _, st := range out.Stats {
		if st.Name == "group cents opened (clients)" && (st.Points != 29 || st.Max != 1400) {
			t.Errorf("group cents opened: %+v", st)
		}
		if st.Name == "server shakes answered" && st.Max != 5001 {
			t.Errorf("amendment not applied: max %v", st.Max)
		}
	}
}

func TestRenderRefusesEmptyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty.ndjson")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(p, t.TempDir()); err == nil {
		t.Fatal("no error for an empty series")
	}
}
