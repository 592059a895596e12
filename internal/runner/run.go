package runner

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hongbao/internal/harness"
	"hongbao/internal/load"
	"hongbao/internal/monitor"
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
var ErrChildDied = errors.New("a child process died")

type child struct {
	name string
	kind string // "node" or "client"
	proc *harness.Proc
	log  string
}

type run struct {
	o        Options
	plan     Plan
	secret   string
	mon      *monitor.Running
	series   string
	mu       sync.Mutex
	children []*child
	nodes    []*harness.ServerProc
	clients  []*harness.LoadProc
	died     chan *child
	stopping chan struct{}
	sum      *Summary

	// The last stats each node answered, and since when it has not: a
	// node too busy to answer within the admin timeout is not dead (a
	// death is seen by watch), so its last figures stand in for a while.
	lastStats []server.Stats
	failSince []time.Time

	rateGen atomic.Int64 // the latest setQPSPatiently; older ones stop retrying
}

// statsGrace is how long a node may fail to answer its stats before the
// run gives up on it.
const statsGrace = 30 * time.Second

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
	r := &run{o: o, plan: plan, secret: harness.NewSecret(), died: make(chan *child, 1), stopping: make(chan struct{}),
		series: filepath.Join(o.Dir, "series.ndjson")}
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
	mon, err := monitor.Listen(orDefault(r.o.Monitor, "127.0.0.1:0"), monitor.Options{File: r.series, Grace: monitorGrace})
	if err != nil {
		return err
	}
	r.mon = mon
	fmt.Fprintf(r.o.Out, "dashboard: %s  report: %s\n", mon.URL(), r.o.Dir)
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
	if err := r.startNodes(ctx); err != nil {
		return err
	}
	if err := r.startClients(); err != nil {
		return err
	}
	if err := r.phase1(ctx); err != nil {
		return err
	}
	if err := r.startPackets(); err != nil {
		return err
	}
	if err := r.phase(ctx, "2", r.o.QPS2, r.o.Phase2); err != nil {
		return err
	}
	if err := r.phase(ctx, "3", r.o.QPS3, r.o.Phase3); err != nil {
		return err
	}
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// monitorGrace is how long the monitor waits for a second's samples. On a
// box whose cores are saturated by a hundred processes, samples travel
// seconds late; a late one amends its closed second, which is merged again
// later (at a bounded rate), so a longer grace keeps the series right the
// first time and the runner's progress line current.
const monitorGrace = 5 * time.Second

// watch reports the child's death unless the run is stopping.
func (r *run) watch(c *child) {
	r.mu.Lock()
	r.children = append(r.children, c)
	r.mu.Unlock()
	r.writePids()
	go func() {
		<-c.proc.Done()
		select {
		case <-r.stopping:
		case r.died <- c:
		default:
		}
	}()
}

func (r *run) writePids() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, c := range r.children {
		fmt.Fprintf(&b, "%d %s\n", c.proc.Pid(), c.name)
	}
	_ = os.WriteFile(filepath.Join(r.o.Dir, "pids.txt"), []byte(b.String()), 0o644)
}

// diedErr says which child died and why, with the end of its log.
func diedErr(c *child) error {
	<-c.proc.Done()
	why := c.proc.Stop(0)
	tail := ""
	if b, err := os.ReadFile(c.log); err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		tail = strings.Join(lines[max(0, len(lines)-5):], "\n    ")
	}
	return fmt.Errorf("%w: %s %s (pid %d) exited: %v; last lines of %s:\n    %s", ErrChildDied, c.kind, c.name, c.proc.Pid(), why, c.log, tail)
}

