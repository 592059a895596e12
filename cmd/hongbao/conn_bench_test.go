package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hongbao/internal/harness"
	"hongbao/internal/load"
)

// cpuTime is the CPU time process pid has used: the sum of its threads'
// time on a CPU from /proc/PID/task/*/schedstat, in nanoseconds where
// /proc/PID/stat counts 10 ms ticks. A thread that exits takes its time
// with it; a Go program's threads do not exit.
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += ns
	}
	return time.Duration(sum), nil
}

// BenchmarkIdleConnsDeadlines measures the CPU a server process spends
// holding 10,000 idle logged-in connections (the clients in this process:
// 20,000 descriptors would not fit in one), with the deadlines off and on,
// over a window of HONGBAO_BENCH_WINDOW (default 10 s) after the ramp has
// settled. With the default deadlines (idle 5 min) a session is looked at
// once per idle timeout; with a 30 s idle timeout and the clients pinging
// every 10 s, the wheel refiles every session every 30 s or so: compare
// that with the same pings and no deadlines.
//
//	go test -run '^$' -bench IdleConnsDeadlines -benchtime 1x ./cmd/hongbao/
func BenchmarkIdleConnsDeadlines(b *testing.B) {
	const users = 10_000
	window := 10 * time.Second
	if w, err := time.ParseDuration(os.Getenv("HONGBAO_BENCH_WINDOW")); err == nil {
		window = w
	}
	off := []string{"--login-timeout", "0", "--frame-timeout", "0", "--idle-timeout", "0"}
	for _, cfg := range []struct {
		name string
		args []string
		ping time.Duration
	}{
		{"off", off, -1},
		{"on-defaults", nil, -1},
		{"off-ping10s", off, 10 * time.Second},
		{"on-idle30s-ping10s", []string{"--idle-timeout", "30s"}, 10 * time.Second},
	} {
		b.Run(cfg.name, func(b *testing.B) {
			dir := b.TempDir()
			secret := harness.NewSecret()
			srv, err := harness.StartServer(bin, dir, harness.ServerSpec{Secret: secret, Users: users, Extra: append([]string{"--ledger=false"}, cfg.args...)})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Stop(10 * time.Second)
			cl, err := load.New(load.Options{Addr: srv.Addr, Total: users, QPS: 0, Secret: []byte(secret), Loops: 1, PingIdle: cfg.ping})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = cl.Run(ctx)
			}()
			defer func() { cancel(); <-done }()
			for deadline := time.Now().Add(60 * time.Second); cl.Stats().Conns < users; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d connected after 60 s", cl.Stats().Conns, users)
				}
			}
			time.Sleep(2 * time.Second) // let the ramp's work settle
			b.ResetTimer()
			var total time.Duration
			for range b.N {
				c0, err := cpuTime(srv.Pid())
				if err != nil {
					b.Fatal(err)
				}
				time.Sleep(window)
				c1, err := cpuTime(srv.Pid())
				if err != nil {
					b.Fatal(err)
				}
				total += c1 - c0
			}
			b.StopTimer()
			if n := cl.Stats().Conns; n != users {
				b.Errorf("%d of %d connections left after the window", n, users)
			}
			perSec := float64(total) / float64(b.N) / window.Seconds() / 1e6
			b.ReportMetric(perSec, "server-cpu-ms/s")
			b.ReportMetric(float64(cl.Stats().Pings), "pings")
			b.Logf("%s: server CPU %.2f ms per second with %d idle connections", cfg.name, perSec, users)
		})
	}
}
