package monitor_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"hongbao/internal/load"
	"hongbao/internal/monitor"
	"hongbao/internal/server"
	"hongbao/internal/testutil/servertest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var secret = []byte("live-test-secret")

// live is a monitor fed by a real server and two real load clients, all in
// this process, speaking the real protocols over loopback.
type live struct {
	mon  *monitor.Running
	srv  *server.Server
	sums []*load.Summary
	done chan struct{}
}

// startLive starts the monitor, the server (with a campaign) and two load
// clients of users/2 each, running for d; wait() returns when they are done.
func startLive(t *testing.T, users, qps int, d time.Duration) *live {
	t.Helper()
	mon, err := monitor.Listen("127.0.0.1:0", monitor.Options{Grace: time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mon.Stop() })
	srv := servertest.Start(t, server.Options{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", AdminToken: "monitor-live-test-admin-token", Secret: secret, Sets: 8,
		Logger: quiet, Monitor: mon.Addr(), Loops: 1})
	if _, err := srv.StartCampaign(server.CampaignSpec{Count: 1 << 20, Rate: 300, Min: 1, Max: 200}); err != nil {
		t.Fatal(err)
	}
	l := &live{mon: mon, srv: srv, sums: make([]*load.Summary, 2), done: make(chan struct{})}
	// Cleanups run last-in first-out: the clients stop before the server
	// and the monitor.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); <-l.done })
	var wg sync.WaitGroup
	half := uint32(users / 2)
	for i, r := range [][2]uint32{{1, half}, {half + 1, uint32(users)}} {
		c, err := load.New(load.Options{Addr: srv.Addr(), Total: users, From: r[0], To: r[1], QPS: qps, Duration: d,
			Secret: secret, Loops: 1, Monitor: mon.Addr(), Name: []string{"load-1", "load-2"}[i]})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			s, err := c.Run(ctx)
			if err != nil {
				t.Error(err)
			}
			l.sums[i] = s
		})
	}
	go func() { wg.Wait(); close(l.done) }()
	return l
}

// TestRealProcessesMergeToTheirTotals: a real server and two real load
// clients push to a monitor; summed over the seconds, the merged series
// equals what each side counted in total, and the server's answers match
// the clients' by result.
func TestRealProcessesMergeToTheirTotals(t *testing.T) {
	t.Parallel()
	l := startLive(t, 400, 800, 3*time.Second)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil { // pushes its last partial second
		t.Fatal(err)
	}
	st := l.srv.Stats()
	time.Sleep(200 * time.Millisecond) // let the goodbyes arrive
	if err := l.mon.Stop(); err != nil {
		t.Fatal(err)
	}
	secs := l.mon.Series(0)
	sum := func(side string, k string) (n float64) {
		for _, s := range secs {
			if side == "server" {
				n += s.Server[k]
			} else {
				n += s.Client[k]
			}
		}
		return n
	}
	var sent, answered, got, amount uint64
	for _, s := range l.sums {
		sent += s.Sent
		got += s.Got
		amount += s.Amount
		answered += s.Got + s.None + s.AllTaken + s.Overloaded
	}
	if sent < 1500 {
		t.Fatalf("only %d shakes sent", sent)
	}
	checks := []struct {
		name       string
		have, want float64
	}{
		{"client sent", sum("client", "sent"), float64(sent)},
		{"client got", sum("client", "got"), float64(got)},
		{"client cents", sum("client", "amount_cents"), float64(amount)},
		{"server shakes", sum("server", "shakes"), float64(st.Totals.Shakes)},
		{"server shakes vs client answers", sum("server", "shakes"), float64(answered)},
		{"server got vs client got", sum("server", "got"), float64(got)},
		{"server granted vs client cents", sum("server", "granted_cents"), float64(amount)},
		{"server logins", sum("server", "logins"), float64(st.Totals.Logins)},
	}
	for _, c := range checks {
		if c.have != c.want {
			t.Errorf("%s: series sums to %v, totals say %v", c.name, c.have, c.want)
		}
	}
	// Every second of the load has all three processes, their CPU and
	// memory; every whole one has answers (the first and the last can be a
	// few milliseconds of load, shorter than the clients' 8 ms tick).
	var load []monitor.Second
	for _, s := range secs {
		if s.Phase == "load" {
			load = append(load, s)
		}
	}
	loadSecs := len(load)
	for i, s := range load {
		if len(s.Procs) != 3 || len(s.Missing) != 0 {
			t.Errorf("t=%d: %d procs, missing %v", s.T, len(s.Procs), s.Missing)
		}
		whole := i > 0 && i < len(load)-1
		if (whole && (s.Latency == nil || s.Latency.Count == 0)) || s.Server["connections"] != 400 {
			t.Errorf("t=%d: latency %+v, server connections %v", s.T, s.Latency, s.Server["connections"])
		}
		for _, p := range s.Procs {
			if p.RSS <= 0 || p.Goroutines <= 0 {
				t.Errorf("t=%d %s: rss %d goroutines %d", s.T, p.Name, p.RSS, p.Goroutines)
			}
		}
	}
	if loadSecs < 2 {
		t.Errorf("%d seconds in the load phase", loadSecs)
	}
}