func (r *run) startNodes(ctx context.Context) error {
	m := r.plan.Nodes
	r.nodes = make([]*harness.ServerProc, m)
	errs := make([]error, m)
	// The admission budget is overload protection, not a target: twice a
	// node's average share, plus the burst the rate scheme gives a node (a
	// second's window covers one residue class of its users, see package
	// schedule: 19,230 users take up to 1,479 slots in one second even at
	// 5,000 shakes/s over a million users), plus room.
	budget := 2*max(r.o.QPS2, r.o.QPS3)/m + 2*(r.plan.Users/m/schedule.Classes+1) + 1000
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for k := 0; k < m; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				errs[k] = ctx.Err()
				return
			}
			dir := filepath.Join(r.o.Dir, "nodes", fmt.Sprintf("node-%d", k))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				errs[k] = err
				return
			}
			name := fmt.Sprintf("node-%d", k)
			var sp *harness.ServerProc
			var err error
			// harness.FreePort's port may be taken before the node binds
			// it (seen once in 52): try again on new ports.
			for try := 0; try < 3 && ctx.Err() == nil; try++ {
				sp, err = harness.StartServer(r.o.Bin, dir, harness.ServerSpec{Users: r.plan.Users, Budget: budget, Secret: r.secret,
					Extra: []string{"--node", strconv.Itoa(k), "--nodes", strconv.Itoa(m), "--monitor", r.mon.Addr(), "--name", name},
					Env:   r.plan.childEnv()})
				if err == nil {
					break
				}
			}
			if err != nil {
				errs[k] = fmt.Errorf("%s: %w", name, err)
				return
			}
			sp.Proc.Name = name
			r.nodes[k] = sp
			r.watch(&child{name: name, kind: "node", proc: sp.Proc, log: filepath.Join(dir, "server.log")})
		}(k)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	f, t := r.plan.Map.Range(0)
	fmt.Fprintf(r.o.Out, "nodes: %d server processes up (node 0: users %d-%d on %s)\n", m, f, t, r.nodes[0].Addr)
	return nil
}

func (r *run) startClients() error {
	addrs := make([]string, len(r.nodes))
	for k, n := range r.nodes {
		addrs[k] = n.Addr
	}
	dir := filepath.Join(r.o.Dir, "clients")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, rg := range r.plan.ClientRanges {
		name := fmt.Sprintf("client-%d", i)
		lp, err := harness.StartLoad(r.o.Bin, dir, harness.LoadSpec{Addr: addrs[r.plan.Map.Of(rg[0])], Users: r.plan.Users, QPS: 0, Ramp: r.o.Ramp,
			Secret: r.secret, Name: name,
			Extra: []string{"--nodes", strings.Join(addrs, ","), "--from", strconv.Itoa(int(rg[0])), "--to", strconv.Itoa(int(rg[1])),
				"--sources", clientSources(i), "--monitor", r.mon.Addr(), "--name", name, "--quiet"},
			Env: r.plan.childEnv()})
		if err != nil {
			return err
		}
		r.clients = append(r.clients, lp)
		r.watch(&child{name: name, kind: "client", proc: lp.Proc, log: filepath.Join(dir, name+".log")})
	}
	fmt.Fprintf(r.o.Out, "clients: %d load processes started\n", len(r.clients))
	return nil
}

// clientSources gives client process i two source addresses of its own,
// 127.(1+i/256).(i%256).1 and .2: its ~19,500 connections to one node fit
// the ephemeral range twice over, and no two processes (nor the runner's and
// the children's own HTTP connections, from 127.0.0.1) share a source
// address, so the kernel's port search stays short.
func clientSources(i int) string {
	a, b := 1+i/256, i%256
	return fmt.Sprintf("127.%d.%d.1,127.%d.%d.2", a, b, a, b)
}

