package load

import (
	"net/http"
	"os"
	"strconv"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"

	"hongbao/internal/metric"
	"hongbao/internal/obs"
	"hongbao/internal/sample"
)

// This file is the load client's monitoring: the per-second sample pushed
// to a monitor (Options.Monitor) and the Prometheus collector behind
// /metrics, both derived from the table Metrics (metrics.go). Both read the
// counters and histograms the client already keeps, at the second roll-over
// or at scrape time.

// monitorState is used under rollMu (by rollSecond only).
type monitorState struct {
	pusher *sample.Pusher
	host   string
	last   metric.Reading // at the end of the last second sampled
}

func (c *Client) startMonitor() {
	if c.o.Monitor == "" {
		return
	}
	c.stats.mon = &monitorState{pusher: sample.NewPusher(c.o.Monitor, c.name(), sample.KindLoad, c.log), host: sample.Hostname()}
}

func (c *Client) stopMonitor() {
	if c.stats.mon != nil {
		c.stats.mon.pusher.Close()
	}
}

// name is this process's name at the monitor.
func (c *Client) name() string {
	if c.o.Name != "" {
		return c.o.Name
	}
	return "load-" + strconv.FormatUint(uint64(c.cfg.from), 10) + "-" + strconv.FormatUint(uint64(c.cfg.to), 10)
}

// monitorSecond pushes second t: tot are the counts at its end, h its
// latency histogram.
func (c *Client) monitorSecond(t int64, tot Counts, h *hdrhistogram.Histogram) {
	m := c.stats.mon
	if m == nil {
		return
	}
	cur := Metrics.Read(c.read(tot))
	counters, gauges := Metrics.Sample(cur, m.last)
	m.last = cur
	m.pusher.PushMetered(sample.Sample{
		Name: c.name(), Kind: sample.KindLoad, Pid: os.Getpid(), Host: m.host, T: t, Phase: c.phase.Load().(string),
		Counters: counters, Gauges: gauges, Latency: sample.LatencyOf(h),
	})
}

// latencyBuckets are the upper bounds, in seconds, of the client latency
// histogram on /metrics.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// mountObservability adds /metrics and /debug/pprof to the admin mux.
func (c *Client) mountObservability(mux *http.ServeMux) {
	latDesc := prometheus.NewDesc("hongbao_client_latency_seconds",
		"Shake latency from the scheduled send to the answer (answers in time).", nil, nil)
	col := &obs.Collector{
		Descs: []*prometheus.Desc{latDesc},
		Extra: func(ch chan<- prometheus.Metric) {
			c.stats.histMu.Lock()
			count, sum, buckets := promBuckets(c.stats.cum)
			c.stats.histMu.Unlock()
			ch <- prometheus.MustNewConstHistogram(latDesc, count, sum, buckets)
		},
	}
	obs.Mount(mux, Metrics.Collector(func() *reading { return c.read(c.totals()) }), col)
}

// promBuckets converts an HDR histogram in µs to Prometheus's cumulative
// buckets in seconds.
func promBuckets(h *hdrhistogram.Histogram) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(latencyBuckets))
	for _, b := range latencyBuckets {
		buckets[b] = 0
	}
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		v := float64(bar.To) / 1e6
		for _, b := range latencyBuckets {
			if v <= b {
				buckets[b] += uint64(bar.Count)
			}
		}
	}
	count = uint64(h.TotalCount())
	sum = h.Mean() * float64(count) / 1e6
	return count, sum, buckets
}
