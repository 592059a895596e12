package scenario

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"hongbao/internal/procstat"
	"hongbao/internal/server"
)

// Nodes starts server nodes (in parallel); node k of a multi-node cluster
// must be Specs[k].
type Nodes struct{ Specs []NodeSpec }

// Clients starts load clients. A client with a Duration ends by itself
// (its exit is no death; Collect and UntilExit wait for it); one without
// runs until the scenario stops it, at the rate Rate phases set.
type Clients struct {
	Name  string // the phase's name (default "clients")
	Specs []ClientSpec
}

// Connect waits until every user of the cluster is logged in on its node.
type Connect struct {
	Name    string
	Poll    time.Duration // read the nodes' stats this often
	Timeout time.Duration // give up after this (0: never)
	// Soft: when Timeout passes the scenario goes on, and when a client
	// that ends by itself has ended before everyone is online the scenario
	// ends, both without an error. Otherwise both are errors.
	Soft bool
}

// Hold lets the cluster run as it is for For.
type Hold struct {
	Name string
	For  time.Duration
	// Poll, if set, reads every node's stats this often (tracking who is
	// online, telling Progress); with Scrape it reads every node's
	// /metrics instead, and nothing else, so that a measured window
	// carries the scrapes and no other request.
	Poll   time.Duration
	Scrape bool
}

// Rate sets every running client's rate to QPS (patiently: a client slow
// to answer is asked again, see rate.go), then holds for For.
type Rate struct {
	Name string
	QPS  int
	For  time.Duration
	Poll time.Duration
}

// Packets starts, on every node, its share of a shake campaign and of a
// group-packet generator. Each node gets its share of the rate (Share)
// and the same share of the count; a generator sends to the node's own
// users (From and To are the node's range; a node of fewer than 3 users
// gets none).
type Packets struct {
	Campaign  *server.CampaignSpec
	Generator *server.GeneratorSpec
}

// UntilExit waits until every client that ends by itself has ended,
// reading the nodes' stats every Poll.
type UntilExit struct{ Poll time.Duration }

// Mark takes a Snapshot of the cluster into its Result.
type Mark struct{ Name string }

// Snapshot is the CPU and memory of every running child and every node's
// stats at one moment.
type Snapshot struct {
	T     time.Time
	Procs map[string]procstat.Sample // by child name
	Stats []server.Stats             // by node
}

// Collect waits for the clients that end by themselves and takes their
// summaries into its Result; they leave the cluster's running clients.
type Collect struct{ Name string }

// Monitor pauses (or resumes) every node's per-second samples to its monitor.
type Monitor struct{ Paused bool }

// nameOf is a phase's name in results and events.
func nameOf(ph Phase) string {
	switch p := ph.(type) {
	case Nodes:
		return "nodes"
	case Clients:
		return cmp.Or(p.Name, "clients")
	case Connect:
		return cmp.Or(p.Name, "connect")
	case Hold:
		return cmp.Or(p.Name, "hold")
	case Rate:
		return cmp.Or(p.Name, fmt.Sprintf("rate %d", p.QPS))
	case Packets:
		return "packets"
	case UntilExit:
		return "until exit"
	case Mark:
		return cmp.Or(p.Name, "mark")
	case Collect:
		return cmp.Or(p.Name, "collect")
	case Monitor:
		return "monitor"
	}
	return fmt.Sprintf("%T", ph)
}

func (p Nodes) run(ctx context.Context, e *Engine, _ *Result) error {
	return e.c.startNodes(ctx, p.Specs)
}

func (p Clients) run(_ context.Context, e *Engine, _ *Result) error {
	return e.c.startClients(p.Specs)
}

func (p Connect) run(ctx context.Context, e *Engine, r *Result) error {
	for {
		if err := e.wait(ctx, p.Poll, nil); err != nil {
			return err
		}
		ev := e.polled(p, r)
		ev.Done = ev.Online >= int64(e.users)
		if ev.Done {
			r.Connected = ev.Elapsed
		}
		e.emit(ev)
		if ev.Done {
			return nil
		}
		if c := e.c.exitedClient(); c != nil {
			if p.Soft {
				return errEnough
			}
			_, err := c.Summary()
			return fmt.Errorf("%s exited while connecting: %v", c.Name, err)
		}
		if p.Timeout > 0 && ev.Elapsed > p.Timeout {
			if p.Soft {
				return nil
			}
			return fmt.Errorf("%s: only %d of %d users online after %v", r.Name, ev.Online, e.users, p.Timeout)
		}
	}
}

