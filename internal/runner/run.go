package runner

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"hongbao/internal/harness"
	"hongbao/internal/money"
	"hongbao/internal/monitor"
	"hongbao/internal/scenario"
	"hongbao/internal/schedule"
	"hongbao/internal/server"
)

// Options configure a run. Zero values pick the defaults of `hongbao run`.
type Options struct {
	Bin string // the hongbao binary the children run
	Dir string // the report directory (created)

	Users   int // N (0: the largest the box allows, up to MaxUsers)
	Nodes   int // server processes (0: as few as the open-file limit allows)
	Clients int // load-client processes (0: as many as nodes)
	Ramp    int // new connections per second per client process (0: as fast as possible)

	ConnectTimeout time.Duration // phase 1 gives up after this (default 5 min)
	Hold           time.Duration // phase 1: hold every connection this long after the ramp
	Phase2, Phase3 time.Duration // how long phases 2 and 3 run
	QPS2, QPS3     int           // their shake rates over all clients (30,000 and 60,000)
	CampaignRate   int           // shake packets issued per second over all nodes (200)
	GroupRate      int           // group packets per second over all nodes (200)

	Tune    bool      // apply the sysctls a large run wants and put them back at the end
	Monitor string    // the monitor's listen address (default 127.0.0.1:0)
	Out     io.Writer // progress
	// System replaces the machine's figures (tests of the preflight); nil reads them.
	System *System
}

// Defaults of Options.
const (
	DefaultQPS2         = 30000
	DefaultQPS3         = 60000
	DefaultCampaignRate = 200
	DefaultGroupRate    = 200
)

// ErrChildDied is returned when a node or a client exits during the run.
var ErrChildDied = harness.ErrChildDied

type run struct {
	o      Options
	plan   Plan
	secret string
	mon    *monitor.Running
	series string
	cl     *scenario.Cluster
	eng    *scenario.Engine
	sum    *Summary
	last   time.Time // of the last progress line of phase 1's ramp
}

// Run plans, checks the machine, and runs the three phases, writing the
// report into o.Dir. It returns the summary (also written when the run is
// interrupted or fails after starting) and the reason it stopped early.
// A refused run (ErrRefused) starts nothing and writes nothing.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	setDefaults(&o)
	var sys System
	if o.System != nil {
		sys = *o.System
	} else {
		s, err := ReadSystem()
		if err != nil {
			return nil, err
		}
		sys = s
	}
	if o.Users == 0 {
		o.Users = MaxUsersFor(sys.Files, sys.MemAvail)
	}
	plan, err := MakePlan(o.Users, o.Nodes, o.Clients, sys.Files)
	if err != nil {
		return nil, err
	}
	advice, err := Check(plan, sys)
	if err != nil {
		return nil, err
	}
	plan.GoMaxProcs = ChildGoMaxProcs(plan, sys.CPUs, os.Getenv("GOMAXPROCS"))
	if o.QPS3 > 0 && plan.Users < 1 {
		return nil, fmt.Errorf("%w: no users", ErrRefused)
	}
	fmt.Fprintf(o.Out, "plan: %d users over %d nodes and %d client processes (at most %d users per process: %d open files), about %.1f GiB%s\n",
		plan.Users, plan.Nodes, plan.Clients, plan.PerProcess, sys.Files, gib(plan.MemNeed), procsNote(plan.GoMaxProcs))
	for _, a := range advice {
		fmt.Fprintf(o.Out, "advice: %s\n", a)
	}
	if o.Tune {
		restore, applied, err := Tune(sys)
		if err != nil {
			return nil, err
		}
		for _, a := range applied {
			fmt.Fprintf(o.Out, "tune: %s\n", a)
		}
		defer func() {
			for _, e := range restore() {
				fmt.Fprintf(o.Out, "tune: restoring: %v\n", e)
			}
			if len(applied) > 0 {
				fmt.Fprintln(o.Out, "tune: sysctls restored")
			}
		}()
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	r := &run{o: o, plan: plan, secret: harness.NewSecret(), series: filepath.Join(o.Dir, "series.ndjson")}
	r.sum = newSummary(o, plan, sys)
	return r.sum, r.main(ctx)
}

func setDefaults(o *Options) {
	o.ConnectTimeout = cmp.Or(o.ConnectTimeout, 5*time.Minute)
	o.QPS2 = cmp.Or(o.QPS2, DefaultQPS2)
	o.QPS3 = cmp.Or(o.QPS3, DefaultQPS3)
	o.CampaignRate = cmp.Or(o.CampaignRate, DefaultCampaignRate)
	o.GroupRate = cmp.Or(o.GroupRate, DefaultGroupRate)
}

