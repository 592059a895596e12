package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"hongbao/internal/load"
)

func runLoad(ctx context.Context, args []string) error {
	var (
		o        load.Options
		from, to uint
		secret   secretFlags
		admin    adminFlags
		sources  string
		asJSON   bool
		quiet    bool
		nodeList string
		batch    bool
	)
	c := newCommand("load", "Simulate users [from, to] of N, one connection each, sending together with every other client process exactly --qps shakes per second (open loop, scheduled by the clock).",
		"HONGBAO_SECRET=s3cret hongbao load --addr 127.0.0.1:7000 --users 18000 --qps 18000 --duration 30s --json")
	c.group("Target", func(fs *flag.FlagSet) {
		fs.StringVar(&o.Addr, "addr", "127.0.0.1:7000", "server address")
		fs.StringVar(&nodeList, "nodes", "", "comma-separated addresses of the nodes (server processes) that own the --users in contiguous ranges, node 0 first; each user goes to its node (overrides --addr)")
		secret.define(fs, "the server's token secret (the client mints its users' tokens)")
		fs.BoolVar(&o.Classic, "classic", false, "speak only the classic protocol (bare user-id login), e.g. to drive the original server")
	})
	c.group("Users", func(fs *flag.FlagSet) {
		fs.IntVar(&o.Total, "users", 10000, "N, the users of the whole run over all client processes")
		fs.UintVar(&from, "from", 0, "first user this process simulates (default 1)")
		fs.UintVar(&to, "to", 0, "last user this process simulates (default N)")
		fs.IntVar(&o.Ramp, "ramp", 0, "new connections per second (0: as fast as possible)")
		fs.StringVar(&sources, "sources", "", "comma-separated source addresses (default: 127.0.0.1, more as the port range requires)")
	})
	c.group("Rate", func(fs *flag.FlagSet) {
		fs.IntVar(&o.QPS, "qps", 1000, "shakes per second over all processes; change live with GET /qps?qps=Q on --admin (with its admin token)")
		fs.DurationVar(&o.Duration, "duration", 0, "run time after all users are connected (0: until interrupted)")
		fs.DurationVar(&o.Timeout, "timeout", load.DefaultTimeout, "an unanswered request counts as a timeout after this")
		fs.DurationVar(&o.PingIdle, "ping-idle", load.DefaultPingIdle, "ping a user's connection after this long without a request, below the server's --idle-timeout (0: never)")
		fs.DurationVar(&o.Tick, "tick", 0, "send due requests this often; the wait counts in latency (0: auto, 1-8 ms by this process's rate)")
		fs.DurationVar(&o.Linger, "linger", 0, "after sending, sleep this long so answers are read in one wake-up (0: auto, 600µs at most half the tick; negative: never)")
	})
	c.group("Output", func(fs *flag.FlagSet) {
		fs.StringVar(&o.Admin, "admin", "", "admin HTTP address (/qps, /api/stats, /healthz, /metrics, /debug/pprof); empty: none")
		admin.define(fs)
		fs.BoolVar(&asJSON, "json", false, "print a JSON summary on stdout at the end")
		fs.BoolVar(&quiet, "quiet", false, "no per-second lines on stderr")
	})
	c.group("Process", func(fs *flag.FlagSet) {
		schedBatchFlag(fs, &batch)
	})
	c.group("Monitoring", func(fs *flag.FlagSet) {
		fs.StringVar(&o.Monitor, "monitor", "", "push a sample every second to this 'hongbao monitor' address (/metrics and /debug/pprof are on --admin)")
		fs.StringVar(&o.Name, "name", "", "this process's name at the monitor (default load-FROM-TO)")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	if o.QPS < 0 || o.Ramp < 0 || o.Duration < 0 || o.Timeout < 0 || o.Tick < 0 {
		return c.usageErr("--qps, --ramp, --duration, --timeout and --tick must not be negative")
	}
	switch {
	case o.PingIdle == 0:
		o.PingIdle = -1 // never (Options' zero is the default)
	case o.PingIdle < time.Second || o.PingIdle > time.Hour:
		return c.usageErr("--ping-idle must be 0 (never) or between 1s and 1h, got %v", o.PingIdle)
	}
	if from > 1<<32-1 || to > 1<<32-1 {
		return c.usageErr("--from and --to must fit in 32 bits")
	}
	o.From, o.To = uint32(from), uint32(to)
	sec, err := secret.resolve(c, slog.Default())
	if err != nil {
		return err
	}
	if !o.Classic {
		if sec == "" {
			return c.usageErr("a token secret is required unless --classic: --secret-file FILE or HONGBAO_SECRET")
		}
		o.Secret = []byte(sec)
	}
	if o.AdminToken, o.AdminAuthOff, err = admin.resolve(c, o.Admin, "hongbao-load-admin.token", slog.Default()); err != nil {
		return err
	}
	for _, s := range strings.Split(sources, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return c.usageErr("--sources: %v", err)
		}
		o.Sources = append(o.Sources, a)
	}
	for _, a := range strings.Split(nodeList, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.Nodes = append(o.Nodes, a)
		}
	}
	if !quiet {
		o.Log = os.Stderr
	}
	applySchedBatch(batch, slog.Default())
	// The JSON summary goes out as soon as the load is over, before the
	// connections are closed (see load.Options.OnSummary).
	var printErr error
	if asJSON {
		o.OnSummary = func(sum *load.Summary) { printErr = json.NewEncoder(os.Stdout).Encode(sum) }
	}
	cl, err := load.New(o)
	if errors.Is(err, load.ErrOptions) {
		return c.usageErr("%v", err)
	}
	if err != nil {
		return err
	}
	if err := admin.publish(slog.Default()); err != nil {
		_ = cl.Close()
		return err
	}
	_, err = cl.Run(ctx)
	if printErr != nil {
		return printErr
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("load: %w", err)
	}
	return nil
}
