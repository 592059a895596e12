package server

import (
	"net/http"
	"os"
	"sync/atomic"

	"hongbao/internal/metric"
	"hongbao/internal/obs"
	"hongbao/internal/sample"
)

// This file is the server's monitoring: the per-second sample pushed to a
// monitor (Options.Monitor) and the Prometheus collector behind /metrics,
// both derived from the table Metrics (metrics.go). Both read the counters
// the event loops already keep, at a second tick or at scrape time, so the
// request path pays nothing for them.

// monitorState is owned by the ticker goroutine.
type monitorState struct {
	pusher *sample.Pusher
	host   string
	last   metric.Reading // at the end of the last second sampled
	paused atomic.Bool    // POST /debug/monitor?paused=1: no samples (for the cost benchmark)
}

// startMonitor starts pushing samples when Options.Monitor is set.
func (s *Server) startMonitor() {
	if s.opts.Monitor == "" {
		return
	}
	m := &monitorState{pusher: sample.NewPusher(s.opts.Monitor, s.opts.Name, sample.KindServer, s.opts.Logger), host: sample.Hostname()}
	m.last = Metrics.Read(s.read())
	s.mon = m
}

// stopMonitor pushes the partial second since the last tick (the ticker
// has stopped), so that the samples add up to the server's totals, and
// says goodbye to the monitor.
func (s *Server) stopMonitor() {
	if s.mon == nil {
		return
	}
	s.monitorTick(s.opts.Now().Unix())
	s.mon.pusher.Close()
}

// issuedTotals sums the packets issued by every campaign and their amounts.
func (s *Server) issuedTotals() (n, amount uint64) {
	for _, c := range s.money.Campaigns() {
		n += uint64(c.Issued)
		amount += c.AmountIssued
	}
	return n, amount
}

// monitorTick pushes the sample of second sec; the ticker calls it at the
// boundary that ends sec.
func (s *Server) monitorTick(sec int64) {
	m := s.mon
	if m == nil {
		return
	}
	cur := Metrics.Read(s.read())
	last := m.last
	m.last = cur
	if m.paused.Load() {
		return
	}
	counters, gauges := Metrics.Sample(cur, last)
	m.pusher.PushMetered(sample.Sample{
		Name: s.opts.Name, Kind: sample.KindServer, Pid: os.Getpid(), Host: m.host, T: sec,
		Counters: counters, Gauges: gauges,
	})
}

// mountObservability adds /metrics and /debug/pprof to the admin mux.
func (s *Server) mountObservability(mux *http.ServeMux) {
	obs.Mount(mux, Metrics.Collector(s.read))
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
