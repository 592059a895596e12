package server

import (
	"errors"
	"slices"
	"sync"

	"github.com/panjf2000/gnet/v2"

	"hongbao/internal/auth"
	"hongbao/internal/ledger"
	"hongbao/internal/money"
	"hongbao/internal/proto"
)

// maxOutbound bounds what may wait in the server for one client: the bytes
// gnet buffers for it once the socket is full (checked on the loop after
// every write), and the frames other goroutines queued in its outbox (see
// outbox.go). Past it the client is closed as a slow reader rather than
// allowed to grow the server's memory.
const maxOutbound = 64 << 10

// session is one connection's state: about 90 bytes, so that an idle
// logged-in connection costs little beyond gnet's own conn. Fields are
// owned by the connection's event loop unless marked otherwise.
type session struct {
	conn gnet.Conn
	loop *loop
	set  *set // nil until login
	// next and pprev link the session into one list of its loop's
	// deadline wheel (deadline.go).
	next  *session
	pprev **session
	// mu guards box and closed, which other goroutines use to queue
	// frames (outbox.go).
	mu  sync.Mutex
	box *outbox
	// user is set at login, before the session is published in its set.
	user uint32
	// last is the coarse second (Server.sec) the connection opened, until
	// it logs in; from then on, the second its last complete frame came.
	last uint32
	// partial is the second the incomplete frame now buffered began to
	// arrive; 0 when there is none.
	partial uint32
	// due is the second of the wheel slot the session is filed under
	// (noDeadline: the list of sessions without one).
	due uint32
	// inflight counts this session's answers queued behind the ledger and
	// not yet written. While it is non-zero every later answer, immediate
	// or not, is queued behind them too: the ledger completes in append
	// order and the outbox keeps that order, so answers keep the order of
	// requests. At maxInflight the session's further frames stay unread in
	// gnet's inbound buffer until an answer is written and the flush
	// serves them.
	inflight int32
	// why is the reason the server gave when it decided to close the
	// connection (ReasonNone when it did not): OnClose counts the close by it.
	why     proto.Reason
	classic bool
	// bye: an error frame was written, so nothing more will be.
	bye bool
	// closed: OnClose ran (guarded by mu).
	closed bool
}

// maxInflight bounds the answers one session may have queued behind the
// ledger; past it its frames wait unread (backpressure on a flooding client).
const maxInflight = 64

func newSession(c gnet.Conn, l *loop) *session {
	return &session{conn: c, loop: l}
}

// replyLater sends frame once the ledger has made its record durable; if
// it cannot, field number failField (if >= 0) is set to failValue first.
func (ss *session) replyLater(frame []byte, failField int, failValue uint32) *durableReply {
	ss.inflight++
	off := -1
	if failField >= 0 {
		off = proto.HeaderSize + 4*failField
	}
	return &durableReply{ss: ss, frame: frame, failOff: off, failValue: failValue}
}

