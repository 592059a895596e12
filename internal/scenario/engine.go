// Package scenario is the one orchestrator behind `hongbao run`, `demo`
// and `bench`: a cluster of child processes (server nodes and load
// clients, started through package harness) and a list of phases run over
// it in order. A phase is a value (Nodes, Clients, Connect, Hold, Rate,
// Packets, ...); what a command prints is its Progress function, and what
// it reports it reads from the phases' Results and from Settle and Stop.
//
//	engine.go    the Engine, the phase loop, events and results, waiting
//	phases.go    the phase kinds
//	children.go  starting the children, watching for a death, pids.txt
//	poll.go      reading every node's stats (a slow node's last answer stands in), drain
//	rate.go      setting every client's rate (patiently: the newest rate wins)
//	teardown.go  settling (rate 0, campaigns stopped, drain, final counts, audits) and stopping the children
package scenario

import (
	"context"
	"errors"
	"sync"
	"time"

	"hongbao/internal/load"
	"hongbao/internal/server"
)

// Phase is one step of a scenario. The kinds are the types of phases.go.
type Phase interface {
	run(ctx context.Context, e *Engine, r *Result) error
}

// errEnough ends a scenario early without an error: a soft phase found
// that there is nothing more to run (the clients that end by themselves
// have ended).
var errEnough = errors.New("scenario: nothing more to run")

// Engine runs phases over a cluster.
type Engine struct {
	c     *Cluster
	users int // users over the whole cluster: Connect waits for them all
	// Progress, if set, is told when a phase begins, at each of its polls,
	// and when it ends without an error.
	Progress func(Event)

	poll  poller
	rates rater

	mu        sync.Mutex
	results   []*Result
	campaigns []Campaign // started, stopped by Settle
	rated     bool       // a Rate phase ran: Settle drains
}

// New returns an engine over c for a cluster of users users.
func New(c *Cluster, users int) *Engine {
	return &Engine{c: c, users: users, poll: poller{grace: statsGrace, now: time.Now}}
}

// Cluster is the engine's cluster.
func (e *Engine) Cluster() *Cluster { return e.c }

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	Began  EventKind = iota // the phase begins
	Polled                  // the phase read every node's stats
	Ended                   // the phase ended without an error
)

// Event is what Progress is told.
type Event struct {
	Kind    EventKind
	Name    string // the phase's name
	Phase   Phase
	Time    time.Time
	Elapsed time.Duration // since the phase began
	// Polled: every node's stats (a slow node's last answer) and their sums.
	Stats  []server.Stats
	Online int64  // users logged in over all nodes
	Shakes uint64 // shakes answered in the last second over all nodes
	Done   bool   // Connect: every user is online
	Result *Result
}

// Result is what a phase measured; it is updated while the phase runs, so
// an interrupted scenario reports what it got.
type Result struct {
	Name       string
	Phase      Phase
	Start, End time.Time
	Online     int64           // users online at the last poll
	MinOnline  int64           // fewest online at any poll (-1: no poll)
	Connected  time.Duration   // Connect: until every user was online (0: never)
	Scrapes    int             // Hold with Scrape: /metrics answers read
	Campaigns  []Campaign      // Packets: the campaigns started
	Snapshot   *Snapshot       // Mark
	Summaries  []*load.Summary // Collect: the clients' summaries
}

// Campaign is a shake campaign the scenario started on a node.
type Campaign struct {
	Node *Node
	Info server.CampaignInfo
}

// Results are the results of every phase run so far, in order.
func (e *Engine) Results() []*Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*Result(nil), e.results...)
}

// Last is the result of the last phase named name (nil: none).
func (e *Engine) Last(name string) *Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.results) - 1; i >= 0; i-- {
		if e.results[i].Name == name {
			return e.results[i]
		}
	}
	return nil
}

// Run runs phases in order. It stops at the first error: ctx's when
// interrupted, one wrapping harness.ErrChildDied when a child that should
// run exits. Run may be called again on the same cluster (bench runs a
// list per step and decides the next from the results).
func (e *Engine) Run(ctx context.Context, phases ...Phase) error {
	for _, ph := range phases {
		r := &Result{Name: nameOf(ph), Phase: ph, Start: time.Now(), MinOnline: -1}
		e.mu.Lock()
		e.results = append(e.results, r)
		e.mu.Unlock()
		e.emit(Event{Kind: Began, Name: r.Name, Phase: ph, Time: r.Start, Result: r})
		err := ph.run(ctx, e, r)
		r.End = time.Now()
		if errors.Is(err, errEnough) {
			return nil
		}
		if err != nil {
			return err
		}
		e.emit(Event{Kind: Ended, Name: r.Name, Phase: ph, Time: r.End, Elapsed: r.End.Sub(r.Start), Result: r})
	}
	return nil
}

func (e *Engine) emit(ev Event) {
	if e.Progress != nil {
		e.Progress(ev)
	}
}

// polled reads every node's stats and notes who is online in r; the
// caller tells Progress.
func (e *Engine) polled(ph Phase, r *Result) Event {
	st := e.progressStats()
	now := time.Now()
	ev := Event{Kind: Polled, Name: r.Name, Phase: ph, Time: now, Elapsed: now.Sub(r.Start), Stats: st, Result: r}
	for _, s := range st {
		ev.Online += s.LoggedIn
		ev.Shakes += s.Rates.Shakes
	}
	r.Online = ev.Online
	if r.MinOnline < 0 || ev.Online < r.MinOnline {
		r.MinOnline = ev.Online
	}
	return ev
}

// wait sleeps d. It returns early with ctx's error or a child's death, or
// with nil when done (if not nil) is closed.
func (e *Engine) wait(ctx context.Context, d time.Duration, done <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-e.c.dead:
		return e.c.diedErr()
	case <-done:
		return nil
	case <-t.C:
		return nil
	}
}
