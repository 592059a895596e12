package server

import (
	"sync"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"hongbao/internal/proto"
)

// TestDurablePipelinedShakes: connections keep windows of shakes in flight
// while most get a packet (a durable grant each): every shake is answered.
func TestDurablePipelinedShakes(t *testing.T) {
	s := startLedgerServer(t, "", func(o *Options) { o.Budget = 1 << 30 })
	if _, err := s.StartCampaign(CampaignSpec{Count: 1 << 30, Rate: 100000, Min: 1, Max: 9}); err != nil {
		t.Fatal(err)
	}
	const conns, window, rounds = 8, 16, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for i := 0; i < conns; i++ {
		c := login(t, s, uint32(i+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				for j := 0; j < window; j++ {
					if err := c.SendShake(); err != nil {
						t.Error(err)
						return
					}
				}
				for j := 0; j < window; j++ {
					res, err := c.ReadShake()
					if err != nil {
						t.Errorf("round %d answer %d: %v", r, j, err)
						return
					}
					if res.Result == proto.ResultGot {
						mu.Lock()
						got++
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if got == 0 {
		t.Fatal("no shake got a packet")
	}
	audit(t, s)
}

// TestDurableFloodIsAnsweredInOrder: one connection sends 500 requests at
// once, most of them durable (repeated opens) mixed with pings: past the
// in-flight cap the server stops reading, then resumes, and every answer
// comes back in order.
func TestDurableFloodIsAnsweredInOrder(t *testing.T) {
	s := startLedgerServer(t, "", nil)
	fund(t, s, 1, 100)
	id := send(t, login(t, s, 1), 100, 1, 1, 2)
	c := login(t, s, 2)
	first := open(t, c, id)
	var b []byte
	const n = 500
	for i := 0; i < n; i++ {
		if i%5 == 4 {
			b = proto.AppendPing(b, proto.CmdPing, 1, uint32(i))
		} else {
			b = proto.AppendFrame(b, proto.CmdOpen, 1, id)
		}
	}
	if err := c.Send(b); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		f, err := c.Read()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if i%5 == 4 {
			if f.Cmd != proto.CmdPong || f.Field(0) != uint32(i) {
				t.Fatalf("answer %d: %#04x %d, want pong %d", i, uint16(f.Cmd), f.Field(0), i)
			}
		} else if f.Cmd != proto.CmdOpenResp || f.Field(1) != proto.ResultAlreadyOpened || f.Field(2) != first.Amount {
			t.Fatalf("answer %d: %#04x %d %d", i, uint16(f.Cmd), f.Field(1), f.Field(2))
		}
	}
}

// TestShakeHotPathAllocatesNothing: the answers that need no durability
// (none, overloaded) allocate nothing, with the ledger on.
func TestShakeHotPathAllocatesNothing(t *testing.T) {
	s := startLedgerServer(t, "", func(o *Options) { o.Budget = 1 })
	l := s.loops[0]
	ss := newSession(nil, l)
	ss.user, ss.set = 5, &s.sets[5%len(s.sets)]
	out := make([]byte, 0, 256)
	now := s.sec.Load()
	allocs := testing.AllocsPerRun(1000, func() {
		out = s.shake(ss, now, out[:0]) // the first is "none", the rest "overloaded"
	})
	if allocs != 0 {
		t.Fatalf("shake allocates %v per call", allocs)
	}
	if ss.inflight != 0 {
		t.Fatal("a none/overloaded answer went through the ledger")
	}
}

// memConn is the part of gnet.Conn that OnTraffic uses, over memory; any
// other method panics (nil embedded interface).
type memConn struct {
	gnet.Conn
	ctx any
	in  []byte
	out int
}

func (m *memConn) Context() any { return m.ctx }
func (m *memConn) Peek(int) ([]byte, error) {
	return m.in, nil
}
func (m *memConn) Discard(n int) (int, error) {
	if n <= 0 || n > len(m.in) {
		n = len(m.in)
	}
	m.in = m.in[n:]
	return n, nil
}
func (m *memConn) Write(p []byte) (int, error) { m.out += len(p); return len(p), nil }
func (m *memConn) OutboundBuffered() int       { return 0 }

// TestOnTrafficAllocatesNothing: the whole read path of immediate answers
// (split, serve, deadline bookkeeping, one write) allocates nothing, with
// a frame left incomplete at the end of the read as well.
func TestOnTrafficAllocatesNothing(t *testing.T) {
	s := startLedgerServer(t, "", func(o *Options) { o.Budget = 1 })
	l := s.loops[0]
	mc := &memConn{}
	ss := newSession(mc, l)
	mc.ctx = ss
	ss.user, ss.set = 5, &s.sets[5%len(s.sets)]
	l.wheel.file(ss, noDeadline)
	defer l.wheel.drop(ss) // no loop ever serves this session
	var frames []byte
	for range 16 {
		frames = proto.AppendShake(frames, now64(), 5)
	}
	frames = append(frames, proto.AppendShake(nil, now64(), 5)[:7]...)
	allocs := testing.AllocsPerRun(1000, func() {
		mc.in = frames
		if act := s.h.OnTraffic(mc); act != gnet.None || len(mc.in) != 7 {
			t.Fatalf("action %v, %d bytes left", act, len(mc.in))
		}
	})
	if allocs != 0 {
		t.Fatalf("OnTraffic allocates %v per call", allocs)
	}
	if ss.partial == 0 || ss.due == noDeadline || mc.out == 0 {
		t.Fatalf("partial %d due %d written %d: the incomplete frame's deadline was not noted", ss.partial, ss.due, mc.out)
	}
}