// handler adapts the Server to gnet's event callbacks, which run on the
// event loop that owns the connection.
type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.s
	s.eng = eng
	addr, err := boundAddr(eng)
	if err != nil {
		s.opts.Logger.Error("reading listener address", "err", err)
		addr = s.opts.Listen
	}
	s.addr = addr
	close(s.booted)
	return gnet.None
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	l := s.loopFor(c.EventLoop())
	l.counters.opened.Add(1)
	l.counters.conns.Add(1)
	ss := newSession(c, l)
	c.SetContext(ss)
	if why := s.admit(c.Fd()); why != proto.ReasonNone {
		ss.why, ss.bye = why, true // closed now, before gnet accepts another (accept.go)
		return proto.AppendError(nil, s.sec.Load(), why, 0), gnet.Close
	}
	ss.last = uint32(s.sec.Load())
	due, _ := s.deadline(ss)
	l.wheel.file(ss, due)
	if s.draining.Load() {
		ss.why, ss.bye = proto.ReasonShutdown, true
		return proto.AppendError(nil, s.sec.Load(), proto.ReasonShutdown, 0), gnet.Close
	}
	return nil, gnet.None
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	ss, ok := c.Context().(*session)
	if !ok {
		return gnet.None
	}
	if ss.set != nil {
		ss.set.logout(ss)
	}
	if ss.why != proto.ReasonOverLimit { // a shed connection was never admitted
		h.s.release()
	}
	ss.loop.wheel.drop(ss)
	ss.mu.Lock()
	ss.closed = true
	if b := ss.box; b != nil {
		ss.box = nil
		if !b.queued && cap(b.buf) <= maxBoxKeep { // a queued flush may still read it
			*b = outbox{buf: b.buf[:0]}
			boxes.Put(b)
		}
	}
	ss.mu.Unlock()
	k := &ss.loop.counters
	k.conns.Add(-1)
	k.closed.Add(1)
	k.disconnects[disconnectIndex(ss.why, err)].Add(1)
	return gnet.None
}

// OnTraffic answers every complete frame that has arrived, in order, with
// one write. A malformed frame is answered with an error frame naming the
// reason, and the connection is closed; nothing else is disturbed. While
// the server drains, a connection whose every answer is written gets the
// goodbye (ReasonShutdown) and is closed.
func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	s := h.s
	ss := c.Context().(*session)
	l := ss.loop
	if ss.bye {
		// Its error frame was written: what it sends now is not read.
		_, _ = c.Discard(-1)
		return gnet.None
	}
	buf, _ := c.Peek(-1)
	out := l.out[:0]
	used := 0
	var (
		reason proto.Reason
		cause  proto.Cmd
	)
	for reason == proto.ReasonNone && ss.inflight < maxInflight {
		frame, _, err := proto.Split(buf[used:])
		if err != nil {
			reason = proto.ReasonBadLength
			break
		}
		if frame == nil {
			break
		}
		used += len(frame)
		before, queued := len(out), ss.inflight > 0
		out, reason, cause = s.handle(ss, frame, out)
		if queued && reason == proto.ReasonNone && len(out) > before {
			// Answers are queued behind the ledger: this one goes behind them.
			s.money.Barrier(ss.replyLater(slices.Clone(out[before:]), -1, 0))
			out = out[:before]
		}
	}
	if used > 0 { // Discard(0) would drop everything buffered
		_, _ = c.Discard(used)
	}
	s.noteTraffic(ss, used, len(buf)-used)
	if reason == proto.ReasonNone && s.draining.Load() && ss.inflight == 0 {
		reason = proto.ReasonShutdown
	}
	if reason != proto.ReasonNone {
		if reason != proto.ReasonShutdown {
			l.counters.errors.Add(1)
			s.opts.Logger.Debug("closing connection", "user", ss.user, "reason", reason.String(), "cmd", uint16(cause))
		}
		ss.why, ss.bye = reason, true
		out = proto.AppendError(out, s.sec.Load(), reason, cause)
		_, _ = c.Write(out)
		l.out = out[:0]
		if reason == proto.ReasonShutdown && !ss.closed && c.OutboundBuffered() > 0 {
			// Every answer must reach the client before the close: gnet
			// would give up on what the socket does not take at once.
			l.linger(ss)
			return gnet.None
		}
		return gnet.Close
	}
	if len(out) > 0 {
		_, _ = c.Write(out)
		l.out = out[:0]
		if c.OutboundBuffered() > maxOutbound {
			s.goodbye(ss, proto.ReasonSlowReader, 0)
			return gnet.Close
		}
	}
	return gnet.None
}

