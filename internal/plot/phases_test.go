package plot

import (
	"math"
	"strings"
	"testing"

	"github.com/HdrHistogram/hdrhistogram-go"

	"hongbao/internal/monitor"
	"hongbao/internal/sample"
)

// secsOf is a series of two load clients whose "qps" gauges are rates[i]
// (-1: the client sent no sample that second).
func secsOf(rates ...[2]int) []monitor.Second {
	secs := make([]monitor.Second, len(rates))
	for i, r := range rates {
		secs[i] = monitor.Second{T: int64(100 + i), Client: map[string]float64{}, Server: map[string]float64{}}
		for k, q := range r {
			if q >= 0 {
				secs[i].Procs = append(secs[i].Procs, monitor.ProcSecond{Name: []string{"a", "b"}[k], Kind: "load",
					Gauges: map[string]float64{"qps": float64(q)}})
			}
		}
	}
	return secs
}

func rep(n int, r [2]int) [][2]int {
	out := make([][2]int, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func cat(parts ...[][2]int) [][2]int {
	var out [][2]int
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestRunPhases(t *testing.T) {
	const (
		p1 = "phase 1: connect + hold"
		p2 = "phase 2: 30,000/s"
		p3 = "phase 3: 60,000/s"
		st = "settle"
	)
	cases := []struct {
		name  string
		rates [][2]int
		want  string // the labels' initials: 1, 2, 3, s
	}{
		{"the seed's three phases", cat(rep(3, [2]int{0, 0}), rep(4, [2]int{30000, 30000}), rep(3, [2]int{60000, 60000}), rep(2, [2]int{0, 0})), "1112222333ss"},
		{"clients switching a second apart", cat(rep(2, [2]int{0, 0}), [][2]int{{30000, 0}}, rep(3, [2]int{30000, 30000}), [][2]int{{60000, 30000}}, rep(3, [2]int{60000, 60000})), "1122223333"},
		{"a stray rate for a second opens no phase", cat(rep(2, [2]int{0, 0}), rep(2, [2]int{30000, 30000}), [][2]int{{45000, 30000}}, rep(2, [2]int{30000, 30000})), "1122222"},
		{"a second with no client keeps its phase", cat(rep(2, [2]int{0, 0}), rep(3, [2]int{30000, 30000}), [][2]int{{-1, -1}}, rep(1, [2]int{30000, 30000})), "1122222"},
		{"a late sample after the load settles", cat(rep(1, [2]int{0, 0}), rep(3, [2]int{30000, 30000}), rep(2, [2]int{0, 0}), rep(3, [2]int{30000, 30000})), "1222sssss"},
		{"interrupted in phase 1", rep(4, [2]int{0, 0}), "1111"},
		{"no client at all", rep(2, [2]int{-1, -1}), "11"},
	}
	names := map[byte]string{'1': p1, '2': p2, '3': p3, 's': st}
	for _, c := range cases {
		want := c.want
		labels, phases := RunPhases(secsOf(c.rates...))
		var got strings.Builder
		for i, l := range labels {
			if l != names[want[i]] {
				t.Errorf("%s: second %d is %q, want %q (all: %q)", c.name, i, l, names[want[i]], labels)
				break
			}
			got.WriteByte(want[i])
		}
		// The phases cover the seconds in order, each with its seed figure.
		next := 0
		for _, p := range phases {
			if p.First != next || p.Seconds != p.Last-p.First+1 {
				t.Errorf("%s: phase %+v after second %d", c.name, p, next-1)
			}
			next = p.Last + 1
		}
		if next != len(labels) {
			t.Errorf("%s: phases %+v end at %d of %d", c.name, phases, next, len(labels))
		}
		if len(phases) > 0 && phases[0].Seed != "1,000,000 connections held" {
			t.Errorf("%s: phase 1's seed %q", c.name, phases[0].Seed)
		}
	}
}

// The phase table merges the seconds' histograms: its p99 is over every
// answer of the phase, not an average of the seconds'.
func TestPhaseTablesMergeLatency(t *testing.T) {
	secs := secsOf(cat(rep(1, [2]int{0, 0}), rep(3, [2]int{1000, 1000}))...)
	for i := 1; i < 4; i++ {
		h := hdrhistogram.New(1, 60_000_000, 3)
		for range 980 {
			_ = h.RecordValue(1000) // 1 ms
		}
		v := int64(5000)
		if i == 3 {
			v = 400_000 // 400 ms: the phase's slowest 1% are in this second
		}
		for range 20 {
			_ = h.RecordValue(v)
		}
		secs[i].Latency = sample.LatencyOf(h)
		secs[i].Client["sent"] = []float64{0, 1000, 1005, 1020}[i]
		secs[i].Client["timeouts"] = 2
		secs[i].Server["shakes"] = 1000
	}
	_, phases := RunPhases(secs)
	tabs := phaseTables(secs, phases)
	if len(tabs) != 2 || tabs[1].Rate != 1000 || len(tabs[1].Rows) != 3 {
		t.Fatalf("tables %+v", tabs)
	}
	p := tabs[1]
	if math.Abs(p.Within-2.0/3) > 1e-9 || p.Timeouts != 6 || math.Abs(p.MeanSent-1008.33) > 0.01 || p.MeanAnswered != 1000 {
		t.Errorf("phase totals: within %v, timeouts %v, sent %v, answered %v", p.Within, p.Timeouts, p.MeanSent, p.MeanAnswered)
	}
	if p.P50 < 0.99 || p.P50 > 1.01 || p.P99 < 4.9 || p.P99 > 5.1 {
		t.Errorf("phase p50 %v p99 %v ms, want 1 and 5 (60 of 3,000 answers slow, 20 of them 400 ms)", p.P50, p.P99)
	}
	if r := p.Rows[2]; r.P99 < 399 || r.P99 > 401 || !p.Rows[0].Within || r.Within {
		t.Errorf("third second %+v", r)
	}
	if tabs[0].P50 != -1 || tabs[0].Rows[0].P99 != -1 {
		t.Errorf("phase 1 has no latency: %+v", tabs[0])
	}
}
