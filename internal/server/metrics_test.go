package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsParseAsPrometheusText scrapes /metrics of a real server after
// a login and a shake, parses it with Prometheus's own text parser and
// checks the names, types and values; /debug/pprof is served there too.
func TestMetricsParseAsPrometheusText(t *testing.T) {
	s := startServer(t, nil)
	c := login(t, s, 7)
	if _, err := c.Shake(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	want := map[string]string{
		"hongbao_requests_total": "COUNTER", "hongbao_shakes_total": "COUNTER", "hongbao_logins_total": "COUNTER",
		"hongbao_errors_total": "COUNTER", "hongbao_granted_cents_total": "COUNTER",
		"hongbao_connections_accepted_total": "COUNTER", "hongbao_connections_closed_total": "COUNTER",
		"hongbao_connections": "GAUGE", "hongbao_users_online": "GAUGE", "hongbao_packets_waiting": "GAUGE",
		"hongbao_packets_issued_total": "COUNTER", "hongbao_packets_issued_cents_total": "COUNTER",
		"hongbao_monitor_samples_dropped_total": "COUNTER",
		"go_goroutines":                         "GAUGE", "process_cpu_seconds_total": "COUNTER", "process_resident_memory_bytes": "GAUGE",
	}
	for name, typ := range want {
		f, ok := fams[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if f.GetType().String() != typ {
			t.Errorf("%s is %s, want %s", name, f.GetType(), typ)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	for name, f := range fams {
		if strings.HasPrefix(name, "hongbao_") {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "user" {
						t.Errorf("%s has a per-user label", name)
					}
				}
			}
		}
	}
	var shakes float64
	for _, m := range fams["hongbao_shakes_total"].GetMetric() {
		shakes += m.GetCounter().GetValue()
	}
	if shakes != 1 || fams["hongbao_users_online"].GetMetric()[0].GetGauge().GetValue() != 1 ||
		fams["hongbao_logins_total"].GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Errorf("values: shakes %v, online %v", shakes, fams["hongbao_users_online"].GetMetric()[0].GetGauge().GetValue())
	}

	if code, b := httpDo(t, s, "GET", "/debug/pprof/goroutine?debug=1", ""); code != 200 || !strings.Contains(string(b), "goroutine profile") {
		t.Errorf("/debug/pprof: %d %.100s", code, b)
	}
}
