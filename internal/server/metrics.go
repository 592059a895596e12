package server

import (
	"sync/atomic"

	"hongbao/internal/metric"
	"hongbao/internal/sample"
)

// Metrics are the server's metrics: each row is a key of the per-second
// sample (a column of the monitor's CSV), a series on /metrics, or both.
// A new counter is a field of counters, its increment, and a row here.
var Metrics = serverMetrics()

// reading is what the rows of Metrics read, taken once per sample or
// scrape: the loops' counters are read by each row, the rest here.
type reading struct {
	s               *Server
	groups          GroupStats
	issued, issuedA uint64
	online          int64
	waiting         int
}

func (s *Server) read() *reading {
	r := &reading{s: s, groups: s.groupStats()}
	r.issued, r.issuedA = s.issuedTotals()
	r.online, r.waiting = s.occupancy()
	return r
}

// loops reads a counter of the event loops: their sum.
func loops(f func(*counters) *atomic.Uint64) func(*reading) float64 {
	return func(r *reading) float64 {
		var n uint64
		for _, l := range r.s.loops {
			n += f(&l.counters).Load()
		}
		return float64(n)
	}
}

// group reads a group-packet counter.
func group(f func(GroupStats) uint64) func(*reading) float64 {
	return func(r *reading) float64 { return float64(f(r.groups)) }
}