// nodeStats reads every node's stats in parallel. A node that does not
// answer is represented by its last answer for up to statsGrace.
func (r *run) nodeStats() ([]server.Stats, error) {
	out := make([]server.Stats, len(r.nodes))
	errs := make([]error, len(r.nodes))
	var wg sync.WaitGroup
	for k, n := range r.nodes {
		wg.Go(func() { out[k], errs[k] = n.Admin.ServerStats() })
	}
	wg.Wait()
	if r.lastStats == nil {
		r.lastStats = make([]server.Stats, len(r.nodes))
		r.failSince = make([]time.Time, len(r.nodes))
	}
	now := time.Now()
	var stale []string
	var lastErr error
	for k, err := range errs {
		if err == nil {
			r.lastStats[k], r.failSince[k] = out[k], time.Time{}
			continue
		}
		if r.failSince[k].IsZero() {
			r.failSince[k] = now
		}
		out[k] = r.lastStats[k]
		if now.Sub(r.failSince[k]) >= statsGrace {
			stale, lastErr = append(stale, fmt.Sprintf("node-%d", k)), err
		}
	}
	if len(stale) > 0 {
		return out, fmt.Errorf("%d nodes have not answered their stats for %v or more (%s): %w", len(stale), statsGrace, strings.Join(stale, " "), lastErr)
	}
	return out, nil
}

// progressStats is nodeStats for the progress lines: a node that has not
// answered for longer than statsGrace is reported, and the run goes on
// with its last figures. On an overloaded box the nodes' admin listeners
// can lag for a minute; the phases keep their schedule (a node's death is
// seen by watch, and the report reads the final figures again).
func (r *run) progressStats() []server.Stats {
	st, err := r.nodeStats()
	if err != nil {
		fmt.Fprintf(r.o.Out, "warning: %v\n", err)
	}
	return st
}

func sumOnline(st []server.Stats) (online int64, shakes uint64) {
	for _, s := range st {
		online += s.LoggedIn
		shakes += s.Rates.Shakes
	}
	return
}

// procsNote says in the plan line that children run with GOMAXPROCS n.
func procsNote(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(", GOMAXPROCS=%d each (more processes than cores)", n)
}

// wait sleeps d, failing early on interruption or a child's death.
func (r *run) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case c := <-r.died:
		return diedErr(c)
	case <-t.C:
		return nil
	}
}

// phase1 waits until every user is logged in on its node, then holds.
func (r *run) phase1(ctx context.Context) error {
	t0 := time.Now()
	r.sum.Connect.Start = float64(t0.UnixMilli()) / 1000
	last := time.Time{}
	for {
		if err := r.wait(ctx, 500*time.Millisecond); err != nil {
			return err
		}
		st := r.progressStats()
		online, _ := sumOnline(st)
		r.sum.Connect.Established = online
		done := online >= int64(r.plan.Users)
		if done || time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(r.o.Out, "phase 1 %5.1fs: %d of %d users online\n", time.Since(t0).Seconds(), online, r.plan.Users)
		}
		if done {
			r.sum.Connect.Seconds = time.Since(t0).Seconds()
			break
		}
		if time.Since(t0) > r.o.ConnectTimeout {
			return fmt.Errorf("phase 1: only %d of %d users online after %v", online, r.plan.Users, r.o.ConnectTimeout)
		}
	}
	r.sum.Connect.HeldFrom = float64(time.Now().UnixMilli()) / 1000
	return r.hold(ctx, "1", time.Now().Add(r.o.Hold), 0)
}

// hold shows progress once a second until end, and tracks the fewest
// users online.
func (r *run) hold(ctx context.Context, phase string, end time.Time, target int) error {
	t0 := time.Now()
	for time.Now().Before(end) {
		if err := r.wait(ctx, min(time.Second, time.Until(end))); err != nil {
			return err
		}
		st := r.progressStats()
		online, shakes := sumOnline(st)
		r.noteOnline(online)
		fmt.Fprintf(r.o.Out, "phase %s %5.1fs: %d online, %d shakes/s (target %d)\n", phase, time.Since(t0).Seconds(), online, shakes, target)
	}
	return nil
}

func (r *run) noteOnline(n int64) {
	if r.sum.Connect.MinHeld < 0 || n < r.sum.Connect.MinHeld {
		r.sum.Connect.MinHeld = n
	}
}

// share is node k's part of a rate over m nodes (the parts sum to rate).
func share(rate, k, m int) int {
	return (k+1)*rate/m - k*rate/m
}