func (p Hold) run(ctx context.Context, e *Engine, r *Result) error {
	return e.hold(ctx, p, r, p.For, p.Poll, p.Scrape)
}

func (p Rate) run(ctx context.Context, e *Engine, r *Result) error {
	e.mu.Lock()
	e.rated = true
	e.mu.Unlock()
	go e.rates.patiently(e.c.out(), e.c.Clients(), p.QPS)
	return e.hold(ctx, p, r, p.For, p.Poll, false)
}

// hold runs the cluster for d from r.Start, polling every poll.
func (e *Engine) hold(ctx context.Context, ph Phase, r *Result, d, poll time.Duration, scrape bool) error {
	end := r.Start.Add(d)
	for time.Now().Before(end) {
		step := time.Until(end)
		if poll > 0 {
			step = min(poll, step)
		}
		if err := e.wait(ctx, step, nil); err != nil {
			return err
		}
		switch {
		case poll <= 0:
		case scrape:
			for _, n := range e.c.Nodes() {
				if _, err := n.Admin.Metrics(); err == nil {
					r.Scrapes++
				}
			}
		default:
			e.emit(e.polled(ph, r))
		}
	}
	return nil
}

func (p Packets) run(_ context.Context, e *Engine, r *Result) error {
	nodes := e.c.Nodes()
	m := len(nodes)
	for k, n := range nodes {
		if c := p.Campaign; c != nil && c.Rate > 0 {
			if rate := Share(int(c.Rate), k, m); rate > 0 {
				spec := *c
				spec.Rate, spec.Count = uint32(rate), uint32(uint64(c.Count)*uint64(rate)/uint64(c.Rate))
				info, err := n.Admin.StartCampaign(spec)
				if err != nil {
					return fmt.Errorf("%s: starting the campaign: %w", n.Name, err)
				}
				camp := Campaign{Node: n, Info: info}
				r.Campaigns = append(r.Campaigns, camp)
				e.mu.Lock()
				e.campaigns = append(e.campaigns, camp)
				e.mu.Unlock()
			}
		}
		if g := p.Generator; g != nil && g.Rate > 0 && n.To >= n.From+2 {
			if rate := Share(int(g.Rate), k, m); rate > 0 {
				spec := server.GeneratorSpec{Rate: uint32(rate), Count: uint32(uint64(g.Count) * uint64(rate) / uint64(g.Rate)), From: n.From, To: n.To}
				if _, err := n.Admin.StartGenerator(spec); err != nil {
					return fmt.Errorf("%s: starting the group generator: %w", n.Name, err)
				}
			}
		}
	}
	return nil
}

func (p UntilExit) run(ctx context.Context, e *Engine, r *Result) error {
	done := e.c.finiteDone()
	for {
		select {
		case <-done:
			return nil
		default:
		}
		if err := e.wait(ctx, p.Poll, done); err != nil {
			return err
		}
		select {
		case <-done:
			return nil
		default:
		}
		e.emit(e.polled(p, r))
	}
}

func (p Mark) run(_ context.Context, e *Engine, r *Result) error {
	s := &Snapshot{T: time.Now(), Procs: map[string]procstat.Sample{}}
	var errs []error
	for _, n := range e.c.Nodes() {
		ps, err := n.Sample()
		s.Procs[n.Name] = ps
		errs = append(errs, err)
	}
	for _, c := range e.c.Clients() {
		ps, err := c.Sample()
		s.Procs[c.Name] = ps
		errs = append(errs, err)
	}
	for _, n := range e.c.Nodes() {
		st, err := n.Admin.ServerStats()
		s.Stats = append(s.Stats, st)
		errs = append(errs, err)
	}
	r.Snapshot = s
	return errors.Join(errs...)
}

func (p Collect) run(ctx context.Context, e *Engine, r *Result) error {
	var errs []error
	for _, c := range e.c.Clients() {
		if !c.finite {
			continue
		}
		select {
		case <-c.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		sum, err := c.Summary()
		e.c.collected(c)
		r.Summaries = append(r.Summaries, sum)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p Monitor) run(_ context.Context, e *Engine, _ *Result) error {
	var errs []error
	for _, n := range e.c.Nodes() {
		if err := n.Admin.PauseMonitor(p.Paused); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}
