package server

import (
	"hongbao/internal/ledger"
	"hongbao/internal/money"
	"hongbao/internal/proto"
)

// sink delivers what the money engine tells users outside an answer to
// their sessions, if they are logged in here.
type sink struct{ s *Server }

// Push tells every online recipient of p about it: the classic 0x0004
// frame (three-recipient form) to classic sessions, CmdPush to others.
func (k sink) Push(p money.Push, to []uint32) int {
	s := k.s
	now := s.sec.Load()
	u3 := p.First3
	var classic, ours []byte
	pushed := 0
	for _, u := range to {
		ss := s.setOf(u).session(u)
		if ss == nil {
			continue
		}
		var f []byte
		if ss.classic {
			if classic == nil {
				classic = proto.AppendFrame(nil, proto.CmdClassicPush, now, p.Packet, p.Total, p.Shares, u3[0], u3[1], u3[2])
			}
			f = classic
		} else {
			if ours == nil {
				ours = proto.AppendFrame(nil, proto.CmdPush, now, p.Packet, p.Sender, p.Total, p.Shares)
			}
			f = ours
		}
		// A push is a hint: one that is not queued (the recipient went
		// away, or does not read and is being closed) leaves the packet
		// listed and openable.
		if ss.post(f, false) {
			pushed++
		}
	}
	return pushed
}

// Refund tells sender that the remainder of an expired packet went back
// to them; classic sessions have no frame for it.
func (k sink) Refund(sender, packet, amount uint32) {
	s := k.s
	ss := s.setOf(sender).session(sender)
	if ss != nil && !ss.classic {
		ss.post(proto.AppendFrame(nil, proto.CmdRefund, s.sec.Load(), packet, amount), false)
	}
}

// durableReply is an answer frame sent once its record is durable; on a
// ledger failure the field at failOff is set to failValue first.
type durableReply struct {
	ss        *session
	frame     []byte
	failOff   int
	failValue uint32
}

func (d *durableReply) Durable(_ *ledger.Record, err error) {
	if err != nil && d.failOff >= 0 {
		d.ss.loop.counters.errors.Add(1)
		putU32(d.frame[d.failOff:], d.failValue)
	}
	// Not queued only when the connection is closed or closing (then the
	// client learns the outcome by asking again: the record is durable).
	d.ss.post(d.frame, true)
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
