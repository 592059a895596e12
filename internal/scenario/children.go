package scenario

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"hongbao/internal/harness"
)

// Cluster is the children of a scenario: server nodes and load clients.
// A node, or a client without a Duration, that exits before Stop is a
// death: every wait of the engine returns it as an error.
type Cluster struct {
	bin, secret string
	// Out gets warnings (nil: discarded).
	Out io.Writer
	// Pids, if set, is a file kept listing every child's pid and name, for
	// whoever must find them (a test, an operator after a crash).
	Pids string

	mu       sync.Mutex
	children []*child // every child started, for the pid file and Stop's sweep
	nodes    []*Node
	clients  []*Client // started and not collected
	dead     chan struct{}
	deadOne  *child // the first child that died; dead is closed then
	stopping bool
}

// NewCluster returns an empty cluster whose children run bin and share
// the token secret.
func NewCluster(bin, secret string) *Cluster {
	return &Cluster{bin: bin, secret: secret, dead: make(chan struct{})}
}

// Node is a running server node.
type Node struct {
	*harness.ServerProc
	Name     string
	From, To uint32 // the users it holds
}

// Client is a running load client.
type Client struct {
	*harness.LoadProc
	Name   string
	finite bool // started with a Duration: ends by itself
}

// NodeSpec describes a node: its name, its directory (log and ledger), the
// users it holds, and how to start it.
type NodeSpec struct {
	Name     string
	Dir      string
	From, To uint32
	harness.ServerSpec
}

// ClientSpec describes a load client; its log goes to Dir/<Name>.log.
// LoadSpec.Addr is set from the nodes started.
type ClientSpec struct {
	Dir  string
	Node int // the node it connects to
	// AllNodes gives it every node's address (--nodes, node k's at k), so
	// that it sends each user to the node that holds it.
	AllNodes bool
	harness.LoadSpec
}

type child struct {
	name, kind, log string
	proc            *harness.Proc
	finite          bool
}

// Nodes are the nodes started, node k at [k].
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Clients are the clients started and not yet collected or stopped.
func (c *Cluster) Clients() []*Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Client(nil), c.clients...)
}

// nodeStarts bounds the nodes starting at once: each start waits for its
// node's health, and a hundred at once on a small box time out.
const nodeStarts = 8

// startNodes starts the nodes in parallel. A node's port may be taken
// between harness.FreePort and its bind (seen once in 52 starts): a node
// that fails to start is tried again on new ports, three times in all.
func (c *Cluster) startNodes(ctx context.Context, specs []NodeSpec) error {
	started := make([]*Node, len(specs))
	errs := make([]error, len(specs))
	sem := make(chan struct{}, nodeStarts)
	var wg sync.WaitGroup
	for k, spec := range specs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				errs[k] = ctx.Err()
				return
			}
			if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
				errs[k] = err
				return
			}
			if spec.Secret == "" {
				spec.Secret = c.secret
			}
			var sp *harness.ServerProc
			var err error
			for try := 0; try < 3 && ctx.Err() == nil; try++ {
				if sp, err = harness.StartServer(c.bin, spec.Dir, spec.ServerSpec); err == nil {
					break
				}
			}
			if err != nil {
				errs[k] = fmt.Errorf("%s: %w", spec.Name, err)
				return
			}
			sp.Proc.Name = spec.Name
			started[k] = &Node{ServerProc: sp, Name: spec.Name, From: spec.From, To: spec.To}
			c.watch(&child{name: spec.Name, kind: "node", proc: sp.Proc, log: filepath.Join(spec.Dir, "server.log")})
		})
	}
	wg.Wait()
	c.mu.Lock()
	for _, n := range started {
		if n != nil {
			c.nodes = append(c.nodes, n)
		}
	}
	c.mu.Unlock()
	return errors.Join(errs...)
}

// startClients starts the clients one after the other.
func (c *Cluster) startClients(specs []ClientSpec) error {
	nodes := c.Nodes()
	addrs := make([]string, len(nodes))
	for k, n := range nodes {
		addrs[k] = n.Addr
	}
	for _, spec := range specs {
		if spec.Node < 0 || spec.Node >= len(addrs) {
			return fmt.Errorf("client %s: no node %d of %d", spec.Name, spec.Node, len(addrs))
		}
		spec.Addr = addrs[spec.Node]
		if spec.AllNodes {
			spec.Extra = append([]string{"--nodes", strings.Join(addrs, ",")}, spec.Extra...)
		}
		if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
			return err
		}
		spec.Name = cmp.Or(spec.Name, "load")
		if spec.Secret == "" {
			spec.Secret = c.secret
		}
		lp, err := harness.StartLoad(c.bin, spec.Dir, spec.LoadSpec)
		if err != nil {
			return err
		}
		cl := &Client{LoadProc: lp, Name: spec.Name, finite: spec.Duration > 0}
		c.mu.Lock()
		c.clients = append(c.clients, cl)
		c.mu.Unlock()
		c.watch(&child{name: spec.Name, kind: "client", proc: lp.Proc, log: filepath.Join(spec.Dir, spec.Name+".log"), finite: cl.finite})
	}
	return nil
}

// watch records ch and reports its death unless it ends by itself or the
// cluster is stopping.
func (c *Cluster) watch(ch *child) {
	c.mu.Lock()
	c.children = append(c.children, ch)
	c.mu.Unlock()
	c.writePids()
	go func() {
		<-ch.proc.Done()
		if ch.finite {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.stopping || c.deadOne != nil {
			return
		}
		c.deadOne = ch
		close(c.dead)
	}()
}

func (c *Cluster) writePids() {
	if c.Pids == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, ch := range c.children {
		fmt.Fprintf(&b, "%d %s\n", ch.proc.Pid(), ch.name)
	}
	_ = os.WriteFile(c.Pids, []byte(b.String()), 0o644)
}

// diedErr says which child died and why, with the end of its log.
func (c *Cluster) diedErr() error {
	c.mu.Lock()
	ch := c.deadOne
	c.mu.Unlock()
	why := ch.proc.Stop(0)
	tail := ""
	if b, err := os.ReadFile(ch.log); err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		tail = strings.Join(lines[max(0, len(lines)-5):], "\n    ")
	}
	return fmt.Errorf("%w: %s %s (pid %d) exited: %v; last lines of %s:\n    %s", harness.ErrChildDied, ch.kind, ch.name, ch.proc.Pid(), why, ch.log, tail)
}

// exitedClient is a running client that ended by itself (nil: none).
func (c *Cluster) exitedClient() *Client {
	for _, cl := range c.Clients() {
		select {
		case <-cl.Done():
			if cl.finite {
				return cl
			}
		default:
		}
	}
	return nil
}

// finiteDone is closed when every running client that ends by itself has.
func (c *Cluster) finiteDone() <-chan struct{} {
	done := make(chan struct{})
	cls := c.Clients()
	go func() {
		for _, cl := range cls {
			if cl.finite {
				<-cl.Done()
			}
		}
		close(done)
	}()
	return done
}

// collected takes cl out of the running clients.
func (c *Cluster) collected(cl *Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.clients {
		if x == cl {
			c.clients = append(c.clients[:i], c.clients[i+1:]...)
			return
		}
	}
}

// out is where warnings go.
func (c *Cluster) out() io.Writer {
	if c.Out == nil {
		return io.Discard
	}
	return c.Out
}
