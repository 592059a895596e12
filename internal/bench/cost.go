package bench

import (
	"context"
	"fmt"
	"sort"
	"time"

	"hongbao/internal/monitor"
	"hongbao/internal/scenario"
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
	e := start(o)
	defer e.Cluster().Stop(5*time.Second, 10*time.Second)
	window := o.StepTime
	// Each window also waits 1.1 s for the switch to settle.
	total := o.Warmup + time.Duration(2*rounds)*(window+2*time.Second) + 10*time.Second
	fmt.Fprintf(o.Log, "cost: %d connections, %d shakes/s, %d rounds of 2 windows of %v\n", o.Conns, o.QPS, rounds, window)
	setup := append(serverPhases(o, "--monitor", mon.Addr(), "--name", "bench-server"),
		loadClient(o, "cost", o.QPS, total),
		scenario.Connect{Name: "cost", Poll: 50 * time.Millisecond, Timeout: 2 * time.Minute},
		scenario.Hold{Name: "warm-up", For: o.Warmup})
	if err := e.Run(ctx, setup...); err != nil {
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
			w, err := costWindow(ctx, e, on, window)
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

// costWindow measures the server for d with monitoring on or off: the
// switch, 1.1 s for it to settle (the sample of the second in progress),
// then the window, /metrics scraped every second when on.
func costWindow(ctx context.Context, e *scenario.Engine, on bool, d time.Duration) (*CostWindow, error) {
	hold := scenario.Hold{Name: "window", For: d}
	if on {
		hold.Poll, hold.Scrape = time.Second, true
	}
	err := e.Run(ctx, scenario.Monitor{Paused: !on}, scenario.Hold{Name: "settle", For: 1100 * time.Millisecond},
		scenario.Mark{Name: "w0"}, hold, scenario.Mark{Name: "w1"})
	if err != nil {
		return nil, err
	}
	m0, m1 := e.Last("w0").Snapshot, e.Last("w1").Snapshot
	s0, s1 := m0.Procs[serverName], m1.Procs[serverName]
	secs := m1.T.Sub(m0.T).Seconds()
	n := float64(m1.Stats[0].Totals.Requests - m0.Stats[0].Totals.Requests)
	return &CostWindow{Monitored: on, Seconds: secs, AchievedQPS: n / secs, CPUusPerReq: perReq(s1.CPU-s0.CPU, n),
		Cores: (s1.CPU - s0.CPU).Seconds() / secs, Scrapes: e.Last("window").Scrapes}, nil
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
