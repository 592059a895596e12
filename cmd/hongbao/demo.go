package main

import (
	"context"
	"flag"
	"os"
	"time"

	"hongbao/internal/demo"
	"hongbao/internal/harness"
)

func runDemo(ctx context.Context, args []string) error {
	var (
		o          demo.Options
		packets    uint
		packetRate uint
		amin, amax uint
		dir        string
	)
	c := newCommand("demo", "Start a server and a load client on loopback, run a shake campaign, show progress and a summary where client and server counts must agree.",
		"hongbao demo --users 10000 --qps 5000 --duration 30s")
	c.group("Load", func(fs *flag.FlagSet) {
		fs.IntVar(&o.Users, "users", 10000, "simulated users, one connection each")
		fs.IntVar(&o.QPS, "qps", 5000, "shakes per second over all users")
		fs.IntVar(&o.Ramp, "ramp", 5000, "new connections per second")
		fs.DurationVar(&o.Duration, "duration", 30*time.Second, "shaking time after all users are connected")
	})
	c.group("Campaign", func(fs *flag.FlagSet) {
		fs.UintVar(&packets, "packets", 20000, "shake packets in the campaign")
		fs.UintVar(&packetRate, "packet-rate", 200, "packets issued per second")
		fs.UintVar(&amin, "amount-min", 1, "smallest packet, cents")
		fs.UintVar(&amax, "amount-max", 200, "largest packet, cents")
	})
	c.group("Output", func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "dir", "", "directory for the children's logs, the series and the plots (default: a new temporary one)")
		fs.StringVar(&o.Monitor, "monitor", "127.0.0.1:0", "address of the demo's monitor and live dashboard (port 0: a free one)")
		fs.DurationVar(&o.Linger, "linger", 0, "keep the dashboard up this long after the run")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	switch {
	case o.Users < 1:
		return c.usageErr("--users must be at least 1")
	case o.QPS < 1:
		return c.usageErr("--qps must be at least 1")
	case o.Ramp < 0:
		return c.usageErr("--ramp must not be negative")
	case o.Duration <= 0:
		return c.usageErr("--duration must be positive")
	case packets < 1 || packets > 1<<31:
		return c.usageErr("--packets must be in 1..2147483648")
	case packetRate < 1 || packetRate > 1<<20:
		return c.usageErr("--packet-rate must be in 1..1048576")
	case amin < 1 || amax < amin || amax > 1<<31:
		return c.usageErr("need 1 <= --amount-min <= --amount-max <= 2147483648")
	}
	o.Packets, o.PacketRate, o.AmountMin, o.AmountMax = uint32(packets), uint32(packetRate), uint32(amin), uint32(amax)
	bin, err := harness.Self()
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = demo.TempDir(); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	o.Bin, o.Dir, o.Out = bin, dir, os.Stdout
	_, err = demo.Run(ctx, o)
	return err
}
