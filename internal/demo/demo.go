// Package demo runs the whole system on loopback in one command: a server
// and a load client as separate processes, a shake campaign, progress every
// second, and a table where the client's and the server's counts must agree.
package demo

import (
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
	secret := harness.NewSecret()
	mon, err := startMonitor(o)
	if err != nil {
		return nil, err
	}
	defer mon.Stop()
	fmt.Fprintf(o.Out, "dashboard: %s (series in %s)\n", mon.URL(), mon.file)
	srv, err := harness.StartServer(o.Bin, o.Dir, harness.ServerSpec{Users: o.Users, Secret: secret,
		Extra: []string{"--monitor", mon.Addr()}})
	if err != nil {
		return nil, err
	}
	defer srv.Stop(10 * time.Second)
	fmt.Fprintf(o.Out, "server on %s (admin http://%s), logs in %s\n", srv.Addr, srv.Admin.Base[len("http://"):], o.Dir)
	lp, err := harness.StartLoad(o.Bin, o.Dir, harness.LoadSpec{Addr: srv.Addr, Users: o.Users, QPS: o.QPS, Ramp: o.Ramp, Duration: o.Duration, Secret: secret,
		Extra: []string{"--monitor", mon.Addr(), "--name", "load"}})
	if err != nil {
		return nil, err
	}
	defer lp.Stop(5 * time.Second)
	fmt.Fprintf(o.Out, "load client: %d users, %d shakes/s for %v after the ramp\n\n", o.Users, o.QPS, o.Duration)

	var camp *server.CampaignInfo
	var peak int64
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	fmt.Fprintf(o.Out, "%6s %9s %10s %8s %9s %9s\n", "time", "online", "shakes/s", "got/s", "issued", "taken")
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-lp.Done():
			break loop
		case <-tick.C:
		}
		st, err := srv.Admin.ServerStats()
		if err != nil {
			return nil, fmt.Errorf("reading server stats: %w", err)
		}
		// The campaign starts once everyone is online, so packets spread
		// over the SETs in proportion to their users.
		if camp == nil && (st.LoggedIn >= int64(o.Users) || time.Since(start) > 30*time.Second) {
			c, err := srv.Admin.StartCampaign(server.CampaignSpec{Count: o.Packets, Rate: o.PacketRate, Min: o.AmountMin, Max: o.AmountMax})
			if err != nil {
				return nil, fmt.Errorf("starting the campaign: %w", err)
			}
			camp = &c
			fmt.Fprintf(o.Out, "campaign %d: %d packets at %d/s, %d-%d cents\n", c.ID, c.Count, c.Rate, c.Min, c.Max)
		}
		peak = max(peak, st.LoggedIn)
		var issued uint32
		var taken uint64
		if len(st.Campaigns) > 0 {
			issued, taken = st.Campaigns[0].Issued, st.Campaigns[0].Taken
		}
		fmt.Fprintf(o.Out, "%5.0fs %9d %10d %8d %9d %9d\n", time.Since(start).Seconds(), st.LoggedIn, st.Rates.Shakes, st.Rates.Got, issued, taken)
	}
	if ctx.Err() != nil {
		_ = lp.Stop(5 * time.Second)
	}
	sum, lerr := lp.Summary()
	st, err := srv.Admin.ServerStats()
	if err != nil {
		return nil, err
	}
	if camp != nil {
		if c, err := srv.Admin.StopCampaign(camp.ID); err == nil {
			camp = &c
		}
	}
	if err := srv.Stop(10 * time.Second); err != nil {
		return nil, err
	}
	if sum == nil {
		return nil, lerr
	}
	res := &Result{Load: sum, Server: st, PeakOnline: peak}
	if camp != nil {
		res.Campaign = *camp
	}
	agree := printTable(o.Out, o, res)
	mon.finish(ctx, o)
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case lerr != nil:
		return res, lerr
	case !agree:
		return res, ErrDisagree
	}
	return res, nil
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
