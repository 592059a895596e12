package load

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/pace"
	"hongbao/internal/proto"
)

// makeDialers returns one dialer per source address (or a single one that
// lets the kernel choose). Their ControlContext (earlyConnect, sock.go)
// binds and connects with raw system calls.
//
// TCP keepalive is off (KeepAlive -1). Go's dialer turns it on by default
// with probes every 15 s; over a million loopback connections that is
// 67,000 probes and as many ACKs a second, more kernel work than 30,000
// shakes/s, and it stalled a million-user ramp at 700,000. A simulated user
// learns that its connection died from the protocol: from a failed write,
// a close, or answers that stop coming.
func makeDialers(sources []netip.Addr) []net.Dialer {
	if len(sources) == 0 {
		sources = []netip.Addr{{}}
	}
	ds := make([]net.Dialer, len(sources))
	for i, a := range sources {
		ds[i] = net.Dialer{Timeout: dialTimeout, KeepAlive: -1, ControlContext: earlyConnect(a)}
	}
	return ds
}

// addrOf is the address of the node that owns user u.
func (c *Client) addrOf(u uint32) string {
	if c.cfg.raddrs == nil {
		return c.cfg.raddr
	}
	return c.cfg.raddrs[c.cfg.nodeMap.Of(u)]
}

// dialLoop dials the users the feeder hands over until ctx is done. Each
// dialer has its own Signer (a Signer is not safe for concurrent use) and
// its own frame buffer.
func (c *Client) dialLoop(ctx context.Context) {
	var signer *auth.Signer
	if !c.o.Classic {
		s, err := auth.NewSigner(c.o.Secret)
		if err != nil { // New checked the secret; this cannot happen
			c.log.Error("token signer", "err", err)
			return
		}
		signer = s
	}
	var buf [proto.HeaderSize + 4 + proto.TokenSize]byte
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-c.connect.q:
			c.dial(ctx, u, signer, buf[:0])
		}
	}
}

// dial connects u, writes its login frame, and hands the connection to a
// gnet event loop, which takes u over in OnOpen. The login goes out on the
// blocking socket before the hand-over so that token minting stays on this
// goroutine; the answer waits in the socket until the loop reads it.
func (c *Client) dial(ctx context.Context, u *user, signer *auth.Signer, buf []byte) {
	attempt := u.startAttempt()
	d := &c.cfg.dialers[int(u.id)%len(c.cfg.dialers)]
	nc, err := d.DialContext(ctx, "tcp", c.addrOf(u.id))
	if err != nil {
		if ctx.Err() != nil {
			u.setPhase(phOffline, 0)
			return // stopping
		}
		c.stats.glob.dialErrors.Add(1)
		c.logDialError(err)
		c.failed(u)
		return
	}
	now := time.Now()
	var frame []byte
	if signer == nil {
		frame = proto.AppendLogin(buf, uint64(now.Unix()), u.id)
	} else {
		tok := signer.Mint(u.id, now.Add(tokenTTL))
		frame = proto.AppendTokenLogin(buf, uint64(now.Unix()), u.id, &tok)
	}
	if err := writeFirst(nc.(*net.TCPConn), frame); err != nil { // a "tcp" dial's conn
		_ = nc.Close()
		c.logDialError(fmt.Errorf("write login: %w", err))
		c.failed(u)
		return
	}
	if _, err := c.loops.cli.EnrollContext(nc, u); err != nil {
		c.logDialError(fmt.Errorf("enroll: %w", err))
		c.failed(u)
		return
	}
	// OnOpen runs before EnrollContext returns; if the loop could not
	// register the socket it never ran and u is still ours: still dialing,
	// in this attempt. (Once a loop has it, u may already be back in
	// another dialer's hands, under a newer attempt: hands off.)
	if st := u.state.Load(); phaseOf(st) == phDialing && st&attemptMask == attempt {
		c.logDialError(fmt.Errorf("enroll: event loop did not take the connection"))
		c.failed(u)
	}
}