// startPackets starts each node's share of the shake campaign and of the
// group-packet generator (recipients among the node's own users).
func (r *run) startPackets() error {
	secs := int((r.o.Phase2 + r.o.Phase3).Seconds()) + 1
	m := len(r.nodes)
	for k, n := range r.nodes {
		if c := share(r.o.CampaignRate, k, m); c > 0 {
			info, err := n.Admin.StartCampaign(server.CampaignSpec{Count: uint32(c * secs), Rate: uint32(c), Min: server.DefaultAmountMin, Max: server.DefaultAmountMax})
			if err != nil {
				return fmt.Errorf("node-%d: starting the campaign: %w", k, err)
			}
			r.sum.campaigns = append(r.sum.campaigns, [2]int{k, int(info.ID)})
		}
		if g := share(r.o.GroupRate, k, m); g > 0 {
			f, t := r.plan.Map.Range(k)
			if t-f+1 < 3 {
				continue
			}
			if _, err := n.Admin.StartGenerator(server.GeneratorSpec{Count: uint32(g * secs), Rate: uint32(g), From: f, To: t}); err != nil {
				return fmt.Errorf("node-%d: starting the group generator: %w", k, err)
			}
		}
	}
	fmt.Fprintf(r.o.Out, "packets: shake campaign %d/s and group packets %d/s, split over %d nodes\n", r.o.CampaignRate, r.o.GroupRate, m)
	return nil
}

// postQPS sets rate q on each of clients at once; errs[i] is clients[i]'s.
func postQPS(clients []*harness.LoadProc, q int) []error {
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { errs[i] = c.Admin.SetQPS(q) })
	}
	wg.Wait()
	return errs
}

// setQPS sets every client's rate once.
func (r *run) setQPS(q int) error { return errors.Join(postQPS(r.clients, q)...) }

// setQPSPatiently sets every client's rate, retrying those that do not
// answer: on an overloaded box a client's admin listener can take longer
// than the admin timeout, and a client that is slow is not dead (watch sees
// deaths). It gives up after a minute and says so; the phase goes on, and
// its report shows the rate the clients actually sent.
func (r *run) setQPSPatiently(q int) {
	gen := r.rateGen.Add(1)
	pending := r.clients
	deadline := time.Now().Add(time.Minute)
	for len(pending) > 0 && r.rateGen.Load() == gen { // a later phase's rate wins
		errs := postQPS(pending, q)
		var still []*harness.LoadProc
		for i, err := range errs {
			if err != nil {
				still = append(still, pending[i])
			}
		}
		switch {
		case len(still) > 0 && time.Now().After(deadline):
			fmt.Fprintf(r.o.Out, "warning: %d clients did not take rate %d within a minute: %v\n", len(still), q, errors.Join(errs...))
			return
		case len(still) > 0:
			fmt.Fprintf(r.o.Out, "warning: %d clients slow to take rate %d; retrying\n", len(still), q)
		}
		pending = still
	}
}

func (r *run) phase(ctx context.Context, name string, q int, d time.Duration) error {
	ph := PhaseResult{Name: "phase " + name, TargetQPS: q, Start: float64(time.Now().UnixMilli()) / 1000}
	r.sum.Phases = append(r.sum.Phases, ph)
	p := &r.sum.Phases[len(r.sum.Phases)-1]
	end := time.Now().Add(d)
	go r.setQPSPatiently(q)
	fmt.Fprintf(r.o.Out, "phase %s: %d shakes/s for %v\n", name, q, d)
	err := r.hold(ctx, name, end, q)
	p.End = float64(time.Now().UnixMilli()) / 1000
	return err
}