// handle serves one frame, appending any answer to out. A non-zero reason
// means the connection must be closed.
func (s *Server) handle(ss *session, frame, out []byte) ([]byte, proto.Reason, proto.Cmd) {
	h, p, err := proto.Parse(frame)
	if err != nil {
		var r proto.Reason
		if !errors.As(err, &r) {
			r = proto.ReasonBadPayload
		}
		return out, r, h.Cmd
	}
	l := ss.loop
	l.counters.commands[commandIndex(h.Cmd)].Add(1)
	now := s.sec.Load()
	switch h.Cmd {
	case proto.CmdShake:
		if ss.set == nil {
			return out, proto.ReasonNotLoggedIn, h.Cmd
		}
		if u := proto.U32(p, 0); u != ss.user && u != 0 {
			return out, proto.ReasonBadUser, h.Cmd
		}
		return s.shake(ss, now, out), 0, 0
	case proto.CmdTokenLogin:
		var t proto.Token
		user := proto.DecodeTokenLogin(p, &t)
		if l.signer == nil {
			return out, proto.ReasonBadToken, h.Cmd
		}
		if err := l.signer.Verify(&t, user, s.opts.Now()); err != nil {
			return out, tokenReason(err), h.Cmd
		}
		return s.login(ss, user, false, now, out)
	case proto.CmdLogin:
		if !s.opts.AllowClassic {
			return out, proto.ReasonClassicRefused, h.Cmd
		}
		return s.login(ss, proto.U32(p, 0), true, now, out)
	case proto.CmdPing:
		return proto.AppendPing(out, proto.CmdPong, now, proto.U32(p, 0)), 0, 0
	case proto.CmdPong:
		return out, 0, 0
	case proto.CmdClassicOpen:
		if ss.set == nil {
			return out, proto.ReasonNotLoggedIn, h.Cmd
		}
		if u := proto.U32(p, 0); u != ss.user && u != 0 {
			return out, proto.ReasonBadUser, h.Cmd
		}
		return s.openPacket(ss, proto.U32(p, 1), true, now, out), 0, 0
	case proto.CmdOpen:
		if ss.set == nil {
			return out, proto.ReasonNotLoggedIn, h.Cmd
		}
		return s.openPacket(ss, proto.U32(p, 0), false, now, out), 0, 0
	case proto.CmdSend:
		if ss.set == nil {
			return out, proto.ReasonNotLoggedIn, h.Cmd
		}
		return s.sendPacket(ss, p, now, out), 0, 0
	case proto.CmdList:
		if ss.set == nil {
			return out, proto.ReasonNotLoggedIn, h.Cmd
		}
		return proto.AppendListResp(out, now, proto.U32(p, 0), s.money.Pending(ss.user, proto.MaxListed)), 0, 0
	}
	return out, proto.ReasonNotForClient, h.Cmd
}

func tokenReason(err error) proto.Reason {
	switch {
	case errors.Is(err, auth.ErrExpired):
		return proto.ReasonTokenExpired
	case errors.Is(err, auth.ErrOtherUser):
		return proto.ReasonTokenOtherUser
	}
	return proto.ReasonBadToken
}

func (s *Server) login(ss *session, user uint32, classic bool, now uint64, out []byte) ([]byte, proto.Reason, proto.Cmd) {
	cmd := proto.CmdTokenLogin
	if classic {
		cmd = proto.CmdLogin
	}
	if ss.set != nil {
		return out, proto.ReasonAlreadyLogged, cmd
	}
	if user == 0 || user < s.opts.UsersFrom || (s.opts.Users > 0 && user > s.opts.Users) {
		return out, proto.ReasonBadUser, cmd
	}
	ss.user, ss.classic = user, classic
	ss.set = s.setOf(user)
	if old := ss.set.login(ss); old != nil {
		old.closeWith(proto.ReasonReplaced, cmd)
	}
	// From now on the idle deadline applies: file the session under it at
	// once, so that the login deadline's slot does not come round to a
	// session that logged in long ago.
	ss.last = uint32(now)
	due, _ := s.deadline(ss)
	ss.loop.wheel.file(ss, due)
	ss.loop.counters.logins.Add(1)
	return proto.AppendLoginResp(out, now, user, proto.ResultOK), 0, 0
}

