// Package demo runs the whole system on loopback in one command: a server
// and a load client as separate processes, a shake campaign, progress every
// second, and a table where the client's and the server's counts must agree.
package demo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"hongbao/internal/harness"
	"hongbao/internal/limits"
	"hongbao/internal/load"
	"hongbao/internal/scenario"
	"hongbao/internal/server"
)

// Options scale the demo.
type Options struct {
	Bin        string
	Dir        string // logs of the children
	Users      int
	QPS        int
	Ramp       int
	Duration   time.Duration
	Packets    uint32
	PacketRate uint32
	AmountMin  uint32
	AmountMax  uint32
	Out        io.Writer
	// Monitor is the address the demo's monitor listens on (default
	// 127.0.0.1:0, a free port); Linger keeps it serving after the run.
	Monitor string
	Linger  time.Duration
}

// ErrDisagree is returned when the client's and the server's counts differ.
var ErrDisagree = errors.New("client and server counts disagree")

// Result is what the demo measured.
type Result struct {
	Load     *load.Summary
	Server   server.Stats
	Campaign server.CampaignInfo
	// PeakOnline is the most users the server saw logged in at once.
	PeakOnline int64
}

// Run runs the demo and prints its progress and summary to o.Out.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := limits.NeedFiles(o.Users, "each of the demo's server and load client"); err != nil {
		return nil, err
	}
	mon, err := startMonitor(o)
	if err != nil {
		return nil, err
	}
	defer mon.Stop()
	fmt.Fprintf(o.Out, "dashboard: %s (series in %s)\n", mon.URL(), mon.file)
	cl := scenario.NewCluster(o.Bin, harness.NewSecret())
	cl.Out = o.Out
	e := scenario.New(cl, o.Users)
	d := &demo{o: o, cl: cl}
	e.Progress = d.progress
	err = e.Run(ctx, d.phases(mon.Addr())...)
	if err != nil && ctx.Err() == nil {
		cl.Stop(5*time.Second, 10*time.Second)
		return nil, err
	}
	ends := cl.StopClients(5 * time.Second)
	fin := e.Settle(scenario.Settle{})
	stopped := cl.Stop(5*time.Second, 10*time.Second)
	switch {
	case fin.StatsErr != nil:
		return nil, fmt.Errorf("reading server stats: %w", fin.StatsErr)
	case stopped.NodeErr != nil:
		return nil, stopped.NodeErr
	case len(ends) == 0:
		return nil, cmp.Or(ctx.Err(), errors.New("demo: no load client"))
	case ends[0].Summary == nil:
		return nil, ends[0].Err
	}
	res := &Result{Load: ends[0].Summary, Server: fin.Stats[0], PeakOnline: d.peak}
	if p := e.Last("packets"); p != nil && len(p.Campaigns) > 0 {
		res.Campaign = p.Campaigns[0].Info
	}
	if len(fin.Campaigns) > 0 {
		res.Campaign = fin.Campaigns[0]
	}
	agree := printTable(o.Out, o, res)
	mon.finish(ctx, o)
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case ends[0].Err != nil:
		return res, ends[0].Err
	case !agree:
		return res, ErrDisagree
	}
	return res, nil
}

// demo is a running demo's progress.
type demo struct {
	o     Options
	cl    *scenario.Cluster
	start time.Time // the clients are up
	peak  int64     // the most users the server saw logged in at once
}

// phases: a server and a load client that shakes for o.Duration after its
// ramp; once everyone is online (or after 30 s) the campaign starts, and
// the demo goes on until the load client ends.
func (d *demo) phases(monitor string) []scenario.Phase {
	o := d.o
	return []scenario.Phase{
		scenario.Nodes{Specs: []scenario.NodeSpec{{Name: "server", Dir: o.Dir, From: 1, To: uint32(o.Users),
			ServerSpec: harness.ServerSpec{Users: o.Users, Extra: []string{"--monitor", monitor}}}}},
		scenario.Clients{Specs: []scenario.ClientSpec{{Dir: o.Dir,
			LoadSpec: harness.LoadSpec{Users: o.Users, QPS: o.QPS, Ramp: o.Ramp, Duration: o.Duration, Name: "load",
				Extra: []string{"--monitor", monitor, "--name", "load"}}}}},
		// The campaign starts once everyone is online, so packets spread
		// over the SETs in proportion to their users.
		scenario.Connect{Poll: time.Second, Timeout: 30 * time.Second, Soft: true},
		scenario.Packets{Campaign: &server.CampaignSpec{Count: o.Packets, Rate: o.PacketRate, Min: o.AmountMin, Max: o.AmountMax}},
		scenario.UntilExit{Poll: time.Second},
	}
}

