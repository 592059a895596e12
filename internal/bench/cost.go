package bench

import (
	"context"
	"fmt"
	"sort"
	"time"

	"hongbao/internal/harness"
	"hongbao/internal/monitor"
	"hongbao/internal/procstat"
	"hongbao/internal/server"
)

// CostWindow is one measured window of the monitoring-cost comparison.
type CostWindow struct {
	Round       int     `json:"round"`
	Monitored   bool    `json:"monitored"` // samples pushed, /metrics scraped every second
	Seconds     float64 `json:"seconds"`
	AchievedQPS float64 `json:"achieved_qps"`
	CPUusPerReq float64 `json:"server_cpu_us_per_req"`
	Cores       float64 `json:"server_cores"`
	Scrapes     int     `json:"scrapes"`
}

// CostReport compares the server's CPU per request with and without
// monitoring, in alternating windows of one run of one server.
type CostReport struct {
	QPS     int          `json:"qps"`
	Conns   int          `json:"conns"`
	Windows []CostWindow `json:"windows"`
	Samples uint64       `json:"samples_at_monitor"`
	// Ratio is mean CPU/req of the monitored windows over the plain ones
	// (CPU and requests summed over the windows of each kind).
	Ratio       float64 `json:"ratio"`
	OverheadPct float64 `json:"overhead_pct"`
	// PairedRatio is the median over rounds of monitored/plain in the round.
	PairedRatio float64 `json:"paired_ratio"`
	// NoisePct is the spread (max-min)/median of the plain windows: the
	// noise the ratio is read against.
	NoisePct float64 `json:"noise_pct"`
	Verdict  string  `json:"verdict"`
}

// MonitorCost measures what monitoring costs the server. One server runs
// with --monitor (to a monitor in this process) under one load client at
// o.QPS; after the warm-up, rounds pairs of windows of o.StepTime follow,
// off-on then on-off (ABBA, so a drift weighs on both sides alike). In an
// "off" window the server's samples are paused and nobody scrapes; in an
// "on" window it pushes a sample every second and /metrics is scraped
// every second. Comparing windows of one process removes the run-to-run
// noise of separate processes (20% here, more than the effect).
func MonitorCost(ctx context.Context, o Options, rounds int) (*CostReport, error) {
	o.defaults()
	mon, err := monitor.Listen("127.0.0.1:0", monitor.Options{Grace: time.Second})
	if err != nil {
		return nil, err
	}
	defer mon.Stop()
	secret := harness.NewSecret()
	srv, err := harness.StartServer(o.Bin, o.Dir, harness.ServerSpec{Users: o.Conns, Budget: 10_000_000, Secret: secret,
		Extra: []string{"--monitor", mon.Addr(), "--name", "bench-server"}})
	if err != nil {
		return nil, err
	}
	defer srv.Stop(10 * time.Second)
	if _, err := srv.Admin.StartCampaign(server.CampaignSpec{Count: 1 << 30, Rate: 200, Min: 1, Max: 200}); err != nil {
		return nil, err
	}
	window := o.StepTime
	// Each window also waits 1.1 s for the switch to settle.
	total := o.Warmup + time.Duration(2*rounds)*(window+2*time.Second) + 10*time.Second
	lp, err := harness.StartLoad(o.Bin, o.Dir, harness.LoadSpec{Addr: srv.Addr, Users: o.Conns, QPS: o.QPS, Duration: total, Secret: secret, Name: "cost"})
	if err != nil {
		return nil, err
	}
	defer lp.Stop(5 * time.Second)
	fmt.Fprintf(o.Log, "cost: %d connections, %d shakes/s, %d rounds of 2 windows of %v\n", o.Conns, o.QPS, rounds, window)
	if err := waitOnline(ctx, srv, lp, o.Conns); err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.Warmup); err != nil {
		return nil, err
	}
	rep := &CostReport{QPS: o.QPS, Conns: o.Conns}
	before := mon.Status().Received
	var cpu, reqs [2]float64
	var per [2][]float64
	for r := 1; r <= rounds; r++ {
		order := []bool{false, true}
		if r%2 == 0 {
			order = []bool{true, false}
		}
		for _, on := range order {
			w, err := costWindow(ctx, srv, on, window)
			if err != nil {
				return rep, err
			}
			w.Round = r
			if w.AchievedQPS < 0.9*float64(o.QPS) {
				return rep, fmt.Errorf("window %d: the load fell to %.0f/s of %d", len(rep.Windows)+1, w.AchievedQPS, o.QPS)
			}
			rep.Windows = append(rep.Windows, *w)
			k := 0
			if on {
				k = 1
			}
			cpu[k] += w.Cores * w.Seconds
			reqs[k] += w.AchievedQPS * w.Seconds
			per[k] = append(per[k], w.CPUusPerReq)
			fmt.Fprintf(o.Log, "round %d monitored=%v: %.0f/s, server %.3f us/req (%.3f cores), %d scrapes\n", r, on, w.AchievedQPS, w.CPUusPerReq, w.Cores, w.Scrapes)
		}
	}
	rep.Samples = mon.Status().Received - before
	if reqs[0] > 0 && reqs[1] > 0 && cpu[0] > 0 {
		rep.Ratio = (cpu[1] / reqs[1]) / (cpu[0] / reqs[0])
		rep.OverheadPct = (rep.Ratio - 1) * 100
		m := median(per[0])
		lo, hi := per[0][0], per[0][0]
		var paired []float64
		for i, p := range per[0] {
			lo, hi = min(lo, p), max(hi, p)
			if p > 0 {
				paired = append(paired, per[1][i]/p)
			}
		}
		rep.NoisePct = (hi - lo) / m * 100
		rep.PairedRatio = median(paired)
	}
	rep.Verdict = "within the 3% budget"
	if rep.OverheadPct > 3 {
		rep.Verdict = "over the 3% budget"
	}
	return rep, nil
}