// finish stops the load, reads the nodes' final counts and audits, stops
// every child, and writes the report. It runs on every path out of main.
func (r *run) finish(start time.Time) {
	alive := func() bool {
		select {
		case c := <-r.died:
			r.died <- c
			return false
		default:
			return true
		}
	}
	if len(r.clients) > 0 && alive() {
		r.rateGen.Add(1)
		_ = r.setQPS(0)
	}
	for _, cp := range r.sum.campaigns {
		if n := r.nodes[cp[0]]; n != nil {
			if info, err := n.Admin.StopCampaign(uint32(cp[1])); err == nil {
				r.sum.campaignInfos = append(r.sum.campaignInfos, info)
			}
		}
	}
	if len(r.sum.Phases) > 0 {
		r.drain()
	}
	// The nodes' own counts, and their audits, while they still run.
	var names []string
	var reps []server.AuditReport
	r.sum.nodeStats = make([]server.Stats, len(r.nodes))
	for k, n := range r.nodes {
		if n == nil {
			continue
		}
		if st, err := n.Admin.ServerStats(); err == nil {
			r.sum.nodeStats[k] = st
			r.sum.nodesRead++
		}
		if rep, err := n.Admin.Audit(); err == nil {
			names, reps = append(names, fmt.Sprintf("node-%d", k)), append(reps, rep)
		} else {
			r.sum.Audit.Errors = append(r.sum.Audit.Errors, fmt.Sprintf("node-%d: %v", k, err))
		}
	}
	if len(reps) > 0 {
		rep := harness.MergeAudits(names, reps)
		r.sum.Audit.Report = &rep
		r.sum.Audit.OK = rep.OK && len(reps) == len(r.nodes) && len(r.sum.Audit.Errors) == 0
	}
	r.sum.MachineMemUsed = machineMemUsed()
	r.sum.Kernel = ReadKernelNet().Sub(r.sum.kernel0)
	close(r.stopping)
	// Clients first (they print their summaries), then the nodes.
	var wg sync.WaitGroup
	sums := make([]*load.Summary, len(r.clients))
	for i, c := range r.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Stop(15 * time.Second)
			sums[i], _ = c.Summary()
		}()
	}
	wg.Wait()
	for _, s := range sums {
		if s != nil {
			r.sum.clientSums = append(r.sum.clientSums, *s)
		}
	}
	for _, n := range r.nodes {
		if n != nil {
			wg.Add(1)
			go func() { defer wg.Done(); _ = n.Stop(15 * time.Second) }()
		}
	}
	wg.Wait()
	r.mu.Lock()
	left := 0
	for _, c := range r.children {
		select {
		case <-c.proc.Done():
		default:
			c.proc.Kill()
			left++
		}
	}
	r.mu.Unlock()
	if left > 0 {
		fmt.Fprintf(r.o.Out, "%d children had to be killed\n", left)
	}
	_ = r.mon.Stop()
	r.sum.WallSeconds = time.Since(start).Seconds()
	if err := r.writeReport(); err != nil {
		fmt.Fprintf(r.o.Out, "report: %v\n", err)
	}
}

// drain waits until the nodes have answered every shake they received (an
// overloaded box works through a backlog after the rate drops to 0): their
// counters stay still for a second, at most drainMax. A node too busy to
// answer its stats is still working: the wait goes on (in a saturated
// million-user run, stopping at the first unanswered poll read the nodes'
// counts with 434,000 shakes still queued in their sockets, so the
// monitor's sums and the clients' money exceeded them). Then the monitor
// gets two more seconds, so that its series covers everything the nodes
// counted.
func (r *run) drain() {
	var last uint64
	stable := 0
	for deadline := time.Now().Add(drainMax); time.Now().Before(deadline) && stable < 4; {
		time.Sleep(250 * time.Millisecond)
		st, err := r.nodeStats()
		if err != nil {
			stable = 0
			continue
		}
		var n uint64
		for _, s := range st {
			n += s.Totals.Shakes
		}
		if n == last {
			stable++
		} else {
			stable, last = 0, n
		}
	}
	time.Sleep(2 * time.Second)
}

// drainMax bounds drain: a saturated box's backlog of a few seconds of
// load, worked through at its capacity.
const drainMax = 60 * time.Second

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
