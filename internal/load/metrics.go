package load

import (
	"hongbao/internal/metric"
	"hongbao/internal/proto"
	"hongbao/internal/sample"
)

// Metrics are the load client's metrics: each row is a key of the
// per-second sample (a column of the monitor's CSV), a series on /metrics,
// or both. A count of the run is a field of Counts (with counters, addTo
// and sub) and a row here.
var Metrics = clientMetrics()

// reading is what the rows of Metrics read, taken once per sample or
// scrape.
type reading struct {
	t               Counts
	reasons         map[string]uint64 // closed by the server: reason text -> connections
	conns, inflight int64
	qps             int
	dropped         uint64
}

func (c *Client) read(t Counts) *reading {
	r := &reading{t: t, reasons: c.reasonsCopy(), conns: int64(c.conns()), inflight: c.inFlight(), qps: c.QPS()}
	if c.stats.mon != nil {
		r.dropped = c.stats.mon.pusher.Dropped()
	}
	return r
}

// count reads a count of the run.
func count(f func(*Counts) uint64) func(*reading) float64 {
	return func(r *reading) float64 { return float64(f(&r.t)) }
}

func clientMetrics() metric.Table[*reading] {
	var closedKeys []string
	for r := proto.Reason(1); r < proto.NumReasons; r++ {
		closedKeys = append(closedKeys, sample.ClosedByServerKey(r.String()))
	}
	const answers = "hongbao_client_answers_total"
	return metric.Table[*reading]{
		{Key: "sent", Prom: "hongbao_client_shakes_sent_total", Help: "Shakes sent.", Read: count(func(t *Counts) uint64 { return t.Sent })},
		{Key: "answered", Read: count(func(t *Counts) uint64 { return t.Answered })},
		{Key: "got", Prom: answers, Label: "result", LabelValue: "got", Help: "Answers received, by result.", Read: count(func(t *Counts) uint64 { return t.Got })},
		{Key: "none", Prom: answers, Label: "result", LabelValue: "none", Read: count(func(t *Counts) uint64 { return t.None })},
		{Key: "all_taken", Prom: answers, Label: "result", LabelValue: "all_taken", Read: count(func(t *Counts) uint64 { return t.AllTaken })},
		{Key: "overloaded", Prom: answers, Label: "result", LabelValue: "overloaded", Read: count(func(t *Counts) uint64 { return t.Overloaded })},
		{Key: "amount_cents", Prom: "hongbao_client_received_cents_total", Help: "Money received in shake packets, in cents.",
			Read: count(func(t *Counts) uint64 { return t.Amount })},
		{Key: "errors", Prom: "hongbao_client_errors_total", Help: "Dial, login and protocol errors.", Read: count(func(t *Counts) uint64 { return t.Errors })},
		{Key: "timeouts", Prom: "hongbao_client_timeouts_total", Help: "Shakes unanswered within the timeout.", Read: count(func(t *Counts) uint64 { return t.Timeouts })},
		{Key: "late", Read: count(func(t *Counts) uint64 { return t.Late })},
		{Key: "skipped_offline", Read: count(func(t *Counts) uint64 { return t.SkippedOffline })},
		{Key: "disconnects", Read: count(func(t *Counts) uint64 { return t.Disconnects })},
		{Key: "reconnects", Read: count(func(t *Counts) uint64 { return t.Reconnects })},
		{Key: "logins", Prom: "hongbao_client_logins_total", Help: "Successful logins.", Read: count(func(t *Counts) uint64 { return t.Logins })},
		{Key: "dial_errors", Read: count(func(t *Counts) uint64 { return t.DialErrors })},
		{Key: "pushes", Prom: "hongbao_client_pushes_total", Help: "Group packets pushed to the client's users.", Read: count(func(t *Counts) uint64 { return t.Pushes })},
		{Key: "opens", Prom: "hongbao_client_opens_total", Help: "Group packet open answers received.", Read: count(func(t *Counts) uint64 { return t.Opens })},
		{Key: "opened_cents", Prom: "hongbao_client_opened_cents_total", Help: "Money received by opening group packets, in cents.",
			Read: count(func(t *Counts) uint64 { return t.OpenedAmount })},
		{Key: "pings", Prom: "hongbao_client_pings_total", Help: "Keep-alive pings sent to connections silent for the ping interval.",
			Read: count(func(t *Counts) uint64 { return t.Pings })},
		{Key: "after_error", Prom: "hongbao_client_frames_after_error_total", Help: "Frames the server sent on a connection after its error frame (a correct server sends none).",
			Read: count(func(t *Counts) uint64 { return t.AfterError })},
		{Prom: "hongbao_client_disconnects_total", Label: "reason", Help: "Connections closed by the server, by the reason it gave.",
			Each: func(r *reading) map[string]uint64 { return r.reasons }, KeyOf: sample.ClosedByServerKey, Keys: closedKeys},
		{Key: "connections", Prom: "hongbao_client_connections", Help: "Users logged in now.", Gauge: true,
			Read: func(r *reading) float64 { return float64(r.conns) }},
		{Key: "in_flight", Prom: "hongbao_client_in_flight", Help: "Shakes sent and not yet answered or timed out.", Gauge: true,
			Read: func(r *reading) float64 { return float64(r.inflight) }},
		{Key: "qps", Prom: "hongbao_client_target_qps", Help: "Global shake rate in force.", Gauge: true,
			Read: func(r *reading) float64 { return float64(r.qps) }},
		{Key: "monitor_dropped_total", Gauge: true, Read: func(r *reading) float64 { return float64(r.dropped) }},
	}
}