// progress prints the demo's lines: the children, then a row a second.
func (d *demo) progress(ev scenario.Event) {
	w := d.o.Out
	switch ev.Phase.(type) {
	case scenario.Nodes:
		if ev.Kind == scenario.Ended {
			srv := d.cl.Nodes()[0]
			fmt.Fprintf(w, "server on %s (admin http://%s), logs in %s\n", srv.Addr, srv.Admin.Addr(), d.o.Dir)
		}
	case scenario.Clients:
		if ev.Kind == scenario.Ended {
			fmt.Fprintf(w, "load client: %d users, %d shakes/s for %v after the ramp\n\n", d.o.Users, d.o.QPS, d.o.Duration)
			fmt.Fprintf(w, "%6s %9s %10s %8s %9s %9s\n", "time", "online", "shakes/s", "got/s", "issued", "taken")
			d.start = ev.Time
		}
	case scenario.Packets:
		if ev.Kind == scenario.Ended && len(ev.Result.Campaigns) > 0 {
			c := ev.Result.Campaigns[0].Info
			fmt.Fprintf(w, "campaign %d: %d packets at %d/s, %d-%d cents\n", c.ID, c.Count, c.Rate, c.Min, c.Max)
		}
	case scenario.Connect, scenario.UntilExit:
		if ev.Kind != scenario.Polled || len(ev.Stats) == 0 {
			return
		}
		st := ev.Stats[0]
		d.peak = max(d.peak, st.LoggedIn)
		var issued uint32
		var taken uint64
		if len(st.Campaigns) > 0 {
			issued, taken = st.Campaigns[0].Issued, st.Campaigns[0].Taken
		}
		fmt.Fprintf(w, "%5.0fs %9d %10d %8d %9d %9d\n", ev.Time.Sub(d.start).Seconds(), st.LoggedIn, st.Rates.Shakes, st.Rates.Got, issued, taken)
	}
}

// printTable prints the summary and reports whether client and server agree.
func printTable(w io.Writer, o Options, r *Result) bool {
	l, s := r.Load, r.Server.Totals
	agree := l.Got == s.Got && l.Amount == s.GrantedAmount && l.Answered == s.Shakes && l.Errors == 0
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintf(w, "\nsummary: %d users, %d shakes/s target, campaign %d packets at %d/s\n\n", o.Users, o.QPS, o.Packets, o.PacketRate)
	fmt.Fprintln(tw, "\tclient\tserver\t")
	fmt.Fprintf(tw, "users online (peak)\t%d\t%d\t\n", l.Connected, r.PeakOnline)
	fmt.Fprintf(tw, "connect time\t%.2fs\t\t\n", l.ConnectSeconds)
	fmt.Fprintf(tw, "shakes\t%d sent\t%d answered\t\n", l.Sent, s.Shakes)
	fmt.Fprintf(tw, "answers received\t%d\t\t\n", l.Answered)
	fmt.Fprintf(tw, "achieved rate\t%.0f/s\t\t\n", l.AchievedQPS)
	fmt.Fprintf(tw, "packets got\t%d\t%d\t\n", l.Got, s.Got)
	fmt.Fprintf(tw, "amount (cents)\t%d\t%d\t\n", l.Amount, s.GrantedAmount)
	fmt.Fprintf(tw, "none / all taken\t%d / %d\t%d / %d\t\n", l.None, l.AllTaken, s.None, s.AllTaken)
	fmt.Fprintf(tw, "overloaded\t%d\t%d\t\n", l.Overloaded, s.Overloaded)
	fmt.Fprintf(tw, "errors / timeouts\t%d / %d\t%d\t\n", l.Errors, l.Timeouts, s.Errors)
	fmt.Fprintf(tw, "latency p50 / p99 / p999\t%.2f / %.2f / %.2f ms\t\t\n", l.LatencyUS.P50/1000, l.LatencyUS.P99/1000, l.LatencyUS.P999/1000)
	fmt.Fprintf(tw, "campaign\t\tissued %d of %d, taken %d\t\n", r.Campaign.Issued, r.Campaign.Count, r.Campaign.Taken)
	tw.Flush()
	if agree {
		fmt.Fprintln(w, "\nclient and server agree: every packet the server granted was received, amounts match.")
	} else {
		fmt.Fprintln(w, "\nMISMATCH: client and server counts differ (see the table).")
	}
	return agree
}

// TempDir makes a directory for a run's logs.
func TempDir() (string, error) { return os.MkdirTemp("", "hongbao-demo-") }
