package server

import (
	"context"
	"math"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"hongbao/internal/proto"
)

// Deadlines. A connection that has not logged in within the login
// timeout, that holds an incomplete frame longer than the frame timeout,
// or that is logged in and sends nothing for the idle timeout is closed
// with an error frame naming the reason. At a million connections these
// checks cost no goroutine and no timer per connection: each event loop
// keeps its sessions in a wheel of one-second slots, and the server's
// ticker has a loop advance its wheel (a task on the loop, so the wheel
// and the sessions are touched by their loop only) in a second when a
// slot of it is due. A loop is woken for nothing else: waking an idle gnet
// loop costs about a millisecond of CPU (the Go runtime's monitor polls
// fast for a while after a thread comes back from epoll_wait), which once
// a second made idle connections cost twice as much CPU as without
// deadlines.
//
// The wheel is lazy: a session is filed under the second of its deadline
// when it opens, and traffic that pushes the deadline later moves nothing.
// When its slot comes, the deadline is computed again from the session's
// clocks and the session is closed or filed further on. A session is thus
// looked at about once per timeout, not once per request or per second.
// Only a login, and a change that brings the deadline earlier (an
// incomplete frame starting), refile it at once.

// wheelSlots is the wheel's size in seconds. A deadline further away than
// this is filed modulo the size and refiled when its slot comes round.
const wheelSlots = 512

// noDeadline marks a session with no deadline (every timeout that applies
// to it is off); it lives on the wheel's list of such sessions.
const noDeadline = math.MaxUint32

// wheel is one loop's deadline wheel; it is touched only on that loop.
type wheel struct {
	slots [wheelSlots]*session
	never *session // sessions without a deadline
	// at is the next second whose slot is due.
	at uint32
	// next is the earliest second at which a slot may hold a session due
	// (noDeadline: none): the ticker wakes the loop then. Written by the
	// loop, read by the ticker.
	next atomic.Uint32
	// doing holds the sessions of the slot being processed.
	doing *session
}

// file puts ss on the list for second due (taking it off any other).
func (w *wheel) file(ss *session, due uint32) {
	old, linked := ss.due, ss.pprev != nil
	w.unlink(ss)
	ss.due = due
	head := &w.never
	if due != noDeadline {
		head = &w.slots[due%wheelSlots]
		if due < w.next.Load() {
			w.next.Store(due)
		}
	}
	ss.next, ss.pprev = *head, head
	if ss.next != nil {
		ss.next.pprev = &ss.next
	}
	*head = ss
	if linked {
		w.left(old)
	}
}

// drop takes ss off the wheel (it closed).
func (w *wheel) drop(ss *session) {
	if ss.pprev != nil {
		w.unlink(ss)
		w.left(ss.due)
	}
}

// left notes that a session filed under second due left its slot: when
// that emptied the slot the loop would next be woken for (logins leave
// their login deadline's slot, one after the other), the next wake-up is
// at the next slot with sessions.
func (w *wheel) left(due uint32) {
	next := w.next.Load()
	if due == noDeadline || next == noDeadline || due%wheelSlots != next%wheelSlots || w.slots[due%wheelSlots] != nil || w.doing != nil {
		return
	}
	w.next.Store(w.first(w.at))
}

// first is the first second from t on whose slot holds sessions
// (noDeadline: none); they are due then or a whole turn later. From w.at
// (which lags while no slot is due) it may be a second already past: the
// loop is woken at once and its sweep, which visits every slot from w.at,
// sets it right.
func (w *wheel) first(t uint32) uint32 {
	for end := t + wheelSlots; t < end; t++ {
		if w.slots[t%wheelSlots] != nil {
			return t
		}
	}
	return noDeadline
}

// unlink takes ss off its list, if it is on one.
func (w *wheel) unlink(ss *session) {
	if ss.pprev == nil {
		return
	}
	*ss.pprev = ss.next
	if ss.next != nil {
		ss.next.pprev = ss.pprev
	}
	ss.next, ss.pprev = nil, nil
}

// each calls fn for every session on the wheel; fn may close sessions
// (they are gathered first).
func (w *wheel) each(tmp []*session, fn func(*session)) []*session {
	tmp = tmp[:0]
	for _, head := range append(w.slots[:], w.never) {
		for ss := head; ss != nil; ss = ss.next {
			tmp = append(tmp, ss)
		}
	}
	for _, ss := range tmp {
		fn(ss)
	}
	clear(tmp)
	return tmp[:0]
}

// timeouts are the deadlines in whole seconds; 0 is off.
type timeouts struct {
	login, frame, idle uint32
}

func (t timeouts) any() bool { return t.login|t.frame|t.idle != 0 }

