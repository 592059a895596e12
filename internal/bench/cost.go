package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"hongbao/internal/harness"
	"hongbao/internal/monitor"
	"hongbao/internal/server"
)

// CostRun is one measured run of the monitoring-cost comparison.
type CostRun struct {
	Round       int     `json:"round"`
	Monitored   bool    `json:"monitored"` // --monitor on, /metrics scraped every second
	AchievedQPS float64 `json:"achieved_qps"`
	CPUusPerReq float64 `json:"server_cpu_us_per_req"`
	Cores       float64 `json:"server_cores"`
	Scrapes     int     `json:"scrapes"`
	Samples     uint64  `json:"samples_at_monitor"`
}

// CostReport compares the server's CPU per request with and without
// monitoring, from runs interleaved off, on, off, on... in one invocation.
type CostReport struct {
	QPS   int       `json:"qps"`
	Conns int       `json:"conns"`
	Runs  []CostRun `json:"runs"`
	// Ratio is median(CPU/req monitored) / median(CPU/req plain).
	Ratio       float64 `json:"ratio"`
	OverheadPct float64 `json:"overhead_pct"`
	// PairedRatio is the median over rounds of monitored/plain in the round.
	PairedRatio float64 `json:"paired_ratio"`
	// NoisePct is the spread (max-min)/median of the plain runs: the
	// run-to-run noise the ratio is read against.
	NoisePct float64 `json:"noise_pct"`
	Verdict  string  `json:"verdict"`
}

// MonitorCost measures what monitoring costs the server: rounds times, a
// server without monitoring and one pushing samples to a monitor (in this
// process) while /metrics is scraped every second, each loaded at o.QPS,
// in the order off-on, on-off, off-on...
func MonitorCost(ctx context.Context, o Options, rounds int) (*CostReport, error) {
	o.defaults()
	mon, err := monitor.Listen("127.0.0.1:0", monitor.Options{Grace: time.Second})
	if err != nil {
		return nil, err
	}
	defer mon.Stop()
	rep := &CostReport{QPS: o.QPS, Conns: o.Conns}
	var plain, monitored []float64
	for r := 1; r <= rounds; r++ {
		// Off-on, then on-off (ABBA): a drift over the runs, or an effect
		// of coming second, weighs on both sides alike.
		order := []bool{false, true}
		if r%2 == 0 {
			order = []bool{true, false}
		}
		for _, on := range order {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			run, err := costRun(ctx, o, mon, on)
			if err != nil {
				return rep, err
			}
			run.Round = r
			rep.Runs = append(rep.Runs, *run)
			if on {
				monitored = append(monitored, run.CPUusPerReq)
			} else {
				plain = append(plain, run.CPUusPerReq)
			}
			fmt.Fprintf(o.Log, "round %d monitored=%v: %.0f/s, server %.3f us/req (%.3f cores)\n", r, on, run.AchievedQPS, run.CPUusPerReq, run.Cores)
		}
	}
	if m := median(plain); m > 0 {
		rep.Ratio = median(monitored) / m
		rep.OverheadPct = (rep.Ratio - 1) * 100
		lo, hi := plain[0], plain[0]
		var paired []float64
		for i, p := range plain {
			lo, hi = min(lo, p), max(hi, p)
			if p > 0 {
				paired = append(paired, monitored[i]/p)
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

func costRun(ctx context.Context, o Options, mon *monitor.Running, on bool) (*CostRun, error) {
	secret := harness.NewSecret()
	spec := harness.ServerSpec{Users: o.Conns, Budget: 10_000_000, Secret: secret}
	if on {
		spec.Extra = []string{"--monitor", mon.Addr(), "--name", "bench-server"}
	}
	srv, err := harness.StartServer(o.Bin, o.Dir, spec)
	if err != nil {
		return nil, err
	}
	defer srv.Stop(10 * time.Second)
	if _, err := srv.Admin.StartCampaign(server.CampaignSpec{Count: 1 << 30, Rate: 200, Min: 1, Max: 200}); err != nil {
		return nil, err
	}
	before := mon.Status().Received
	scrapes := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !on {
			return
		}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			resp, err := http.Get(srv.Admin.Base + "/metrics")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				scrapes++
			}
		}
	}()
	r, err := measure(ctx, o, srv, secret, o.QPS, o.Duration, o.Warmup, "cost")
	close(stop)
	<-done
	if err != nil {
		return nil, err
	}
	return &CostRun{Monitored: on, AchievedQPS: r.AchievedQPS, CPUusPerReq: r.ServerCPUusPerReq, Cores: r.ServerCores,
		Scrapes: scrapes, Samples: mon.Status().Received - before}, nil
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