// shake answers a shake: overloaded if this loop's admission window is full
// (checked first, touching nothing shared), else a waiting packet of the
// user's SET, else none or all taken.
func (s *Server) shake(ss *session, now uint64, out []byte) []byte {
	l := ss.loop
	c := &l.counters
	c.shakes.Add(1)
	if l.admitSec != now {
		l.admitSec, l.admitted = now, 0
	}
	if l.admitted >= l.budget {
		c.overloaded.Add(1)
		return proto.AppendShakeResp(out, now, ss.user, proto.ResultOverloaded, 0, 0)
	}
	l.admitted++
	if p, ok := s.money.TakeShake(ss.user); ok {
		c.got.Add(1)
		c.grantedAmount.Add(uint64(p.Amount))
		// A granted shake packet is a money movement: with a ledger it is
		// answered once its record is durable.
		if !s.money.Durable() {
			s.money.GrantShake(ss.user, p, nil)
			return proto.AppendShakeResp(out, now, ss.user, proto.ResultGot, p.ID, p.Amount)
		}
		s.money.GrantShake(ss.user, p,
			ss.replyLater(proto.AppendShakeResp(nil, now, ss.user, proto.ResultGot, p.ID, p.Amount), 1, proto.ResultLedgerFailed))
		return out
	}
	if s.money.AllTaken() {
		c.allTaken.Add(1)
		return proto.AppendShakeResp(out, now, ss.user, proto.ResultAllTaken, 0, 0)
	}
	c.none.Add(1)
	return proto.AppendShakeResp(out, now, ss.user, proto.ResultNone, 0, 0)
}

// openPacket answers an open of a group packet: at once for a refusal, or
// once the grant (or, for a repeat, the first grant) is durable. classic
// answers with the classic frame (packet id, amount; 0 for a refusal).
func (s *Server) openPacket(ss *session, id uint32, classic bool, now uint64, out []byte) []byte {
	answer := func(dst []byte, r money.OpenResult) []byte {
		if classic {
			return proto.AppendFrame(dst, proto.CmdClassicOpenR, now, id, r.Amount)
		}
		return proto.AppendFrame(dst, proto.CmdOpenResp, now, id, r.Result, r.Amount)
	}
	var later func(money.OpenResult) ledger.Done
	if s.money.Durable() {
		later = func(r money.OpenResult) ledger.Done {
			if classic { // no result field: a failure answers amount 0
				return ss.replyLater(answer(nil, r), 1, 0)
			}
			return ss.replyLater(answer(nil, r), 1, proto.ResultLedgerFailed)
		}
	}
	r := s.money.Open(ss.user, id, later)
	if r.Durable {
		return out
	}
	return answer(out, r)
}

// sendPacket answers a group send: at once when refused (or without a
// ledger), once the funding record is durable otherwise.
func (s *Server) sendPacket(ss *session, p []byte, now uint64, out []byte) []byte {
	items := proto.Items(proto.CmdSend, p)
	sp := money.SendSpec{Sender: ss.user, Total: proto.U32(p, 0), Shares: proto.U32(p, 1), Key: proto.U64(p, 2),
		Recipients: make([]uint32, len(items)/4)}
	for i := range sp.Recipients {
		sp.Recipients[i] = proto.U32(items, i)
	}
	key := sp.Key
	id, r, later := s.money.Send(sp, func(pid, res uint32) {
		ss.post(proto.AppendFrame(nil, proto.CmdSendResp, s.sec.Load(), res, pid, uint32(key>>32), uint32(key)), true)
	})
	if later {
		// The outbox's flush of the answer ends it, on this loop: it
		// cannot come before this.
		ss.inflight++
		return out
	}
	return proto.AppendFrame(out, proto.CmdSendResp, now, r, id, uint32(key>>32), uint32(key))
}
