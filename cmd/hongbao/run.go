package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"hongbao/internal/harness"
	"hongbao/internal/runner"
)

// errRunFailed makes `hongbao run` exit 1 when a target was missed.
var errRunFailed = errors.New("run: a target was missed (see the table)")

func runRun(ctx context.Context, args []string) error {
	var (
		o      runner.Options
		strict bool
	)
	c := newCommand("run", "Run the seed's scenario on this box: plan nodes (server processes) and client processes from the open-file limit and memory, check the machine, then (1) connect every user and hold, (2) 30,000 shakes/s with a shake campaign at 200 packets/s and group packets at 200/s, (3) 60,000 shakes/s; write a report directory (series, charts, report.html, summary.json, summary.md).",
		"hongbao run --users 1000000 --tune --hold 30s --phase2 60s --phase3 60s --dir ./run-1m")
	c.group("Scale", func(fs *flag.FlagSet) {
		fs.IntVar(&o.Users, "users", 0, "users (0: the largest this box allows, up to 1,000,000)")
		fs.IntVar(&o.Nodes, "nodes", 0, "server processes (0: as few as the open-file limit allows)")
		fs.IntVar(&o.Clients, "clients", 0, "load-client processes (0: as many as nodes)")
		fs.IntVar(&o.Ramp, "ramp", 0, "new connections per second per client process (0: as fast as possible)")
	})
	c.group("Phases", func(fs *flag.FlagSet) {
		fs.DurationVar(&o.ConnectTimeout, "connect-timeout", 5*time.Minute, "phase 1 fails if not every user is online after this")
		fs.DurationVar(&o.Hold, "hold", 10*time.Second, "phase 1: hold every connection this long after the ramp")
		fs.DurationVar(&o.Phase2, "phase2", 30*time.Second, "phase 2's length")
		fs.DurationVar(&o.Phase3, "phase3", 30*time.Second, "phase 3's length")
		fs.IntVar(&o.QPS2, "qps2", runner.DefaultQPS2, "phase 2's shakes per second over all clients")
		fs.IntVar(&o.QPS3, "qps3", runner.DefaultQPS3, "phase 3's shakes per second over all clients")
		fs.IntVar(&o.CampaignRate, "campaign-rate", runner.DefaultCampaignRate, "shake packets issued per second over all nodes (phases 2 and 3)")
		fs.IntVar(&o.GroupRate, "group-rate", runner.DefaultGroupRate, "group packets per second over all nodes, each to 3 users of its node")
	})
	c.group("Machine and output", func(fs *flag.FlagSet) {
		fs.BoolVar(&o.Tune, "tune", false, "apply net.core.somaxconn, net.core.netdev_max_backlog and net.ipv4.ip_local_port_range for the run (root), put them back at the end")
		fs.StringVar(&o.Dir, "dir", "", "report directory (default ./hongbao-run-<time>)")
		fs.StringVar(&o.Monitor, "monitor", "127.0.0.1:0", "the monitor's (dashboard's) listen address")
		fs.BoolVar(&strict, "strict", false, "exit 1 when a target is missed")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	if o.Users < 0 || o.Nodes < 0 || o.Clients < 0 || o.Ramp < 0 || o.QPS2 < 1 || o.QPS3 < 1 || o.CampaignRate < 1 || o.GroupRate < 1 {
		return c.usageErr("--users, --nodes, --clients, --ramp must not be negative; rates must be positive")
	}
	if o.Hold < 0 || o.Phase2 <= 0 || o.Phase3 <= 0 || o.ConnectTimeout <= 0 {
		return c.usageErr("--phase2, --phase3 and --connect-timeout must be positive, --hold not negative")
	}
	if o.Dir == "" {
		o.Dir = "hongbao-run-" + time.Now().Format("20060102-150405")
	}
	bin, err := harness.Self()
	if err != nil {
		return err
	}
	// A closed stdout (`hongbao run ... | head`) would kill the runner with
	// SIGPIPE before it stops its children and puts --tune's sysctls back.
	// Ignored, the write fails with EPIPE instead, and that stops the run
	// as SIGINT does.
	signal.Ignore(syscall.SIGPIPE)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o.Bin, o.Out = bin, &stopOnEPIPE{w: os.Stdout, stop: cancel}
	sum, err := runner.Run(ctx, o)
	if errors.Is(err, runner.ErrRefused) {
		return err
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("run: interrupted; every child stopped, partial report in %s", o.Dir)
	}
	if err != nil {
		return fmt.Errorf("run: %w (report in %s)", err, o.Dir)
	}
	if strict && !sum.OK {
		return errRunFailed
	}
	return nil
}

// stopOnEPIPE writes to w and calls stop once when w's reader is gone.
type stopOnEPIPE struct {
	w    io.Writer
	stop func()
	once sync.Once
}

func (s *stopOnEPIPE) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if errors.Is(err, syscall.EPIPE) {
		s.once.Do(s.stop)
	}
	return n, err
}