// main runs the phases; whatever happens, it stops every child and writes
// the (possibly partial) report.
func (r *run) main(ctx context.Context) (err error) {
	start := time.Now()
	mon, err := monitor.Listen(cmp.Or(r.o.Monitor, "127.0.0.1:0"), monitor.Options{File: r.series, Grace: monitorGrace})
	if err != nil {
		return err
	}
	r.mon = mon
	fmt.Fprintf(r.o.Out, "dashboard: %s  report: %s\n", mon.URL(), r.o.Dir)
	r.cl = scenario.NewCluster(r.o.Bin, r.secret)
	r.cl.Out, r.cl.Pids = r.o.Out, filepath.Join(r.o.Dir, "pids.txt")
	r.eng = scenario.New(r.cl, r.plan.Users)
	r.eng.Progress = r.progress
	defer func() {
		if ctx.Err() != nil && err == nil {
			err = ctx.Err()
		}
		r.sum.Interrupted = ctx.Err() != nil
		if err != nil {
			r.sum.Error = err.Error()
		}
		r.finish(start)
	}()
	return r.eng.Run(ctx, r.phases()...)
}

// phases are the seed's scenario: start the nodes and the clients, (1)
// connect every user and hold, start the packets, (2) and (3) shake at
// their rates.
func (r *run) phases() []scenario.Phase {
	o, m := r.o, r.plan.Nodes
	// The admission budget is overload protection, not a target: twice a
	// node's average share, plus the burst the rate scheme gives a node (a
	// second's window covers one residue class of its users, see package
	// schedule: 19,230 users take up to 1,479 slots in one second even at
	// 5,000 shakes/s over a million users), plus room.
	budget := 2*max(o.QPS2, o.QPS3)/m + 2*(r.plan.Users/m/schedule.Classes+1) + 1000
	nodes := make([]scenario.NodeSpec, m)
	for k := range nodes {
		name := fmt.Sprintf("node-%d", k)
		f, t := r.plan.Map.Range(k)
		nodes[k] = scenario.NodeSpec{Name: name, Dir: filepath.Join(o.Dir, "nodes", name), From: f, To: t,
			ServerSpec: harness.ServerSpec{Users: r.plan.Users, Budget: budget,
				Extra: []string{"--node", strconv.Itoa(k), "--nodes", strconv.Itoa(m), "--monitor", r.mon.Addr(), "--name", name},
				Env:   r.plan.childEnv()}}
	}
	clients := make([]scenario.ClientSpec, len(r.plan.ClientRanges))
	for i, rg := range r.plan.ClientRanges {
		name := fmt.Sprintf("client-%d", i)
		clients[i] = scenario.ClientSpec{Dir: filepath.Join(o.Dir, "clients"), Node: r.plan.Map.Of(rg[0]), AllNodes: true,
			LoadSpec: harness.LoadSpec{Users: r.plan.Users, Ramp: o.Ramp, Name: name,
				Extra: []string{"--from", strconv.Itoa(int(rg[0])), "--to", strconv.Itoa(int(rg[1])),
					"--sources", clientSources(i), "--monitor", r.mon.Addr(), "--name", name, "--quiet"},
				Env: r.plan.childEnv()}}
	}
	secs := uint32((o.Phase2 + o.Phase3).Seconds()) + 1
	return []scenario.Phase{
		scenario.Nodes{Specs: nodes},
		scenario.Clients{Specs: clients},
		scenario.Connect{Name: "phase 1", Poll: 500 * time.Millisecond, Timeout: o.ConnectTimeout},
		scenario.Hold{Name: "phase 1", For: o.Hold, Poll: time.Second},
		scenario.Packets{
			Campaign:  &server.CampaignSpec{Count: uint32(o.CampaignRate) * secs, Rate: uint32(o.CampaignRate), Min: server.DefaultAmountMin, Max: server.DefaultAmountMax},
			Generator: &server.GeneratorSpec{Count: uint32(o.GroupRate) * secs, Rate: uint32(o.GroupRate)}},
		scenario.Rate{Name: "phase 2", QPS: o.QPS2, For: o.Phase2, Poll: time.Second},
		scenario.Rate{Name: "phase 3", QPS: o.QPS3, For: o.Phase3, Poll: time.Second},
	}
}

// monitorGrace is how long the monitor waits for a second's samples. On a
// box whose cores are saturated by a hundred processes, samples travel
// seconds late; a late one amends its closed second, which is merged again
// later (at a bounded rate), so a longer grace keeps the series right the
// first time and the runner's progress line current.
const monitorGrace = 5 * time.Second

