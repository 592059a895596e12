package server

import (
	"net/http"
	"os"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"hongbao/internal/obs"
	"hongbao/internal/sample"
)

// This file is the server's monitoring: the per-second sample pushed to a
// monitor (Options.Monitor) and the Prometheus collector behind /metrics.
// Both read the counters the event loops already keep, at a second tick or
// at scrape time, so the request path pays nothing for them.

// monitorState is owned by the ticker goroutine.
type monitorState struct {
	pusher      *sample.Pusher
	host        string
	last        Totals
	lastGroups  GroupStats
	lastIssued  uint64
	lastIssuedA uint64
	paused      atomic.Bool // POST /debug/monitor?paused=1: no samples (for the cost benchmark)
}

// startMonitor starts pushing samples when Options.Monitor is set.
func (s *Server) startMonitor() {
	if s.opts.Monitor == "" {
		return
	}
	m := &monitorState{pusher: sample.NewPusher(s.opts.Monitor, s.opts.Name, sample.KindServer, s.opts.Logger), host: sample.Hostname()}
	m.last, _ = s.totals()
	m.lastGroups = s.groupStats()
	m.lastIssued, m.lastIssuedA = s.issuedTotals()
	s.mon = m
}

// stopMonitor pushes the partial second since the last tick (the ticker
// has stopped), so that the samples add up to the server's totals, and
// says goodbye to the monitor.
func (s *Server) stopMonitor() {
	if s.mon == nil {
		return
	}
	tot, conns := s.totals()
	s.monitorTick(s.opts.Now().Unix(), tot, conns)
	s.mon.pusher.Close()
}

// issuedTotals sums the packets issued by every campaign and their amounts.
func (s *Server) issuedTotals() (n, amount uint64) {
	for _, c := range s.camps.infos() {
		n += uint64(c.Issued)
		amount += c.AmountIssued
	}
	return n, amount
}

// monitorTick pushes the sample of second sec; the ticker calls it at the
// boundary that ends sec, with the totals it read there.
func (s *Server) monitorTick(sec int64, t Totals, conns int64) {
	m := s.mon
	if m == nil {
		return
	}
	issued, issuedA := s.issuedTotals()
	gs := s.groupStats()
	if m.paused.Load() {
		m.last, m.lastGroups, m.lastIssued, m.lastIssuedA = t, gs, issued, issuedA
		return
	}
	d := t.sub(m.last)
	online, waiting := s.occupancy()
	smp := sample.Sample{
		Name: s.opts.Name, Kind: sample.KindServer, Pid: os.Getpid(), Host: m.host, T: sec,
		Counters: sampleCounters(d, gs.sub(m.lastGroups), issued-m.lastIssued, issuedA-m.lastIssuedA),
		Gauges: map[string]float64{"connections": float64(conns), "online": float64(online), "waiting": float64(waiting),
			"monitor_dropped_total": float64(m.pusher.Dropped())},
	}
	m.last, m.lastGroups, m.lastIssued, m.lastIssuedA = t, gs, issued, issuedA
	m.pusher.PushMetered(smp)
}

// sampleCounters are a second's counters: d, g, issued and issuedA are its
// differences of the running totals. The keys are sample.ServerCounters.
func sampleCounters(d Totals, g GroupStats, issued, issuedA uint64) map[string]uint64 {
	c := map[string]uint64{
		"requests": d.Requests, "shakes": d.Shakes, "got": d.Got, "none": d.None,
		"all_taken": d.AllTaken, "overloaded": d.Overloaded, "logins": d.Logins,
		"errors": d.Errors, "granted_cents": d.GrantedAmount, "accepted": d.Accepted,
		"closed": d.Closed, "issued": issued, "issued_cents": issuedA,
		"group_sent": g.Sent, "group_sent_cents": g.FundedAmount, "group_opens": g.Opens,
		"group_shares": g.Grants, "group_shares_cents": g.GrantedAmount,
		"group_refunds": g.Refunds, "group_refunded_cents": g.Refunded, "group_pushes": g.Pushes,
	}
	for i, name := range commandNames {
		c["requests_"+name] = d.Commands[i]
	}
	for i, name := range disconnectNames {
		c["disconnects_"+name] = d.Disconnects[i]
	}
	return c
}

// The label values of the by-command and by-reason counters, indexed like
// counters.commands and counters.disconnects.
var (
	commandNames    = sample.ServerCommands
	disconnectNames = sample.DisconnectReasons()
)