func serverMetrics() metric.Table[*reading] {
	type row = metric.Metric[*reading]
	t := metric.Table[*reading]{
		{Key: "requests", Read: func(r *reading) float64 {
			var n uint64
			for _, l := range r.s.loops {
				for i := range l.counters.commands {
					n += l.counters.commands[i].Load()
				}
			}
			return float64(n)
		}},
		{Key: "shakes", Read: loops(func(c *counters) *atomic.Uint64 { return &c.shakes })},
		{Key: "got", Prom: "hongbao_shakes_total", Label: "result", LabelValue: "got", Help: "Shakes answered by the server, by result.",
			Read: loops(func(c *counters) *atomic.Uint64 { return &c.got })},
		{Key: "none", Prom: "hongbao_shakes_total", Label: "result", LabelValue: "none", Read: loops(func(c *counters) *atomic.Uint64 { return &c.none })},
		{Key: "all_taken", Prom: "hongbao_shakes_total", Label: "result", LabelValue: "all_taken", Read: loops(func(c *counters) *atomic.Uint64 { return &c.allTaken })},
		{Key: "overloaded", Prom: "hongbao_shakes_total", Label: "result", LabelValue: "overloaded", Read: loops(func(c *counters) *atomic.Uint64 { return &c.overloaded })},
		{Key: "logins", Prom: "hongbao_logins_total", Help: "Successful logins.", Read: loops(func(c *counters) *atomic.Uint64 { return &c.logins })},
		{Key: "errors", Prom: "hongbao_errors_total", Help: "Protocol and login errors answered with an error frame.",
			Read: loops(func(c *counters) *atomic.Uint64 { return &c.errors })},
		{Key: "granted_cents", Prom: "hongbao_granted_cents_total", Help: "Money granted in shake packets, in cents (1/100 yuan).",
			Read: loops(func(c *counters) *atomic.Uint64 { return &c.grantedAmount })},
		{Key: "accepted", Prom: "hongbao_connections_accepted_total", Help: "TCP connections accepted.",
			Read: loopInts(func(c *counters) *atomic.Int64 { return &c.opened })},
		{Key: "closed", Prom: "hongbao_connections_closed_total", Help: "TCP connections closed.",
			Read: loopInts(func(c *counters) *atomic.Int64 { return &c.closed })},
		{Key: "issued", Prom: "hongbao_packets_issued_total", Help: "Shake packets issued by campaigns.",
			Read: func(r *reading) float64 { return float64(r.issued) }},
		{Key: "issued_cents", Prom: "hongbao_packets_issued_cents_total", Help: "Money issued in shake packets, in cents.",
			Read: func(r *reading) float64 { return float64(r.issuedA) }},
		{Key: "group_sent", Prom: "hongbao_group_packets_sent_total", Help: "Group packets sent (funded).",
			Read: group(func(g GroupStats) uint64 { return g.Sent })},
		{Key: "group_sent_cents", Prom: "hongbao_group_packets_sent_cents_total", Help: "Money put in group packets, in cents.",
			Read: group(func(g GroupStats) uint64 { return g.FundedAmount })},
		{Key: "group_opens", Prom: "hongbao_group_opens_total", Help: "Opens of group packets, whatever their result.",
			Read: group(func(g GroupStats) uint64 { return g.Opens })},
		{Key: "group_shares", Prom: "hongbao_group_shares_granted_total", Help: "Group packet shares granted to recipients.",
			Read: group(func(g GroupStats) uint64 { return g.Grants })},
		{Key: "group_shares_cents", Prom: "hongbao_group_shares_granted_cents_total", Help: "Money granted in group packet shares, in cents.",
			Read: group(func(g GroupStats) uint64 { return g.GrantedAmount })},
		{Key: "group_refunds", Prom: "hongbao_group_refunds_total", Help: "Expired group packets refunded to their senders.",
			Read: group(func(g GroupStats) uint64 { return g.Refunds })},
		{Key: "group_refunded_cents", Prom: "hongbao_group_refunded_cents_total", Help: "Money refunded from expired group packets, in cents.",
			Read: group(func(g GroupStats) uint64 { return g.Refunded })},
		{Key: "group_pushes", Prom: "hongbao_group_pushes_total", Help: "Group packet pushes queued to online recipients.",
			Read: group(func(g GroupStats) uint64 { return g.Pushes })},
		{Key: "outbox_dropped", Prom: "hongbao_outbox_dropped_total",
			Help: "Frames from outside a connection's loop (pushes, answers completed by the ledger, refund notices) not queued because the connection was closed or closing, or its outbox full (then what waited is dropped too and the client closed as a slow reader).",
			Read: loops(func(c *counters) *atomic.Uint64 { return &c.outboxDropped })},
	}
	for i, name := range commandNames {
		t = append(t, row{Key: "requests_" + name, Prom: "hongbao_requests_total", Label: "command", LabelValue: name,
			Help: "Requests (frames) handled by the server, by command.",
			Read: loops(func(c *counters) *atomic.Uint64 { return &c.commands[i] })})
	}
	for i, name := range disconnectNames {
		t = append(t, row{Key: "disconnects_" + name, Prom: "hongbao_disconnects_total", Label: "reason", LabelValue: name,
			Help: "Connections closed, by reason: the protocol reason the server gave, or hangup (the client closed), io_error, stopped.",
			Read: loops(func(c *counters) *atomic.Uint64 { return &c.disconnects[i] })})
	}
	return append(t,
		row{Prom: "hongbao_group_sends_refused_total", Label: "result", LabelValue: "too_many_packets",
			Help: "Group sends refused by the limits of live state, by result.", Read: group(func(g GroupStats) uint64 { return g.TooMany })},
		row{Prom: "hongbao_group_sends_refused_total", Label: "result", LabelValue: "rate_limited", Read: group(func(g GroupStats) uint64 { return g.RateLimited })},
		row{Prom: "hongbao_group_packets_live", Help: "Group packets in memory (sent, not yet expired).", Gauge: true,
			Read: func(r *reading) float64 { return float64(r.groups.Live) }},
		row{Key: "connections", Prom: "hongbao_connections", Help: "TCP connections open now.", Gauge: true,
			Read: loopInts(func(c *counters) *atomic.Int64 { return &c.conns })},
		row{Key: "online", Prom: "hongbao_users_online", Help: "Users logged in now.", Gauge: true,
			Read: func(r *reading) float64 { return float64(r.online) }},
		row{Key: "waiting", Prom: "hongbao_packets_waiting", Help: "Packets issued and not yet taken.", Gauge: true,
			Read: func(r *reading) float64 { return float64(r.waiting) }},
		// The same count: a level in the samples, a counter on /metrics.
		row{Key: "monitor_dropped_total", Gauge: true, Read: monitorDropped},
		row{Prom: "hongbao_monitor_samples_dropped_total", Help: "Per-second samples dropped because the monitor was unreachable.", Read: monitorDropped},
	)
}

// loopInts reads a signed counter or level of the event loops: their sum.
func loopInts(f func(*counters) *atomic.Int64) func(*reading) float64 {
	return func(r *reading) float64 {
		var n int64
		for _, l := range r.s.loops {
			n += f(&l.counters).Load()
		}
		return float64(n)
	}
}

func monitorDropped(r *reading) float64 {
	if r.s.mon == nil {
		return 0
	}
	return float64(r.s.mon.pusher.Dropped())
}

// The label values of the by-command and by-reason counters, indexed like
// counters.commands and counters.disconnects.
var (
	commandNames    = sample.ServerCommands
	disconnectNames = sample.DisconnectReasons()
)