// failed ends a connection attempt that never reached an event loop.
func (c *Client) failed(u *user) {
	c.stats.glob.errors.Add(1)
	c.resolveFirst(u)
	u.setPhase(phOffline, 0)
	if !c.connect.stopping.Load() {
		c.retryLater(u)
	}
}

// logDialError logs at most one connect failure per second: when a server
// is down every user fails, and one line says it.
func (c *Client) logDialError(err error) {
	now := time.Now().Unix()
	last := c.connect.lastLog.Load()
	if now != last && c.connect.lastLog.CompareAndSwap(last, now) {
		c.log.Warn("connect failed (further failures this second not logged)", "addr", c.cfg.raddr, "err", err)
	}
}

// retryLater queues u for a reconnect after its backoff, with jitter so that
// users dropped together do not come back together. Only u's owner calls it.
func (c *Client) retryLater(u *user) {
	b := int64(u.backoff)
	if b == 0 {
		b = backoffMin
	}
	delay := time.Duration(b/2+rand.Int64N(b/2+1)) * time.Millisecond
	u.backoff = uint16(min(2*b, backoffMax))
	c.connect.retry.push(time.Now().Add(delay).UnixNano(), u)
}

// retryQueue holds users waiting to reconnect, by due time.
type retryQueue struct {
	mu    sync.Mutex
	items retryHeap
	wake  chan struct{} // signalled on push
}

type retryItem struct {
	due int64 // Unix ns
	u   *user
}

type retryHeap []retryItem

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(retryItem)) }
func (h *retryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func (q *retryQueue) push(due int64, u *user) {
	q.mu.Lock()
	heap.Push(&q.items, retryItem{due, u})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop returns a user due by now, or nil and the earliest due time (0 when
// the queue is empty).
func (q *retryQueue) pop(now int64) (*user, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil, 0
	}
	if q.items[0].due > now {
		return nil, q.items[0].due
	}
	return heap.Pop(&q.items).(retryItem).u, 0
}

// feed hands users to the dialers at the Ramp pace: first reconnects that
// are due, then users not yet connected, in id order. The pace applies to
// reconnects too, so a server that drops everyone is not stormed back.
func (c *Client) feed(ctx context.Context) {
	next := 0 // next never-dialed user index
	var pace pacer
	pace.init(c.o.Ramp)
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	for {
		if !pace.wait(ctx) {
			return
		}
		u, due := c.connect.retry.pop(time.Now().UnixNano())
		if u == nil && next < len(c.users) {
			u = &c.users[next]
			next++
		}
		if u == nil {
			// Nothing to dial: sleep until the next reconnect is due or
			// one is queued.
			d := time.Hour
			if due != 0 {
				d = time.Duration(due - time.Now().UnixNano())
			}
			idle.Reset(max(d, 0))
			select {
			case <-ctx.Done():
				return
			case <-c.connect.retry.wake:
			case <-idle.C:
			}
			idle.Stop() // since Go 1.23 a stopped timer delivers no stale tick
			continue
		}
		select {
		case c.connect.q <- u:
			pace.took()
		case <-ctx.Done():
			return
		}
	}
}

// pacer spaces the ramp's dials at a rate per second (pace.Pacer; the first
// at once), keeping at most 10 ms of backlog after a pause, so a feeder
// that waited on busy dialers sends no more than 10 ms's worth at once.
type pacer struct {
	p     pace.Pacer
	timer *time.Timer
}

func (p *pacer) init(rate int) { p.p = pace.Immediate(rate, 10*time.Millisecond, time.Now()) }

// wait blocks until the next event may happen; false when ctx is done.
func (p *pacer) wait(ctx context.Context) bool {
	if p.p.Due(time.Now()) > 0 {
		return ctx.Err() == nil
	}
	d := time.Until(p.p.Next())
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		p.timer.Stop()
		return false
	case <-p.timer.C:
		return true
	}
}

// took accounts for one event.
func (p *pacer) took() { p.p.Take(1) }
