package scenario

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"hongbao/internal/load"
	"hongbao/internal/server"
)

// Settle says what Engine.Settle does besides stopping the load.
type Settle struct {
	// Drain waits, when a Rate phase ran, until the nodes have answered
	// their backlog (see drain).
	Drain bool
	// Audit reads every node's live audit.
	Audit bool
}

// Final is the cluster's state once the load stopped: what a report reads
// while the nodes still run.
type Final struct {
	Stats     []server.Stats // by node; a node that did not answer is zero
	Read      int            // nodes whose stats were read
	StatsErr  error          // why the others were not
	Campaigns []server.CampaignInfo
	// Audits of the nodes that answered, with their names; AuditErrs says
	// which did not and why.
	AuditNames []string
	Audits     []server.AuditReport
	AuditErrs  []string
}

// Settle stops the load: the running clients' rate goes to 0, the
// campaigns stop, the nodes drain (o.Drain), then it reads every node's
// final counts and (o.Audit) its audit. It runs on every path out of a
// scenario, after an error too; the children keep running (Stop stops them).
func (e *Engine) Settle(o Settle) Final {
	var live []*Client
	for _, c := range e.c.Clients() {
		select {
		case <-c.Done():
		default:
			live = append(live, c)
		}
	}
	if len(live) > 0 {
		_ = e.rates.once(live, 0)
	}
	var f Final
	e.mu.Lock()
	camps, rated := e.campaigns, e.rated
	e.campaigns = nil
	e.mu.Unlock()
	for _, c := range camps {
		if info, err := c.Node.Admin.StopCampaign(c.Info.ID); err == nil {
			f.Campaigns = append(f.Campaigns, info)
		}
	}
	if o.Drain && rated {
		e.drain()
	}
	nodes := e.c.Nodes()
	f.Stats = make([]server.Stats, len(nodes))
	for k, n := range nodes {
		if st, err := n.Admin.ServerStats(); err == nil {
			f.Stats[k] = st
			f.Read++
		} else {
			f.StatsErr = errors.Join(f.StatsErr, fmt.Errorf("%s: %w", n.Name, err))
		}
		if !o.Audit {
			continue
		}
		if rep, err := n.Admin.Audit(); err == nil {
			f.AuditNames, f.Audits = append(f.AuditNames, n.Name), append(f.Audits, rep)
		} else {
			f.AuditErrs = append(f.AuditErrs, fmt.Sprintf("%s: %v", n.Name, err))
		}
	}
	return f
}

// Stopped is how the children ended.
type Stopped struct {
	Clients []ClientEnd // the clients running when Stop began, in order
	NodeErr error       // the nodes' exit errors, joined
	Killed  int         // children that did not stop within their grace
}

// ClientEnd is a client's summary, or why there is none.
type ClientEnd struct {
	Name    string
	Summary *load.Summary
	Err     error
}

// Stop stops every child: the running clients first (StopClients), then
// the nodes, each given its grace before SIGKILL; then any child still
// there is killed.
func (c *Cluster) Stop(clientGrace, nodeGrace time.Duration) Stopped {
	s := Stopped{Clients: c.StopClients(clientGrace)}
	nodes := c.Nodes()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for k, n := range nodes {
		wg.Go(func() { errs[k] = n.Stop(nodeGrace) })
	}
	wg.Wait()
	s.NodeErr = errors.Join(errs...)
	c.mu.Lock()
	for _, ch := range c.children {
		select {
		case <-ch.proc.Done():
		default:
			ch.proc.Kill()
			s.Killed++
		}
	}
	c.mu.Unlock()
	if s.Killed > 0 {
		fmt.Fprintf(c.out(), "%d children had to be killed\n", s.Killed)
	}
	return s
}

// StopClients stops the running clients in parallel (SIGTERM, grace, then
// SIGKILL) and returns their summaries; they leave the running clients.
// From here on no exit is a death: the scenario is ending.
func (c *Cluster) StopClients(grace time.Duration) []ClientEnd {
	c.mu.Lock()
	c.stopping = true
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	ends := make([]ClientEnd, len(clients))
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Go(func() {
			_ = cl.Stop(grace)
			sum, err := cl.Summary()
			ends[i] = ClientEnd{Name: cl.Name, Summary: sum, Err: err}
		})
	}
	wg.Wait()
	return ends
}
