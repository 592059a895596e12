// Package obs mounts the observability endpoints shared by the server's and
// the load client's admin listeners: Prometheus /metrics (client_golang, with
// the Go runtime and process collectors) and /debug/pprof.
//
// The hongbao collectors read the counters the processes already keep, at
// scrape time: the request path pays nothing for metrics.
package obs

import (
	"net/http"
	"net/http/pprof"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Mount registers cs with a fresh registry (plus the Go and process
// collectors) and serves it on GET /metrics, and net/http/pprof on
// /debug/pprof/.
func Mount(mux *http.ServeMux, cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range cs {
		reg.MustRegister(c)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return reg
}

// cmdline is pprof's /debug/pprof/cmdline with the values of secret flags
// replaced: the process's command line must not hand its secret to
// whoever can read the admin listener.
func cmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(strings.Join(RedactArgs(os.Args), "\x00")))
}

// Redacted replaces the value of a secret flag in RedactArgs.
const Redacted = "REDACTED"

// RedactArgs returns args with the value of every secret flag replaced by
// Redacted. A flag is secret when its name contains "secret" or
// "password" or ends in "token" (--secret, --admin-token); a name ending
// in "-file" names a file, not a secret. The value is after '=' or, without
// one, the next argument.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i := 1; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !secretFlag(strings.ToLower(name)) {
			continue
		}
		if hasValue {
			out[i] = a[:strings.Index(a, "=")+1] + Redacted
		} else if i+1 < len(out) {
			i++
			out[i] = Redacted
		}
	}
	return out
}

func secretFlag(name string) bool {
	if strings.HasSuffix(name, "-file") {
		return false
	}
	return strings.Contains(name, "secret") || strings.Contains(name, "password") || strings.HasSuffix(name, "token")
}

// Metric is one value a collector reports: a description, a type and a
// function reading the value with its label values.
type Metric struct {
	Desc  *prometheus.Desc
	Type  prometheus.ValueType
	Value func(emit func(v float64, labels ...string))
}

// Collector reports a fixed list of Metrics, reading them at scrape time.
type Collector struct {
	Metrics []Metric
	Extra   func(ch chan<- prometheus.Metric) // more metrics (e.g. a histogram)
	Descs   []*prometheus.Desc                // descriptions of Extra's metrics
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.Metrics {
		ch <- m.Desc
	}
	for _, d := range c.Descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.Metrics {
		m.Value(func(v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(m.Desc, m.Type, v, labels...)
		})
	}
	if c.Extra != nil {
		c.Extra(ch)
	}
}

// Counter is a Metric of type counter without labels.
func Counter(name, help string, v func() float64) Metric {
	return Metric{Desc: prometheus.NewDesc(name, help, nil, nil), Type: prometheus.CounterValue,
		Value: func(emit func(float64, ...string)) { emit(v()) }}
}

// Gauge is a Metric of type gauge without labels.
func Gauge(name, help string, v func() float64) Metric {
	return Metric{Desc: prometheus.NewDesc(name, help, nil, nil), Type: prometheus.GaugeValue,
		Value: func(emit func(float64, ...string)) { emit(v()) }}
}

// Labelled is a Metric with labels whose values emit reports.
func Labelled(name, help string, t prometheus.ValueType, labels []string, emit func(emit func(float64, ...string))) Metric {
	return Metric{Desc: prometheus.NewDesc(name, help, labels, nil), Type: t, Value: emit}
}
