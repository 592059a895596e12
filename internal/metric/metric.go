// Package metric defines a process's metrics once, as a table, and derives
// from it everything that reports them: the keys of the per-second sample
// (which the monitor merges and writes as CSV columns, and its charts refer
// to) and the Prometheus collector behind /metrics. A row says what the
// metric is called in each, its help, whether it is a counter or a gauge,
// and how it is read from R, a reading of the process's state taken once
// per second or per scrape.
package metric

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric is one row of a Table.
type Metric[R any] struct {
	// Key names the metric in the per-second sample ("": not sampled). A
	// counter's sample is its increase over the second, a gauge's its
	// level at the second's end.
	Key string
	// Prom is the metric's family on /metrics ("": not exposed). Rows of
	// one family follow each other and differ by the value (LabelValue) of
	// its one label (Label); the family's first row gives its Help.
	Prom       string
	Label      string
	LabelValue string
	Help       string
	Gauge      bool // a level, else a count of events since the process started
	// Read reads the value from a reading.
	Read func(R) float64
	// Each, instead of Read, reads a counter family whose label values are
	// known only when they happen (the reasons a peer gave): value -> count.
	// Its sample keys are KeyOf(label value), present only in the seconds
	// that counted some; Keys are those the table's Counters list (the CSV
	// columns).
	Each  func(R) map[string]uint64
	KeyOf func(string) string
	Keys  []string
}

// Table is a process kind's metrics. The order of its rows is the order of
// the sample's keys in Counters and Gauges (the CSV columns).
type Table[R any] []Metric[R]

// Counters are the counter keys of the sample.
func (t Table[R]) Counters() []string {
	var out []string
	for _, m := range t {
		switch {
		case m.Each != nil:
			out = append(out, m.Keys...)
		case m.Key != "" && !m.Gauge:
			out = append(out, m.Key)
		}
	}
	return out
}

// Gauges are the gauge keys of the sample.
func (t Table[R]) Gauges() []string {
	var out []string
	for _, m := range t {
		if m.Key != "" && m.Gauge && m.Each == nil {
			out = append(out, m.Key)
		}
	}
	return out
}

// Reading is the values of a table's sampled rows at one time.
type Reading struct {
	vals []float64
	each []map[string]uint64
}

// Read reads the sampled rows from r.
func (t Table[R]) Read(r R) Reading {
	rd := Reading{vals: make([]float64, len(t)), each: make([]map[string]uint64, len(t))}
	for i, m := range t {
		switch {
		case m.Key == "" && m.Each == nil:
		case m.Each != nil:
			rd.each[i] = m.Each(r)
		default:
			rd.vals[i] = m.Read(r)
		}
	}
	return rd
}

// Sample is the second that ends at cur and began at last (the zero
// Reading: at the process's start): the counters' increases and the
// gauges' levels.
func (t Table[R]) Sample(cur, last Reading) (counters map[string]uint64, gauges map[string]float64) {
	counters, gauges = map[string]uint64{}, map[string]float64{}
	for i, m := range t {
		switch {
		case m.Each != nil:
			for v, n := range cur.each[i] {
				var was uint64
				if last.each != nil {
					was = last.each[i][v]
				}
				if n > was {
					counters[m.KeyOf(v)] = n - was
				}
			}
		case m.Key == "":
		case m.Gauge:
			gauges[m.Key] = cur.vals[i]
		default:
			var was float64
			if last.vals != nil {
				was = last.vals[i]
			}
			counters[m.Key] = uint64(cur.vals[i] - was)
		}
	}
	return counters, gauges
}

// Collector is the Prometheus collector of the table's exposed rows: at
// each scrape it takes one reading (read) and reports every row of it.
func (t Table[R]) Collector(read func() R) prometheus.Collector {
	c := &collector[R]{t: t, read: read, descs: make([]*prometheus.Desc, len(t))}
	byName := map[string]*prometheus.Desc{}
	for i, m := range t {
		if m.Prom == "" {
			continue
		}
		d, ok := byName[m.Prom]
		if !ok {
			var labels []string
			if m.Label != "" {
				labels = []string{m.Label}
			}
			d = prometheus.NewDesc(m.Prom, m.Help, labels, nil)
			byName[m.Prom] = d
			c.unique = append(c.unique, d)
		}
		c.descs[i] = d
	}
	return c
}

type collector[R any] struct {
	t      Table[R]
	read   func() R
	descs  []*prometheus.Desc // by row; nil: not exposed
	unique []*prometheus.Desc
}

func (c *collector[R]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.unique {
		ch <- d
	}
}

func (c *collector[R]) Collect(ch chan<- prometheus.Metric) {
	r := c.read()
	for i, m := range c.t {
		d := c.descs[i]
		if d == nil {
			continue
		}
		typ := prometheus.CounterValue
		if m.Gauge {
			typ = prometheus.GaugeValue
		}
		if m.Each != nil {
			for v, n := range m.Each(r) {
				ch <- prometheus.MustNewConstMetric(d, typ, float64(n), v)
			}
			continue
		}
		var lv []string
		if m.Label != "" {
			lv = []string{m.LabelValue}
		}
		ch <- prometheus.MustNewConstMetric(d, typ, m.Read(r), lv...)
	}
}
