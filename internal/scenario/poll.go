package scenario

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"hongbao/internal/server"
)

// statsGrace is how long a node may fail to answer its stats before the
// scenario gives up on it. A node too busy to answer within the admin
// timeout is not dead (a death is seen by the cluster's watch), so its last
// figures stand in meanwhile.
const statsGrace = 30 * time.Second

// poller remembers each node's last stats and since when it has not
// answered.
type poller struct {
	grace     time.Duration
	now       func() time.Time
	mu        sync.Mutex
	last      []server.Stats
	failSince []time.Time
}

// read reads the stats of nodes 0..n-1 with get, in parallel. A node that
// does not answer is represented by its last answer; the error names the
// nodes that have not answered for grace or more.
func (p *poller) read(n int, get func(k int) (server.Stats, error)) ([]server.Stats, error) {
	out := make([]server.Stats, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := range n {
		wg.Go(func() { out[k], errs[k] = get(k) })
	}
	wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.last) < n {
		p.last, p.failSince = append(p.last, server.Stats{}), append(p.failSince, time.Time{})
	}
	now := p.now()
	var stale []string
	var lastErr error
	for k, err := range errs {
		if err == nil {
			p.last[k], p.failSince[k] = out[k], time.Time{}
			continue
		}
		if p.failSince[k].IsZero() {
			p.failSince[k] = now
		}
		out[k] = p.last[k]
		if now.Sub(p.failSince[k]) >= p.grace {
			stale, lastErr = append(stale, fmt.Sprintf("node-%d", k)), err
		}
	}
	if len(stale) > 0 {
		return out, fmt.Errorf("%d nodes have not answered their stats for %v or more (%s): %w", len(stale), p.grace, strings.Join(stale, " "), lastErr)
	}
	return out, nil
}

// nodeStats reads every node's stats (see poller.read).
func (e *Engine) nodeStats() ([]server.Stats, error) {
	nodes := e.c.Nodes()
	return e.poll.read(len(nodes), func(k int) (server.Stats, error) { return nodes[k].Admin.ServerStats() })
}

// progressStats is nodeStats for progress: a node that has not answered
// for longer than statsGrace is reported, and the scenario goes on with
// its last figures. On an overloaded box the nodes' admin listeners can lag
// for a minute; the phases keep their schedule (a node's death is seen by
// the watch, and Settle reads the final figures again).
func (e *Engine) progressStats() []server.Stats {
	st, err := e.nodeStats()
	if err != nil {
		fmt.Fprintf(e.c.out(), "warning: %v\n", err)
	}
	return st
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
func (e *Engine) drain() {
	var last uint64
	stable := 0
	for deadline := time.Now().Add(drainMax); time.Now().Before(deadline) && stable < 4; {
		time.Sleep(250 * time.Millisecond)
		st, err := e.nodeStats()
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