func waitOnline(ctx context.Context, srv *harness.ServerProc, lp *harness.LoadProc, conns int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := srv.Admin.ServerStats()
		if err == nil && st.LoggedIn >= int64(conns) {
			return nil
		}
		select {
		case <-lp.Done():
			_, err := lp.Summary()
			return fmt.Errorf("load client exited while connecting: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d connections not up after 2 minutes", conns)
		}
	}
}

// readServer reads the server process's CPU and memory and its counters,
// one end of a measured window.
func readServer(srv *harness.ServerProc) (procstat.Sample, server.Stats, error) {
	s, err := srv.Sample()
	if err != nil {
		return s, server.Stats{}, err
	}
	st, err := srv.Admin.ServerStats()
	return s, st, err
}

// costWindow measures the server for d with monitoring on or off.
func costWindow(ctx context.Context, srv *harness.ServerProc, on bool, d time.Duration) (*CostWindow, error) {
	if err := srv.Admin.PauseMonitor(!on); err != nil {
		return nil, err
	}
	// Let the switch settle (the sample of the second in progress).
	if err := sleep(ctx, 1100*time.Millisecond); err != nil {
		return nil, err
	}
	s0, st0, err := readServer(srv)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	scrapes := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.After(d)
loop:
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-end:
			break loop
		case <-tick.C:
			if !on {
				continue
			}
			if _, err := srv.Admin.Metrics(); err == nil {
				scrapes++
			}
		}
	}
	s1, st1, err := readServer(srv)
	if err != nil {
		return nil, err
	}
	secs := time.Since(t0).Seconds()
	n := float64(st1.Totals.Requests - st0.Totals.Requests)
	return &CostWindow{Monitored: on, Seconds: secs, AchievedQPS: n / secs, CPUusPerReq: perReq(s1.CPU-s0.CPU, n),
		Cores: (s1.CPU - s0.CPU).Seconds() / secs, Scrapes: scrapes}, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
