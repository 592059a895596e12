package load

// This file is the receive side of the event loops: our per-loop state
// (loop), the gnet handler's connection events (OnOpen, OnClose) and the
// decoding of what the server sends (OnTraffic: answers to shakes, which
// end a request's time in flight, pushes, error frames, pings), and the
// sweeper that times out requests never answered, keeps idle connections
// alive and closes those the server told goodbye. The send path is in
// send.go.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/panjf2000/gnet/v2"

	"hongbao/internal/proto"
)

// loop is our state for one gnet event loop: its counters and latency
// histogram, and scratch space for frames written on it. Everything but the
// counters, the histogram (under mu) and free is touched only on the loop.
type loop struct {
	c   *Client
	idx int
	el  gnet.EventLoop
	counters

	mu    sync.Mutex
	hist  *hdrhistogram.Histogram // answers of the current second
	spare *hdrhistogram.Histogram // swapped in at each second; only rollSecond touches it

	free     chan *batch // batches returned by the loop, for the scheduler to reuse
	sweep    sweeper
	sweeping atomic.Bool // a sweep is queued; don't queue another
	// pingScan is the epoch second of the last keep-alive scan; byes counts
	// this loop's connections told goodbye and not closed yet (loop-owned).
	pingScan uint16
	byes     int

	wbuf [64]byte // frames written by this loop
	_    [64]byte // keep the next loop's hot fields off this cache line
}

// loopFor returns our state for gnet event loop el, creating it the first
// time a connection lands there (gnet's client does not list its loops).
func (c *Client) loopFor(el gnet.EventLoop) *loop {
	for _, l := range *c.loops.all.Load() {
		if l.el == el {
			return l
		}
	}
	c.loops.mu.Lock()
	defer c.loops.mu.Unlock()
	old := *c.loops.all.Load()
	for _, l := range old {
		if l.el == el {
			return l
		}
	}
	l := &loop{
		c:     c,
		idx:   len(old),
		el:    el,
		hist:  newHist(c.cfg.histMax),
		spare: newHist(c.cfg.histMax),
		free:  make(chan *batch, 4),
	}
	l.sweep.l = l
	ls := append(append(make([]*loop, 0, len(old)+1), old...), l)
	c.loops.all.Store(&ls)
	return l
}

// loopAt returns the loop with index i.
func (c *Client) loopAt(i int) *loop { return (*c.loops.all.Load())[i] }

// handler is the gnet event handler of all connections; the connection's
// context is its *user.
type handler struct {
	gnet.BuiltinEventEngine
	c *Client
}

// OnOpen takes ownership of the user on this loop. The login frame was
// already written by the dialer (see dial), so nothing is sent here.
func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	u, ok := gc.Context().(*user)
	if !ok {
		return nil, gnet.Close
	}
	l := h.c.loopFor(gc.EventLoop())
	u.conn = gc
	u.reset()
	u.lastTx = h.c.epochSec(time.Now()) // the dialer wrote the login
	u.setPhase(phLogin, l.idx)
	return nil, gnet.None
}

// OnClose hands the user back for a reconnect after a backoff. Requests it
// had in flight will never be answered: they count as timeouts now.
func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	u, ok := gc.Context().(*user)
	if !ok || u.conn != gc {
		return gnet.None
	}
	c := h.c
	st := u.state.Load()
	l := c.loopAt(loopOf(st))
	if phaseOf(st) == phOnline {
		l.conns.Add(-1)
	}
	if u.n > 0 {
		l.timeouts.Add(uint64(u.n))
		l.inflight.Add(-int64(u.n))
	}
	if u.bye {
		l.byes--
	}
	u.reset()
	u.conn = nil
	stopping := c.connect.stopping.Load()
	if !stopping {
		l.disconnects.Add(1)
	}
	c.resolveFirst(u)
	u.setPhase(phOffline, 0)
	if !stopping {
		c.retryLater(u)
	}
	return gnet.None
}

