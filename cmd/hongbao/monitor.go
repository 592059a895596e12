package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"hongbao/internal/monitor"
)

func runMonitor(ctx context.Context, args []string) error {
	var (
		o      monitor.Options
		listen string
	)
	c := newCommand("monitor", "Receive the per-second samples of servers and load clients started with --monitor, merge them by second, record them to a file and serve a live dashboard and the series as JSON.",
		"hongbao monitor --listen 127.0.0.1:7100 --out run.ndjson   # then: hongbao server --monitor 127.0.0.1:7100 ...")
	c.group("Network", func(fs *flag.FlagSet) {
		fs.StringVar(&listen, "listen", "127.0.0.1:7100", "HTTP address: dashboard on /, samples on POST /api/push, /api/series, /api/latest")
	})
	c.group("Merging", func(fs *flag.FlagSet) {
		fs.DurationVar(&o.Grace, "grace", 2*time.Second, "wait this long after a second ends for late processes before closing it")
		fs.DurationVar(&o.Retire, "retire", 10*time.Second, "stop expecting a process that sent nothing for this long")
		fs.IntVar(&o.Keep, "keep", 21600, "seconds of series kept in memory (the --out file keeps all)")
	})
	c.group("Output", func(fs *flag.FlagSet) {
		fs.StringVar(&o.File, "out", "hongbao-series.ndjson", "append every merged second to this NDJSON file (\"\" for none); plot it with 'hongbao plot'")
		fs.StringVar(&o.CSV, "csv", "", "also append the merged series to this CSV file: one row per second, a fixed header (a row is written once its second can no longer be amended, and the rest at exit)")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	if o.Grace < 0 || o.Retire < 0 || o.Keep < 1 {
		return c.usageErr("--grace and --retire must not be negative, --keep must be positive")
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	m, err := monitor.Listen(listen, o)
	if err != nil {
		return err
	}
	fmt.Printf("monitor: dashboard %s  series %s\n", m.URL(), o.File)
	if o.CSV != "" {
		fmt.Printf("monitor: CSV %s\n", o.CSV)
	}
	<-ctx.Done()
	return m.Stop()
}
