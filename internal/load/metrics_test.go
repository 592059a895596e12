package load

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"hongbao/internal/metric"
	"hongbao/internal/proto"
	"hongbao/internal/sample"
)

// TestClientMetrics scrapes the load client's /metrics during a run and
// parses it as Prometheus text.
func TestClientMetrics(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	c := newClient(t, Options{Addr: srv.addr(), Total: 100, QPS: 200, Duration: 2 * time.Second, Admin: "127.0.0.1:0", AdminToken: "load-test-admin-token"})
	done := make(chan *Summary)
	go func() { done <- run(t, c, nil) }()
	for c.Stats().Phase != phaseLoad {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(1200 * time.Millisecond) // a second rolled: the histogram has data
	resp, err := http.Get("http://" + c.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	for name, typ := range map[string]string{
		"hongbao_client_shakes_sent_total": "COUNTER", "hongbao_client_answers_total": "COUNTER",
		"hongbao_client_received_cents_total": "COUNTER", "hongbao_client_pushes_total": "COUNTER",
		"hongbao_client_opens_total": "COUNTER", "hongbao_client_opened_cents_total": "COUNTER", "hongbao_client_timeouts_total": "COUNTER",
		"hongbao_client_errors_total": "COUNTER", "hongbao_client_logins_total": "COUNTER",
		"hongbao_client_connections": "GAUGE", "hongbao_client_in_flight": "GAUGE",
		"hongbao_client_latency_seconds": "HISTOGRAM", "go_goroutines": "GAUGE", "process_cpu_seconds_total": "COUNTER",
	} {
		f, ok := fams[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if f.GetType().String() != typ {
			t.Errorf("%s is %s, want %s", name, f.GetType(), typ)
		}
	}
	if h := fams["hongbao_client_latency_seconds"]; h != nil {
		if n := h.GetMetric()[0].GetHistogram().GetSampleCount(); n == 0 {
			t.Error("latency histogram is empty after a second of load")
		}
	}
	if v := fams["hongbao_client_connections"].GetMetric()[0].GetGauge().GetValue(); v != 100 {
		t.Errorf("connections %v, want 100", v)
	}
	checkBalance(t, <-done)
}

// TestSampleCountersVocabulary: every counter of a client sample is a
// column of the monitor's CSV (Metrics.Counters), the group-packet
// ones included, and so are the closes by the server by reason.
func TestSampleCountersVocabulary(t *testing.T) {
	known := map[string]bool{}
	for _, k := range Metrics.Counters() {
		known[k] = true
	}
	c, _ := Metrics.Sample(Metrics.Read(&reading{t: Counts{Pushes: 3, Opens: 2, OpenedAmount: 250, Pings: 7, AfterError: 1}}), metric.Reading{})
	for k := range c {
		if !known[k] {
			t.Errorf("counter %q is not in Metrics.Counters", k)
		}
	}
	if c["pushes"] != 3 || c["opens"] != 2 || c["opened_cents"] != 250 || c["pings"] != 7 || c["after_error"] != 1 {
		t.Errorf("group counters %v", c)
	}
	for r := proto.Reason(1); r < proto.NumReasons; r++ {
		if k := sample.ClosedByServerKey(r.String()); !known[k] {
			t.Errorf("%q is not in Metrics.Counters", k)
		}
	}
	if k := sample.ClosedByServerKey(proto.ReasonShutdown.String()); k != "closed_by_server_server_shutting_down" {
		t.Errorf("key %q", k)
	}
}
