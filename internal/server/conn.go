package server

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/panjf2000/gnet/v2"

	"hongbao/internal/auth"
	"hongbao/internal/proto"
)

// maxOutbound bounds what may queue for a client that does not read; past
// it the client is closed rather than allowed to grow the server's memory.
const maxOutbound = 64 << 10

// session is one connection's state: under 64 bytes, so that an idle
// logged-in connection costs little beyond gnet's own conn.
type session struct {
	conn    gnet.Conn
	loop    *loop
	set     *set // nil until login
	user    uint32
	classic bool
}

// closeWith sends frame and closes the connection; safe from any goroutine.
func (ss *session) closeWith(frame []byte) {
	_ = ss.conn.AsyncWrite(frame, func(c gnet.Conn, _ error) error { return c.Close() })
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
	c.SetContext(&session{conn: c, loop: l})
	if s.draining.Load() {
		return proto.AppendError(nil, s.sec.Load(), proto.ReasonShutdown, 0), gnet.Close
	}
	return nil, gnet.None
}

func (h *handler) OnClose(c gnet.Conn, _ error) gnet.Action {
	ss, ok := c.Context().(*session)
	if !ok {
		return gnet.None
	}
	if ss.set != nil {
		ss.set.logout(ss)
	}
	ss.loop.counters.conns.Add(-1)
	ss.loop.counters.closed.Add(1)
	return gnet.None
}

// OnTraffic answers every complete frame that has arrived, in order, with
// one write. A malformed frame is answered with an error frame naming the
// reason, and the connection is closed; nothing else is disturbed.
func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	s := h.s
	ss := c.Context().(*session)
	l := ss.loop
	buf, _ := c.Peek(-1)
	out := l.out[:0]
	used := 0
	var (
		reason proto.Reason
		cause  proto.Cmd
	)
	for reason == proto.ReasonNone {
		frame, _, err := proto.Split(buf[used:])
		if err != nil {
			reason = proto.ReasonBadLength
			break
		}
		if frame == nil {
			break
		}
		used += len(frame)
		out, reason, cause = s.handle(ss, frame, out)
	}
	_, _ = c.Discard(used)
	if reason == proto.ReasonNone && s.draining.Load() {
		reason = proto.ReasonShutdown
	}
	if reason != proto.ReasonNone {
		if reason != proto.ReasonShutdown {
			l.counters.errors.Add(1)
			s.opts.Logger.Debug("closing connection", "user", ss.user, "reason", reason.String(), "cmd", uint16(cause))
		}
		out = proto.AppendError(out, s.sec.Load(), reason, cause)
		_, _ = c.Write(out)
		l.out = out[:0]
		return gnet.Close
	}
	if len(out) > 0 {
		_, _ = c.Write(out)
		l.out = out[:0]
		if c.OutboundBuffered() > maxOutbound {
			s.opts.Logger.Warn("closing a client that does not read", "user", ss.user)
			l.counters.errors.Add(1)
			_, _ = c.Write(proto.AppendError(l.out[:0], s.sec.Load(), proto.ReasonSlowReader, 0))
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
	l.counters.requests.Add(1)
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
		// Group packets arrive with the ledger; until then no packet id is
		// known, and the classic answer for it is an amount of 0.
		return proto.AppendFrame(out, proto.CmdClassicOpenR, now, proto.U32(p, 1), 0), 0, 0
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
	if user == 0 || (s.opts.Users > 0 && user > s.opts.Users) {
		return out, proto.ReasonBadUser, cmd
	}
	ss.user, ss.classic = user, classic
	ss.set = &s.sets[int(user)%len(s.sets)]
	if old := ss.set.login(ss); old != nil {
		old.closeWith(proto.AppendError(nil, now, proto.ReasonReplaced, cmd))
	}
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
	if p, ok := ss.set.take(); ok {
		s.camps.taken(p)
		c.got.Add(1)
		c.grantedAmount.Add(uint64(p.amount))
		return proto.AppendShakeResp(out, now, ss.user, proto.ResultGot, p.id, p.amount)
	}
	if s.camps.allTaken() {
		c.allTaken.Add(1)
		return proto.AppendShakeResp(out, now, ss.user, proto.ResultAllTaken, 0, 0)
	}
	c.none.Add(1)
	return proto.AppendShakeResp(out, now, ss.user, proto.ResultNone, 0, 0)
}

// gnetLogger routes gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