// deadline is the first second at which ss may be closed, and why. A
// deadline of T seconds from second t is t+T+1: the coarse clock is the
// second's start, so the connection has had at least T seconds by then.
func (s *Server) deadline(ss *session) (uint32, proto.Reason) {
	t := &s.timeouts
	d, why := uint32(noDeadline), proto.ReasonNone
	switch {
	case ss.set == nil && t.login > 0:
		d, why = ss.last+t.login+1, proto.ReasonLoginTimeout
	case ss.set != nil && t.idle > 0:
		d, why = ss.last+t.idle+1, proto.ReasonIdleTimeout
	}
	if ss.partial != 0 && t.frame > 0 && ss.partial+t.frame+1 <= d { // on a tie, the more telling reason
		d, why = ss.partial+t.frame+1, proto.ReasonFrameTimeout
	}
	return d, why
}

// noteTraffic updates ss's clocks after OnTraffic consumed used bytes and
// left rest buffered.
func (s *Server) noteTraffic(ss *session, used, rest int) {
	if used == 0 && rest == 0 {
		return
	}
	now := uint32(s.sec.Load())
	if used > 0 && ss.set != nil {
		ss.last = now
	}
	switch {
	case rest == 0 || ss.inflight >= maxInflight:
		// Nothing incomplete, or complete frames the server itself has
		// not read yet (backpressure): not the client's delay.
		ss.partial = 0
	case used > 0 || ss.partial == 0:
		ss.partial = now // a new incomplete frame
	}
	if d, _ := s.deadline(ss); d < ss.due {
		ss.loop.wheel.file(ss, d)
	}
}

// sweeper is a loop seen as the task that advances its deadline wheel and
// closes the lingering connections whose goodbye is flushed.
type sweeper loop

func (sw *sweeper) Run(context.Context) error {
	l := (*loop)(sw)
	defer l.sweeping.Store(false)
	s := l.s
	l.closeLingering()
	if !s.timeouts.any() || s.draining.Load() {
		return nil
	}
	now := uint32(s.sec.Load())
	w := &l.wheel
	if now < w.at {
		return nil // nothing is due before w.at
	}
	if now-w.at >= wheelSlots { // the loop was stalled: every slot is due once
		w.at = now - (wheelSlots - 1)
	}
	for ; w.at <= now; w.at++ {
		head := &w.slots[w.at%wheelSlots]
		if *head == nil {
			continue
		}
		// Move the slot's list aside, then close or refile each session.
		w.doing, *head = *head, nil
		w.doing.pprev = &w.doing
		for w.doing != nil {
			ss := w.doing
			w.unlink(ss)
			if d, why := s.deadline(ss); d <= now {
				w.file(ss, noDeadline) // OnClose unlinks it again
				s.expire(ss, why)
			} else {
				w.file(ss, d)
			}
		}
	}
	w.next.Store(w.first(w.at))
	return nil
}

// expire closes ss for a missed deadline.
func (s *Server) expire(ss *session, why proto.Reason) {
	if ss.bye || ss.closed {
		return
	}
	s.opts.Logger.Debug("closing connection", "user", ss.user, "reason", why.String())
	s.closeNow(ss, why, 0)
}

// linger keeps ss, whose goodbye is written but not yet all taken by the
// socket, until the sweep finds its outbound buffer empty.
func (l *loop) linger(ss *session) {
	l.lingering = append(l.lingering, ss)
}

// closeLingering closes the lingering connections that gnet has flushed.
func (l *loop) closeLingering() {
	keep := l.lingering[:0]
	for _, ss := range l.lingering {
		switch {
		case ss.closed:
		case ss.conn.OutboundBuffered() == 0:
			_ = ss.conn.EventLoop().Close(ss.conn)
		default:
			keep = append(keep, ss)
		}
	}
	clear(l.lingering[len(keep):])
	l.lingering = keep
}

// sweep has every event loop whose wheel has a slot due by second now
// advance it (from the ticker, once a second), or every loop when all is
// set (while the server drains, for the lingering connections).
func (s *Server) sweep(now uint32, all bool) {
	for _, l := range s.knownLoops() {
		if !all && l.wheel.next.Load() > now {
			continue
		}
		if l.sweeping.CompareAndSwap(false, true) {
			if l.el.Execute(context.Background(), (*sweeper)(l)) != nil {
				l.sweeping.Store(false)
			}
		}
	}
}

// knownLoops returns the loops that have had a connection (and so have
// their gnet loop recorded).
func (s *Server) knownLoops() []*loop {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	out := make([]*loop, 0, len(s.loops))
	for _, l := range s.loops {
		if l.el != nil {
			out = append(out, l)
		}
	}
	return out
}

// drainer is a loop seen as the task that starts its part of a graceful
// shutdown: every connection on it is served once more, which answers
// what it has buffered and says goodbye once its answers are all written
// (the rest get theirs when the ledger's answers are flushed).
type drainer loop

func (d *drainer) Run(context.Context) error {
	l := (*loop)(d)
	s := l.s
	l.tmp = l.wheel.each(l.tmp, func(ss *session) {
		if !ss.bye && !ss.closed {
			s.serveNow(ss)
		}
	})
	return nil
}

var _ gnet.Runnable = (*drainer)(nil)
