package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"hongbao/internal/procstat"
)

// BenchmarkMonitoringSecond measures the server-side CPU of one second of
// monitoring: building and queueing the second's sample (Options.Monitor)
// and serving one /metrics scrape, with as many open descriptors as a
// server holding 18,000 connections (the process collector counts them).
// Divide ns/op by the server's CPU per second at 18,000 shakes/s (about
// 190 ms: `hongbao bench` measures ~10.5 us/req) for the share it costs.
//
//	go test -run '^$' -bench MonitoringSecond -benchtime 200x ./internal/server/
func BenchmarkMonitoringSecond(b *testing.B) {
	push := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer push.Close()
	s := startServer(b, func(o *Options) { o.Monitor = push.URL })
	const fds = 18000
	var files []*os.File
	for range fds {
		f, err := os.Open(os.DevNull)
		if err != nil {
			b.Skipf("cannot hold %d descriptors: %v", fds, err)
		}
		files = append(files, f)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	h := s.adminHandler()
	sec := time.Now().Unix()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for range b.N {
		sec++
		s.monitorTick(sec)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkMonitorTick is the sample alone.
func BenchmarkMonitorTick(b *testing.B) {
	push := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer push.Close()
	s := startServer(b, func(o *Options) { o.Monitor = push.URL })
	sec := time.Now().Unix()
	b.ReportAllocs()
	defer reportCPU(b)()
	for range b.N {
		sec++
		s.monitorTick(sec)
	}
}

// serverCPUPerSecond18k is the server's CPU per second at 18,000 shakes/s
// on the reference box (hongbao bench: ~10.5 us/req).
const serverCPUPerSecond18k = 18000 * 10.5e3 // ns

// reportCPU reports the process's CPU (all goroutines, the pusher's too)
// per op, and that as a share of the server's CPU per second at 18k/s.
func reportCPU(b *testing.B) func() {
	c0, _ := procstat.Read(0)
	return func() {
		c1, _ := procstat.Read(0)
		per := float64(c1.CPU-c0.CPU) / float64(b.N)
		b.ReportMetric(per, "cpu-ns/op")
		b.ReportMetric(per/serverCPUPerSecond18k*100, "%server-cpu@18k/s")
	}
}
