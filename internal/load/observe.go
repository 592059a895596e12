package load

import (
	"net/http"
	"os"
	"strconv"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"

	"hongbao/internal/obs"
	"hongbao/internal/sample"
)

// This file is the load client's monitoring: the per-second sample pushed
// to a monitor (Options.Monitor) and the Prometheus collector behind
// /metrics. Both read the counters and histograms the client already keeps,
// at the second roll-over or at scrape time.

// monitorState is used under rollMu (by rollSecond only).
type monitorState struct {
	pusher  *sample.Pusher
	host    string
	reasons map[string]uint64
}

func (c *Client) startMonitor() {
	if c.o.Monitor == "" {
		return
	}
	c.mon = &monitorState{pusher: sample.NewPusher(c.o.Monitor, c.name(), sample.KindLoad, c.log), host: sample.Hostname(), reasons: map[string]uint64{}}
}

func (c *Client) stopMonitor() {
	if c.mon != nil {
		c.mon.pusher.Close()
	}
}

// name is this process's name at the monitor.
func (c *Client) name() string {
	if c.o.Name != "" {
		return c.o.Name
	}
	return "load-" + strconv.FormatUint(uint64(c.from), 10) + "-" + strconv.FormatUint(uint64(c.to), 10)
}

// monitorSecond pushes second t: d are its counts, h its latency histogram.
func (c *Client) monitorSecond(t int64, d Counts, h *hdrhistogram.Histogram) {
	m := c.mon
	if m == nil {
		return
	}
	counters := sampleCounters(d)
	for r, n := range c.reasonsCopy() {
		if dn := n - m.reasons[r]; dn > 0 {
			counters[sample.ClosedByServerKey(r)] = dn
		}
		m.reasons[r] = n
	}
	m.pusher.PushMetered(sample.Sample{
		Name: c.name(), Kind: sample.KindLoad, Pid: os.Getpid(), Host: m.host, T: t, Phase: c.phase.Load().(string),
		Counters: counters,
		Gauges: map[string]float64{"connections": float64(c.conns()), "in_flight": float64(c.inFlight()),
			"qps": float64(c.QPS()), "monitor_dropped_total": float64(m.pusher.Dropped())},
		Latency: sample.LatencyOf(h),
	})
}

// sampleCounters are the counters of a second whose counts are d (the
// closes by the server by reason are added apart). The keys are in
// sample.ClientCounters.
func sampleCounters(d Counts) map[string]uint64 {
	return map[string]uint64{
		"sent": d.Sent, "answered": d.Answered, "got": d.Got, "none": d.None, "all_taken": d.AllTaken,
		"overloaded": d.Overloaded, "amount_cents": d.Amount, "errors": d.Errors, "timeouts": d.Timeouts,
		"late": d.Late, "skipped_offline": d.SkippedOffline, "disconnects": d.Disconnects,
		"reconnects": d.Reconnects, "logins": d.Logins, "dial_errors": d.DialErrors,
		"pushes": d.Pushes, "opens": d.Opens, "opened_cents": d.OpenedAmount,
	}
}

// latencyBuckets are the upper bounds, in seconds, of the client latency
// histogram on /metrics.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// mountObservability adds /metrics and /debug/pprof to the admin mux.
func (c *Client) mountObservability(mux *http.ServeMux) {
	tot := func(f func(Counts) uint64) func() float64 {
		return func() float64 { return float64(f(c.totals())) }
	}
	latDesc := prometheus.NewDesc("hongbao_client_latency_seconds",
		"Shake latency from the scheduled send to the answer (answers in time).", nil, nil)
	col := &obs.Collector{
		Metrics: []obs.Metric{
			obs.Counter("hongbao_client_shakes_sent_total", "Shakes sent.", tot(func(t Counts) uint64 { return t.Sent })),
			obs.Labelled("hongbao_client_answers_total", "Answers received, by result.", prometheus.CounterValue, []string{"result"},
				func(emit func(float64, ...string)) {
					t := c.totals()
					emit(float64(t.Got), "got")
					emit(float64(t.None), "none")
					emit(float64(t.AllTaken), "all_taken")
					emit(float64(t.Overloaded), "overloaded")
				}),
			obs.Counter("hongbao_client_received_cents_total", "Money received in shake packets, in cents.", tot(func(t Counts) uint64 { return t.Amount })),
			obs.Counter("hongbao_client_pushes_total", "Group packets pushed to the client's users.", tot(func(t Counts) uint64 { return t.Pushes })),
			obs.Counter("hongbao_client_opens_total", "Group packet open answers received.", tot(func(t Counts) uint64 { return t.Opens })),
			obs.Counter("hongbao_client_opened_cents_total", "Money received by opening group packets, in cents.", tot(func(t Counts) uint64 { return t.OpenedAmount })),
			obs.Counter("hongbao_client_timeouts_total", "Shakes unanswered within the timeout.", tot(func(t Counts) uint64 { return t.Timeouts })),
			obs.Counter("hongbao_client_errors_total", "Dial, login and protocol errors.", tot(func(t Counts) uint64 { return t.Errors })),
			obs.Counter("hongbao_client_logins_total", "Successful logins.", tot(func(t Counts) uint64 { return t.Logins })),
			obs.Labelled("hongbao_client_disconnects_total", "Connections closed by the server, by the reason it gave.", prometheus.CounterValue, []string{"reason"},
				func(emit func(float64, ...string)) {
					for r, n := range c.reasonsCopy() {
						emit(float64(n), r)
					}
				}),
			obs.Gauge("hongbao_client_connections", "Users logged in now.", func() float64 { return float64(c.conns()) }),
			obs.Gauge("hongbao_client_in_flight", "Shakes sent and not yet answered or timed out.", func() float64 { return float64(c.inFlight()) }),
			obs.Gauge("hongbao_client_target_qps", "Global shake rate in force.", func() float64 { return float64(c.QPS()) }),
		},
		Descs: []*prometheus.Desc{latDesc},
		Extra: func(ch chan<- prometheus.Metric) {
			c.histMu.Lock()
			count, sum, buckets := promBuckets(c.cum)
			c.histMu.Unlock()
			ch <- prometheus.MustNewConstHistogram(latDesc, count, sum, buckets)
		},
	}
	obs.Mount(mux, col)
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
