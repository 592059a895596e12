package metric

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type state struct {
	a, b, level float64
	reasons     map[string]uint64
}

var table = Table[*state]{
	{Key: "a", Prom: "x_total", Label: "kind", LabelValue: "a", Help: "X by kind.", Read: func(s *state) float64 { return s.a }},
	{Key: "b", Prom: "x_total", Label: "kind", LabelValue: "b", Read: func(s *state) float64 { return s.b }},
	{Key: "sum", Read: func(s *state) float64 { return s.a + s.b }},
	{Prom: "closed_total", Label: "reason", Help: "Closed by reason.", Each: func(s *state) map[string]uint64 { return s.reasons },
		KeyOf: func(r string) string { return "closed_" + r }, Keys: []string{"closed_x", "closed_y"}},
	{Key: "level", Prom: "level", Help: "A level.", Gauge: true, Read: func(s *state) float64 { return s.level }},
}

// TestTable: the keys, a second's sample (counters' increases, gauges'
// levels, run-time label values only when they counted) and /metrics all
// come from the rows.
func TestTable(t *testing.T) {
	if got := table.Counters(); !slices.Equal(got, []string{"a", "b", "sum", "closed_x", "closed_y"}) {
		t.Errorf("counters %v", got)
	}
	if got := table.Gauges(); !slices.Equal(got, []string{"level"}) {
		t.Errorf("gauges %v", got)
	}
	first := table.Read(&state{a: 2, b: 1, level: 7, reasons: map[string]uint64{"x": 1}})
	cur := &state{a: 5, b: 1, level: 3, reasons: map[string]uint64{"x": 1, "y": 4}}
	for _, tc := range []struct {
		name     string
		last     Reading
		counters map[string]uint64
	}{
		{"since start", Reading{}, map[string]uint64{"a": 5, "b": 1, "sum": 6, "closed_x": 1, "closed_y": 4}},
		{"one second", first, map[string]uint64{"a": 3, "b": 0, "sum": 3, "closed_y": 4}},
	} {
		c, g := table.Sample(table.Read(cur), tc.last)
		if len(c) != len(tc.counters) {
			t.Errorf("%s: counters %v, want %v", tc.name, c, tc.counters)
		}
		for k, v := range tc.counters {
			if c[k] != v {
				t.Errorf("%s: %s = %d, want %d", tc.name, k, c[k], v)
			}
		}
		if len(g) != 1 || g["level"] != 3 {
			t.Errorf("%s: gauges %v", tc.name, g)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(table.Collector(func() *state { return cur }))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got = append(got, fmt.Sprintf("%s %s{%s} %g %q", f.GetType(), f.GetName(), strings.Join(labels, ","), v, f.GetHelp()))
		}
	}
	want := []string{
		`COUNTER closed_total{reason=x} 1 "Closed by reason."`, `COUNTER closed_total{reason=y} 4 "Closed by reason."`,
		`GAUGE level{} 3 "A level."`, `COUNTER x_total{kind=a} 5 "X by kind."`, `COUNTER x_total{kind=b} 1 "X by kind."`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("/metrics\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
