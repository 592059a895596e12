package server

import (
	"context"
	"sync"

	"github.com/panjf2000/gnet/v2"

	"hongbao/internal/proto"
)

// Frames for a connection that come from outside its event loop (a push of
// a group packet, an answer completed by the ledger, a refund notice, the
// close of a session replaced by a newer login) are not handed to gnet's
// AsyncWrite: its task queue has no bound, and a write it runs can come
// after the connection's goodbye. They wait in the session's outbox until
// one task on the loop (flush) writes them all with one Write. The loop
// decides there, and only there, whether anything may still be written, so
// that nothing follows an error frame; and there it checks what the socket
// did not take against maxOutbound, exactly as for the answers it writes
// itself. The outbox is only a hand-over: whether the client reads is
// known when its bytes are offered to the socket, so the outbox is allowed
// a few rounds' worth (maxBox) before the client is judged by it alone.

// outbox is what waits for a session's loop to flush it; guarded by the
// session's mu.
type outbox struct {
	buf []byte
	// replies counts the answers in buf: each, once written, ends one of
	// the session's inflight answers.
	replies int32
	// why, when not ReasonNone, closes the connection with that reason
	// after buf is written. Nothing more is queued once it is set.
	why   proto.Reason
	cause proto.Cmd // the command that caused why, for the error frame
	// queued: a flush task is queued on the loop.
	queued bool
}

// boxes keeps emptied outboxes for reuse: most sessions get a frame from
// outside their loop rarely, so a session only holds one while it waits.
var boxes = sync.Pool{New: func() any { return new(outbox) }}

// maxBoxKeep bounds the buffer an outbox keeps when it goes back to boxes.
const maxBoxKeep = 4 << 10

// maxBox bounds an outbox. The loop reads up to 64 KiB from a connection
// per round, and the ledger completes a whole batch of records at once, so
// pushes to one recipient can gather faster than one round flushes them:
// 64 KiB of pipelined sends to one recipient queue 45 KiB of pushes. Only
// a loop that has not flushed this much (or a recipient that is sent this
// much between two of its flushes) closes the client from here.
const maxBox = 4 * maxOutbound

// post queues frame (it is copied) for ss from any goroutine. reply marks
// an answer counted in ss.inflight. It reports whether the frame was
// queued: not when the connection is closed or closing, nor when the
// outbox is full, in which case the connection is closed as a slow reader
// (nothing durable is lost: an answer's record is already in the ledger,
// and a pushed packet stays listed and openable).
func (ss *session) post(frame []byte, reply bool) bool {
	return ss.enqueue(frame, reply, proto.ReasonNone, 0)
}

// closeWith closes the connection for reason why, after what is already
// queued for it, with an error frame naming why and the command that
// caused it; safe from any goroutine.
func (ss *session) closeWith(why proto.Reason, cause proto.Cmd) {
	ss.enqueue(nil, false, why, cause)
}

func (ss *session) enqueue(frame []byte, reply bool, why proto.Reason, cause proto.Cmd) bool {
	ss.mu.Lock()
	if ss.closed || (ss.box != nil && ss.box.why != proto.ReasonNone) {
		ss.mu.Unlock()
		if frame != nil {
			ss.loop.counters.outboxDropped.Add(1)
		}
		return false
	}
	b := ss.box
	if b == nil {
		b = boxes.Get().(*outbox)
		ss.box = b
	}
	ok := true
	switch {
	case why != proto.ReasonNone:
		b.why, b.cause = why, cause
	case len(b.buf)+len(frame) > maxBox:
		// What waits is dropped and the client closed.
		b.buf, b.why, ok = b.buf[:0], proto.ReasonSlowReader, false
		ss.loop.counters.outboxDropped.Add(1)
	default:
		b.buf = append(b.buf, frame...)
		if reply {
			b.replies++
		}
	}
	schedule := !b.queued
	b.queued = true
	ss.mu.Unlock()
	if schedule {
		// Fails only when the engine stopped: the connection is gone then.
		_ = ss.conn.EventLoop().Execute(context.Background(), (*flusher)(ss))
	}
	return ok
}

// flusher is a session seen as the task that flushes its outbox.
type flusher session

// Run writes what waits in the outbox, on the session's loop.
func (f *flusher) Run(context.Context) error {
	ss := (*session)(f)
	l := ss.loop
	ss.mu.Lock()
	b := ss.box
	if b == nil || ss.closed {
		ss.mu.Unlock()
		return nil
	}
	// Swap buffers with the loop: the outbox keeps taking frames while
	// this one is written, and neither side allocates.
	out, replies, why, cause := b.buf, b.replies, b.why, b.cause
	b.buf, l.flushBuf = l.flushBuf[:0], nil
	b.replies, b.queued = 0, false
	if why == proto.ReasonNone && len(b.buf) == 0 {
		ss.box = nil
		if cap(b.buf) > maxBoxKeep {
			b.buf = nil
		}
		boxes.Put(b)
	}
	ss.mu.Unlock()
	defer func() {
		if cap(out) <= maxOutbound {
			l.flushBuf = out[:0]
		}
	}()
	if ss.bye {
		return nil // the goodbye was said: nothing follows it
	}
	s := l.s
	if len(out) > 0 {
		if _, err := ss.conn.Write(out); err != nil || ss.closed {
			return nil // gnet closed the connection; OnClose has run
		}
	}
	stalled := ss.inflight >= maxInflight
	ss.inflight -= replies
	switch {
	case why != proto.ReasonNone:
		s.closeNow(ss, why, cause)
	case ss.conn.OutboundBuffered() > maxOutbound:
		s.closeNow(ss, proto.ReasonSlowReader, 0)
	case replies > 0 && (stalled && ss.inflight < maxInflight || ss.inflight == 0 && s.draining.Load()):
		// It had stopped reading at maxInflight, or it waited for these
		// answers to say goodbye: serve what it sent meanwhile.
		s.serveNow(ss)
	}
	return nil
}

// closeNow writes an error frame naming why and closes the connection; on
// the session's loop, outside OnTraffic.
func (s *Server) closeNow(ss *session, why proto.Reason, cause proto.Cmd) {
	if s.goodbye(ss, why, cause) {
		_ = ss.conn.EventLoop().Close(ss.conn)
	}
}

// goodbye counts and marks ss closing by why and writes the error frame
// naming it; it reports whether the connection is still open (gnet did not
// close it), for the caller to close.
func (s *Server) goodbye(ss *session, why proto.Reason, cause proto.Cmd) bool {
	l := ss.loop
	if why != proto.ReasonShutdown && why != proto.ReasonReplaced {
		l.counters.errors.Add(1)
	}
	if why == proto.ReasonSlowReader {
		s.opts.Logger.Warn("closing a client that does not read", "user", ss.user)
	}
	ss.why, ss.bye = why, true
	l.errBuf = proto.AppendError(l.errBuf[:0], s.sec.Load(), why, cause)
	_, err := ss.conn.Write(l.errBuf)
	return err == nil && !ss.closed
}

// serveNow runs OnTraffic for ss from a task on its loop, as gnet's Wake
// would, but at once: frames already buffered are answered, and a
// draining connection gets its goodbye.
func (s *Server) serveNow(ss *session) {
	if ss.closed {
		return
	}
	if s.h.OnTraffic(ss.conn) == gnet.Close {
		_ = ss.conn.EventLoop().Close(ss.conn)
	}
}