// clientSources gives client process i two source addresses of its own,
// 127.(1+i/256).(i%256).1 and .2: its ~19,500 connections to one node fit
// the ephemeral range twice over, and no two processes (nor the runner's and
// the children's own HTTP connections, from 127.0.0.1) share a source
// address, so the kernel's port search stays short.
func clientSources(i int) string {
	a, b := 1+i/256, i%256
	return fmt.Sprintf("127.%d.%d.1,127.%d.%d.2", a, b, a, b)
}

// procsNote says in the plan line that children run with GOMAXPROCS n.
func procsNote(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(", GOMAXPROCS=%d each (more processes than cores)", n)
}

// progress prints the run's progress lines.
func (r *run) progress(ev scenario.Event) {
	o := r.o
	switch ph := ev.Phase.(type) {
	case scenario.Nodes:
		if ev.Kind == scenario.Ended {
			n := r.cl.Nodes()[0]
			fmt.Fprintf(o.Out, "nodes: %d server processes up (node 0: users %d-%d on %s)\n", len(r.cl.Nodes()), n.From, n.To, n.Addr)
		}
	case scenario.Clients:
		if ev.Kind == scenario.Ended {
			fmt.Fprintf(o.Out, "clients: %d load processes started\n", len(r.cl.Clients()))
		}
	case scenario.Connect:
		// Every poll, at most once a second, and when everyone is online.
		if ev.Kind == scenario.Polled && (ev.Done || ev.Time.Sub(r.last) >= time.Second) {
			r.last = ev.Time
			fmt.Fprintf(o.Out, "%s %5.1fs: %d of %d users online\n", ev.Name, ev.Elapsed.Seconds(), ev.Online, r.plan.Users)
		}
	case scenario.Hold:
		if ev.Kind == scenario.Polled {
			fmt.Fprintf(o.Out, "%s %5.1fs: %d online, %d shakes/s (target %d)\n", ev.Name, ev.Elapsed.Seconds(), ev.Online, ev.Shakes, 0)
		}
	case scenario.Packets:
		if ev.Kind == scenario.Ended {
			fmt.Fprintf(o.Out, "packets: shake campaign %d/s and group packets %d/s, split over %d nodes\n", o.CampaignRate, o.GroupRate, len(r.cl.Nodes()))
		}
	case scenario.Rate:
		switch ev.Kind {
		case scenario.Began:
			fmt.Fprintf(o.Out, "%s: %d shakes/s for %v\n", ev.Name, ph.QPS, ph.For)
		case scenario.Polled:
			fmt.Fprintf(o.Out, "%s %5.1fs: %d online, %d shakes/s (target %d)\n", ev.Name, ev.Elapsed.Seconds(), ev.Online, ev.Shakes, ph.QPS)
		}
	}
}

// finish stops the load, reads the nodes' final counts and audits, stops
// every child, and writes the report. It runs on every path out of main.
func (r *run) finish(start time.Time) {
	s := r.sum
	fin := r.eng.Settle(scenario.Settle{Drain: true, Audit: true})
	s.campaignInfos, s.nodeStats, s.nodesRead, s.nodes = fin.Campaigns, fin.Stats, fin.Read, r.cl.Nodes()
	s.Audit.Errors = fin.AuditErrs
	if len(fin.Audits) > 0 {
		rep := money.MergeAudits(fin.AuditNames, fin.Audits)
		s.Audit.Report = &rep
		s.Audit.OK = rep.OK && len(fin.Audits) == r.plan.Nodes && len(fin.AuditErrs) == 0
	}
	// Machine memory while the children still hold their connections.
	s.MachineMemUsed = machineMemUsed()
	s.Kernel = ReadKernelNet().Sub(s.kernel0)
	// Clients first (they print their summaries), then the nodes.
	for _, c := range r.cl.Stop(15*time.Second, 15*time.Second).Clients {
		if c.Summary != nil {
			s.clientSums = append(s.clientSums, *c.Summary)
		}
	}
	_ = r.mon.Stop()
	s.fromResults(r.eng.Results())
	s.WallSeconds = time.Since(start).Seconds()
	if err := r.writeReport(); err != nil {
		fmt.Fprintf(r.o.Out, "report: %v\n", err)
	}
}

// machineMemUsed is MemTotal - MemAvailable: user space and kernel together.
func machineMemUsed() uint64 {
	s, err := ReadSystem()
	if err != nil || s.MemTotal < s.MemAvail {
		return 0
	}
	return s.MemTotal - s.MemAvail
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
