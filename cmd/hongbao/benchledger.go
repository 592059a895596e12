package main

import (
	"context"
	"flag"
	"os"
	"time"

	"hongbao/internal/bench"
)

func runBenchLedger(ctx context.Context, args []string) error {
	var o bench.LedgerOptions
	c := newCommand("bench-ledger", "Measure the ledger on this box and print JSON: durable grants per second with fsync on and their p99 commit latency, then shake throughput with the ledger off and on (a server in this process, pipelined clients) and the ratio.",
		"hongbao bench-ledger --concurrency 256 --duration 5s --conns 64")
	c.group("Durable grants", func(fs *flag.FlagSet) {
		fs.IntVar(&o.Concurrency, "concurrency", 256, "writers, each waiting for its grant to be durable before the next")
		fs.DurationVar(&o.Duration, "duration", 5*time.Second, "length of each measurement")
	})
	c.group("Shakes", func(fs *flag.FlagSet) {
		fs.IntVar(&o.Conns, "conns", 64, "client connections")
		fs.IntVar(&o.Window, "window", 16, "shakes in flight per connection")
	})
	c.group("Output", func(fs *flag.FlagSet) {
		fs.StringVar(&o.Dir, "dir", "", "directory for the ledgers (default: the system's temporary directory; put it on the disk to measure)")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	if o.Concurrency < 1 || o.Duration <= 0 || o.Conns < 1 || o.Window < 1 {
		return c.usageErr("--concurrency, --duration, --conns and --window must be positive")
	}
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return err
		}
	}
	o.Log = os.Stderr
	rep, err := bench.RunLedger(ctx, o)
	return printReport("bench-ledger", rep, err)
}