// OnTraffic decodes every complete frame in gnet's inbound buffer in place
// and answers what needs an answer, without allocating.
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	u, ok := gc.Context().(*user)
	if !ok {
		return gnet.Close
	}
	c := h.c
	l := c.loopAt(loopOf(u.state.Load()))
	buf, _ := gc.Peek(-1)
	used := 0
	act := gnet.None
	closed := false
	locked := false
	var nowUS uint32
	var nowSec uint64
	var answered, got, none, taken, overloaded, bad, amount, late, expired uint64
	limitUS := int64(c.cfg.timeout / time.Microsecond)
	for {
		frame, _, err := proto.Split(buf[used:])
		if err != nil {
			c.protocolError(l, u, "bad frame length", err)
			act = gnet.Close
			break
		}
		if frame == nil {
			break
		}
		used += len(frame)
		if u.bye {
			// After the server's error frame: not served, counted.
			l.afterError.Add(1)
			l.errors.Add(1)
			continue
		}
		hd, p, err := proto.Parse(frame)
		if err != nil {
			if errors.Is(err, proto.ErrUnknownCommand) && hd.Cmd >= 0x0100 {
				continue // a newer server's command: not for us
			}
			c.protocolError(l, u, "bad frame", err)
			act = gnet.Close
			break
		}
		if nowSec == 0 {
			now := time.Now()
			nowSec = uint64(now.Unix())
			nowUS = uint32((now.UnixNano() - c.cfg.epochNs) / 1000)
		}
		switch hd.Cmd {
		case proto.CmdShakeResp:
			switch proto.U32(p, 1) {
			case proto.ResultGot:
				got++
				amount += uint64(proto.U32(p, 3))
			case proto.ResultNone:
				none++
			case proto.ResultAllTaken:
				taken++
			case proto.ResultOverloaded:
				overloaded++
			default:
				bad++
			}
			switch {
			case u.late > 0:
				// The oldest request was already counted as a timeout.
				u.late--
				late++
			case u.n > 0 && int64(int32(nowUS-u.oldest())) > limitUS:
				// Past the timeout but not yet swept: the same verdict
				// the sweeper would have given, a timeout answered late.
				u.pop()
				expired++
				late++
			case u.n > 0:
				lat := int64(int32(nowUS - u.pop()))
				if !locked {
					l.mu.Lock()
					locked = true
				}
				_ = l.hist.RecordValue(min(max(lat, 1), c.cfg.histMax))
				answered++
			default:
				bad++ // an answer to nothing we sent
			}
		case proto.CmdLoginResp:
			if !c.loggedIn(l, u, proto.U32(p, 1)) {
				act = gnet.Close
			}
		case proto.CmdClassicPush:
			// Open the pushed group packet: classic clients send userid 0
			// (the server takes the user from the session).
			l.pushes.Add(1)
			who := u.id
			if c.o.Classic {
				who = 0
			}
			f := proto.AppendFrame(l.wbuf[:0], proto.CmdClassicOpen, nowSec, who, proto.U32(p, 0))
			if _, err := gc.Write(f); err != nil {
				closed = true
			}
		case proto.CmdPush:
			// Our own push: open it (the seed's flow).
			l.pushes.Add(1)
			f := proto.AppendFrame(l.wbuf[:0], proto.CmdOpen, nowSec, proto.U32(p, 0))
			if _, err := gc.Write(f); err != nil {
				closed = true
			}
		case proto.CmdClassicOpenR:
			l.opens.Add(1)
			l.openedAmount.Add(uint64(proto.U32(p, 1)))
		case proto.CmdOpenResp:
			l.opens.Add(1)
			if proto.U32(p, 1) == proto.ResultOK {
				// Only a new share counts: a repeat answers the same amount again.
				l.openedAmount.Add(uint64(proto.U32(p, 2)))
			}
		case proto.CmdRefund:
		case proto.CmdError:
			// The server closes the connection right after this frame:
			// wait for that (OnClose reconnects), so that a frame it
			// sends after the error is seen and counted.
			c.recordReason(proto.Reason(proto.U32(p, 0)))
			l.errors.Add(1)
			c.told(l, u)
		case proto.CmdPing:
			f := proto.AppendPing(l.wbuf[:0], proto.CmdPong, nowSec, proto.U32(p, 0))
			if _, err := gc.Write(f); err != nil {
				closed = true
			}
		case proto.CmdPong:
		default:
			// A client-to-server command: the peer is not a hongbao server.
			c.protocolError(l, u, "unexpected command", proto.ErrUnknownCommand)
			act = gnet.Close
		}
		if closed || act != gnet.None {
			break
		}
	}
	if locked {
		l.mu.Unlock()
	}
	if expired > 0 {
		l.timeouts.Add(expired)
		l.inflight.Add(-int64(expired))
	}
	if answered+late > 0 {
		l.inflight.Add(-int64(answered))
		l.answered.Add(answered)
		l.late.Add(late)
	}
	if got+none+taken+overloaded+bad > 0 {
		l.got.Add(got)
		l.none.Add(none)
		l.taken.Add(taken)
		l.overloaded.Add(overloaded)
		l.amount.Add(amount)
		l.errors.Add(bad)
	}
	if closed {
		// A failed write closed the connection (OnClose has run): its
		// buffers are gone, so leave them alone.
		return gnet.None
	}
	_, _ = gc.Discard(used)
	return act
}

