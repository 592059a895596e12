package main

import (
	"context"
	"flag"
	"os"
	"strconv"
	"strings"
	"time"

	"hongbao/internal/bench"
	"hongbao/internal/harness"
)

func runBench(ctx context.Context, args []string) error {
	var (
		o     bench.Options
		steps string
		dir   string
		cost  int
		floor string
		rnds  int
	)
	c := newCommand("bench", "Run a server and a load client as separate processes on loopback and print JSON: connections held, achieved rate, server CPU per request, bytes per connection, latency, errors.",
		"hongbao bench --conns 18000 --qps 18000 --duration 20s --find-max")
	c.group("Load", func(fs *flag.FlagSet) {
		fs.IntVar(&o.Conns, "conns", 18000, "connections (users)")
		fs.IntVar(&o.QPS, "qps", 18000, "shakes per second")
		fs.DurationVar(&o.Duration, "duration", 20*time.Second, "load time after all connections are up")
		fs.DurationVar(&o.Warmup, "warmup", 3*time.Second, "time excluded from the CPU window")
	})
	c.group("Highest sustained rate", func(fs *flag.FlagSet) {
		fs.BoolVar(&o.FindMax, "find-max", false, "also step the rate up to the highest the box sustains")
		fs.DurationVar(&o.MaxP99, "max-p99", 10*time.Millisecond, "p99 latency a sustained rate must keep")
		fs.DurationVar(&o.StepTime, "step-time", 10*time.Second, "duration of each step")
		fs.StringVar(&steps, "steps", "", "comma-separated rates to try (default 18000,30000,...,120000)")
	})
	c.group("Monitoring cost", func(fs *flag.FlagSet) {
		fs.IntVar(&cost, "monitor-cost", 0, "instead: one server under --qps with --monitor; N rounds of a window of --step-time with its samples paused and nobody scraping, and one with samples pushed and /metrics scraped each second (ABBA); prints the server CPU/req ratio")
	})
	c.group("The floor", func(fs *flag.FlagSet) {
		fs.StringVar(&floor, "floor", "", "instead: compare with the floor, a one-thread C epoll server answering classic frames (PATH: its source, built with cc -O2, e.g. bench/floor.c, or a built binary); the floor and a classic 'hongbao server' take turns under 'hongbao load --classic' at --conns and --qps for --duration; prints each round, the medians of server CPU/req and their ratio hongbao/floor")
		fs.IntVar(&rnds, "rounds", 2, "with --floor: rounds (each measures the floor, then hongbao)")
	})
	c.group("Output", func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "dir", "", "directory for the children's logs (default: a new temporary one)")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	if cost < 0 {
		return c.usageErr("--monitor-cost must not be negative")
	}
	if rnds < 1 {
		return c.usageErr("--rounds must be at least 1")
	}
	if floor != "" && (cost > 0 || o.FindMax) {
		return c.usageErr("--floor does not go with --monitor-cost or --find-max")
	}
	if o.Conns < 1 || o.QPS < 1 || o.Duration <= 0 || o.Warmup < 0 {
		return c.usageErr("--conns, --qps and --duration must be positive")
	}
	if o.Warmup+time.Second >= o.Duration {
		return c.usageErr("--duration must exceed --warmup by more than a second")
	}
	for _, s := range strings.Split(steps, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		q, err := strconv.Atoi(s)
		if err != nil || q < 1 {
			return c.usageErr("--steps: %q is not a positive rate", s)
		}
		o.Steps = append(o.Steps, q)
	}
	bin, err := harness.Self()
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hongbao-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	o.Bin, o.Dir, o.Log = bin, dir, os.Stderr
	if floor != "" {
		exe, err := bench.BuildFloor(ctx, floor, dir)
		if err != nil {
			return err
		}
		rep, err := bench.Floor(ctx, o, exe, rnds)
		return printReport("bench", rep, err)
	}
	if cost > 0 {
		rep, err := bench.MonitorCost(ctx, o, cost)
		return printReport("bench", rep, err)
	}
	rep, err := bench.Run(ctx, o)
	return printReport("bench", rep, err)
}
