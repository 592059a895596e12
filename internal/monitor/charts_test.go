package monitor

import (
	"encoding/json"
	"slices"
	"testing"

	"hongbao/internal/sample"
)

// chartValue reads series d of a second's JSON as web/charts.js does; the
// dashboard draws with that, `hongbao plot` with Series.Value.
func chartValue(s map[string]any, d Series) (float64, bool) {
	var o map[string]any
	if d.From == "proc" {
		procs, _ := s["procs"].([]any)
		for _, p := range procs {
			if p := p.(map[string]any); p["name"] == d.Proc {
				o = p
			}
		}
	} else {
		o, _ = s[d.From].(map[string]any)
	}
	v, ok := o[d.Key].(float64)
	if !ok {
		return 0, false
	}
	if d.Scale != 0 {
		v *= d.Scale
	}
	return v, true
}

// TestChartsReadLikeTheDashboard: every line of every chart reads the same
// figure in Go (Value, for the report) as in the dashboard's script (its
// From and Key on the second's JSON), present or absent, and names a key a
// process reports.
func TestChartsReadLikeTheDashboard(t *testing.T) {
	full := Second{T: 1, Phase: "load",
		Server:  map[string]float64{},
		Client:  map[string]float64{},
		Latency: &sample.Latency{Count: 9, P50: 400, P99: 2000, P999: 5000, Max: 7000},
		Net:     sample.NetDev{RxBytes: 1e6, TxBytes: 2e6, RxPackets: 3e3, TxPackets: 4e3},
		Procs: []ProcSecond{{Name: "server", ProcStats: sample.ProcStats{CPU: 0.5, RSS: 64 << 20, Goroutines: 7, GCPause: 0.001, HeapBytes: 1 << 20}},
			{Name: "load-1", ProcStats: sample.ProcStats{CPU: 0.25, RSS: 32 << 20}}}}
	keys := map[string][]string{
		"server": serverKeys(),
		"client": clientKeys(),
	}
	for i, k := range keys["server"] {
		full.Server[k] = float64(i + 1)
	}
	for i, k := range keys["client"] {
		full.Client[k] = float64(100 + i)
	}
	// Empty: nothing reported, no latency, no process.
	empty := Second{T: 2, Server: map[string]float64{}, Client: map[string]float64{}, Procs: []ProcSecond{}}
	for _, c := range Charts {
		if c.ID == "" || c.Title == "" || len(c.Series) == 0 || c.PerProc && len(c.Series) != 1 {
			t.Errorf("chart %+v", c)
		}
		for _, l := range c.Lines([]Second{full, empty}) {
			if k, ok := keys[l.From]; ok && !slices.Contains(k, l.Key) {
				t.Errorf("%s: %s key %q is not a key a process reports", l.Label, l.From, l.Key)
			}
			for _, sec := range []Second{full, empty} {
				b, err := json.Marshal(sec)
				if err != nil {
					t.Fatal(err)
				}
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatal(err)
				}
				gv, gok := l.Value(sec)
				jv, jok := chartValue(m, l)
				if gv != jv || gok != jok {
					t.Errorf("%s in second %d: Value %v %v, the dashboard's reading %v %v", l.Label, sec.T, gv, gok, jv, jok)
				}
				if sec.T == 1 && l.From != "net" && (!gok || gv == 0) {
					t.Errorf("%s: no figure in a second that has them all", l.Label)
				}
				if sec.T == 2 && l.From != "net" && gok {
					t.Errorf("%s: a figure (%v) in a second that has none", l.Label, gv)
				}
			}
		}
	}
	// A per-process chart has a line for each process, by name.
	cpu := Charts[slices.IndexFunc(Charts, func(c Chart) bool { return c.ID == "cpu" })]
	if ls := cpu.Lines([]Second{full}); len(ls) != 2 || ls[0].Label != "load-1 CPU" || ls[1].Label != "server CPU" {
		t.Errorf("cpu lines %+v", ls)
	}
}