// told marks u's connection as closing by the server: no more sends on it.
func (c *Client) told(l *loop, u *user) {
	u.bye = true
	u.lastTx = c.epochSec(time.Now())
	l.byes++
	if st := u.state.Load(); phaseOf(st) == phOnline {
		l.conns.Add(-1)
		u.setPhase(phLogin, l.idx) // the scheduler skips it
	}
}

// epochSec is t in seconds since the run's epoch, wrapping at 2^16.
func (c *Client) epochSec(t time.Time) uint16 {
	return uint16((t.UnixNano() - c.cfg.epochNs) / 1e9)
}

// loggedIn handles a LoginResponse; it reports false when the connection
// should be closed.
func (c *Client) loggedIn(l *loop, u *user, result uint32) bool {
	st := u.state.Load()
	if phaseOf(st) != phLogin {
		c.protocolError(l, u, "login response while not logging in", nil)
		return false
	}
	if result != proto.ResultOK {
		l.errors.Add(1)
		c.log.Debug("login refused", "user", u.id, "result", result)
		return false
	}
	u.setPhase(phOnline, l.idx)
	u.backoff = 0
	l.conns.Add(1)
	l.logins.Add(1)
	if st&flEver != 0 {
		l.reconnects.Add(1)
	} else {
		u.setFlag(flEver)
	}
	c.resolveFirst(u)
	return true
}

func (c *Client) protocolError(l *loop, u *user, what string, err error) {
	l.errors.Add(1)
	c.log.Debug("protocol error, closing", "user", u.id, "what", what, "err", err)
}

// sweeper expires the requests of this loop's users that have waited
// longer than Timeout, pings the users that have sent nothing for
// PingIdle, and closes the connections the server told goodbye but did
// not close; it runs on the loop.
type sweeper struct{ l *loop }

// Run scans the users, touching only those whose connection is on this
// loop. It returns at once when there is nothing to do: a scan reads
// every user's state, tens of thousands of cache misses. Pings need a
// scan every quarter of PingIdle only.
func (s *sweeper) Run(context.Context) error {
	l := s.l
	s.l.sweeping.Store(false)
	c := l.c
	now := time.Now()
	sec := c.epochSec(now)
	ping := c.cfg.pingIdle > 0 && sec-l.pingScan >= max(c.cfg.pingIdle/4, 1)
	if l.inflight.Load() <= 0 && !ping && l.byes == 0 {
		return nil
	}
	if ping {
		l.pingScan = sec
	}
	nowUS := uint32((now.UnixNano() - c.cfg.epochNs) / 1000)
	limit := uint32(c.cfg.timeout / time.Microsecond)
	var expired, pings uint64
	for i := range c.users {
		u := &c.users[i]
		st := u.state.Load()
		if loopOf(st) != l.idx || phaseOf(st) < phLogin {
			continue
		}
		switch {
		case u.bye:
			if sec-u.lastTx >= byeWait {
				_ = u.conn.Close()
			}
		case ping && phaseOf(st) == phOnline && sec-u.lastTx >= c.cfg.pingIdle:
			f := proto.AppendPing(l.wbuf[:0], proto.CmdPing, uint64(now.Unix()), u.id)
			if _, err := u.conn.Write(f); err != nil {
				continue // gnet closed the connection; OnClose has run
			}
			u.lastTx = sec
			pings++
		}
		for u.n > 0 {
			age := nowUS - u.oldest()
			if age < limit || age >= 1<<31 {
				break
			}
			u.pop()
			u.late++
			expired++
		}
	}
	if expired > 0 {
		l.timeouts.Add(expired)
		l.inflight.Add(-int64(expired))
	}
	l.pings.Add(pings)
	return nil
}