// mountObservability adds /metrics and /debug/pprof to the admin mux.
func (s *Server) mountObservability(mux *http.ServeMux) {
	tot := func(f func(Totals) uint64) func() float64 {
		return func() float64 { t, _ := s.totals(); return float64(f(t)) }
	}
	grp := func(f func(GroupStats) uint64) func() float64 {
		return func() float64 { return float64(f(s.groupStats())) }
	}
	col := &obs.Collector{Metrics: []obs.Metric{
		obs.Labelled("hongbao_requests_total", "Requests (frames) handled by the server, by command.", prometheus.CounterValue, []string{"command"},
			func(emit func(float64, ...string)) {
				t, _ := s.totals()
				for i, name := range commandNames {
					emit(float64(t.Commands[i]), name)
				}
			}),
		obs.Labelled("hongbao_disconnects_total", "Connections closed, by reason: the protocol reason the server gave, or hangup (the client closed), io_error, stopped.", prometheus.CounterValue, []string{"reason"},
			func(emit func(float64, ...string)) {
				t, _ := s.totals()
				for i, name := range disconnectNames {
					emit(float64(t.Disconnects[i]), name)
				}
			}),
		obs.Labelled("hongbao_shakes_total", "Shakes answered by the server, by result.", prometheus.CounterValue, []string{"result"},
			func(emit func(float64, ...string)) {
				t, _ := s.totals()
				emit(float64(t.Got), "got")
				emit(float64(t.None), "none")
				emit(float64(t.AllTaken), "all_taken")
				emit(float64(t.Overloaded), "overloaded")
			}),
		obs.Counter("hongbao_logins_total", "Successful logins.", tot(func(t Totals) uint64 { return t.Logins })),
		obs.Counter("hongbao_errors_total", "Protocol and login errors answered with an error frame.", tot(func(t Totals) uint64 { return t.Errors })),
		obs.Counter("hongbao_granted_cents_total", "Money granted in shake packets, in cents (1/100 yuan).", tot(func(t Totals) uint64 { return t.GrantedAmount })),
		obs.Counter("hongbao_connections_accepted_total", "TCP connections accepted.", tot(func(t Totals) uint64 { return t.Accepted })),
		obs.Counter("hongbao_connections_closed_total", "TCP connections closed.", tot(func(t Totals) uint64 { return t.Closed })),
		obs.Gauge("hongbao_connections", "TCP connections open now.", func() float64 { _, c := s.totals(); return float64(c) }),
		obs.Gauge("hongbao_users_online", "Users logged in now.", func() float64 { n, _ := s.occupancy(); return float64(n) }),
		obs.Gauge("hongbao_packets_waiting", "Packets issued and not yet taken.", func() float64 { _, n := s.occupancy(); return float64(n) }),
		obs.Counter("hongbao_packets_issued_total", "Shake packets issued by campaigns.", func() float64 { n, _ := s.issuedTotals(); return float64(n) }),
		obs.Counter("hongbao_packets_issued_cents_total", "Money issued in shake packets, in cents.", func() float64 { _, a := s.issuedTotals(); return float64(a) }),
		obs.Counter("hongbao_group_packets_sent_total", "Group packets sent (funded).", grp(func(g GroupStats) uint64 { return g.Sent })),
		obs.Counter("hongbao_group_packets_sent_cents_total", "Money put in group packets, in cents.", grp(func(g GroupStats) uint64 { return g.FundedAmount })),
		obs.Counter("hongbao_group_opens_total", "Opens of group packets, whatever their result.", grp(func(g GroupStats) uint64 { return g.Opens })),
		obs.Counter("hongbao_group_shares_granted_total", "Group packet shares granted to recipients.", grp(func(g GroupStats) uint64 { return g.Grants })),
		obs.Counter("hongbao_group_shares_granted_cents_total", "Money granted in group packet shares, in cents.", grp(func(g GroupStats) uint64 { return g.GrantedAmount })),
		obs.Counter("hongbao_group_refunds_total", "Expired group packets refunded to their senders.", grp(func(g GroupStats) uint64 { return g.Refunds })),
		obs.Counter("hongbao_group_refunded_cents_total", "Money refunded from expired group packets, in cents.", grp(func(g GroupStats) uint64 { return g.Refunded })),
		obs.Labelled("hongbao_group_sends_refused_total", "Group sends refused by the limits of live state, by result.", prometheus.CounterValue, []string{"result"},
			func(emit func(float64, ...string)) {
				g := s.groupStats()
				emit(float64(g.TooMany), "too_many_packets")
				emit(float64(g.RateLimited), "rate_limited")
			}),
		obs.Gauge("hongbao_group_packets_live", "Group packets in memory (sent, not yet expired).", func() float64 { return float64(s.groups.live.Load()) }),
		obs.Counter("hongbao_group_pushes_total", "Group packet pushes queued to online recipients.", grp(func(g GroupStats) uint64 { return g.Pushes })),
		obs.Counter("hongbao_monitor_samples_dropped_total", "Per-second samples dropped because the monitor was unreachable.", func() float64 {
			if s.mon == nil {
				return 0
			}
			return float64(s.mon.pusher.Dropped())
		}),
	}}
	obs.Mount(mux, col)
	// The cost benchmark pauses and resumes the samples of one running
	// server, to compare windows of the same process with and without them.
	mux.HandleFunc("POST /debug/monitor", func(w http.ResponseWriter, r *http.Request) {
		if s.mon == nil {
			http.Error(w, "no --monitor", http.StatusNotFound)
			return
		}
		s.mon.paused.Store(r.FormValue("paused") == "1")
		w.WriteHeader(http.StatusNoContent)
	})
}
