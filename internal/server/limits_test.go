package server

import (
	"fmt"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

// sendResult sends one group packet and returns its result and packet id.
func sendResult(t testing.TB, c *client.Conn, total, shares uint32, key uint64, to ...uint32) (uint32, uint32) {
	t.Helper()
	r, err := c.SendPacket(total, shares, key, to)
	if err != nil {
		t.Fatal(err)
	}
	return r.Result, r.Packet
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) sec(s *Server) func() bool {
	want := uint64(c.Now().Unix())
	return func() bool { return s.sec.Load() == want }
}

// TestSendLimits: every limit on a send refuses with its result code,
// writes nothing, and lets the sender send again once it no longer holds:
// the live packets per sender and in all, and the rate budget.
func TestSendLimits(t *testing.T) {
	cases := []struct {
		name string
		opts func(*Options)
		// sends by sender (user 1 or 2) with their number of recipients
		sends []struct{ from, n uint32 }
		want  []uint32 // each send's result
	}{
		{"live per sender", func(o *Options) { o.MaxLivePerSender = 2 },
			[]struct{ from, n uint32 }{{1, 1}, {1, 1}, {1, 1}, {2, 1}},
			[]uint32{proto.ResultOK, proto.ResultOK, proto.ResultTooManyPackets, proto.ResultOK}},
		{"live in all", func(o *Options) { o.MaxLivePackets = 3 },
			[]struct{ from, n uint32 }{{1, 1}, {2, 1}, {1, 1}, {2, 1}, {1, 1}},
			[]uint32{proto.ResultOK, proto.ResultOK, proto.ResultOK, proto.ResultTooManyPackets, proto.ResultTooManyPackets}},
		{"recipients per second", func(o *Options) { o.MaxRecipients = 4; o.MaxSenderRate = 10 },
			[]struct{ from, n uint32 }{{1, 4}, {1, 4}, {1, 4}, {1, 2}, {2, 4}, {1, 1}},
			[]uint32{proto.ResultOK, proto.ResultOK, proto.ResultRateLimited, proto.ResultOK, proto.ResultOK, proto.ResultRateLimited}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			s := startLedgerServer(t, "", func(o *Options) { o.Now = clk.Now; o.PacketTTL = time.Minute; tc.opts(o) })
			conns := map[uint32]*client.Conn{1: login(t, s, 1), 2: login(t, s, 2)}
			to := []uint32{10, 11, 12, 13}
			var accepted uint64
			key := uint64(0)
			for i, sd := range tc.sends {
				key++
				r, id := sendResult(t, conns[sd.from], 100, 1, key, to[:sd.n]...)
				if r != tc.want[i] {
					t.Fatalf("send %d (%+v): result %d, want %d", i, sd, r, tc.want[i])
				}
				if r != proto.ResultOK && id != 0 {
					t.Fatalf("refused send %d names packet %d", i, id)
				}
				if r == proto.ResultOK {
					accepted++
				}
			}
			if err := s.led.Sync(); err != nil {
				t.Fatal(err)
			}
			if n := s.led.Stats().Records; n != accepted {
				t.Fatalf("%d records for %d accepted sends: a refused send wrote", n, accepted)
			}
			// A repeat of an accepted send answers its packet, limits or not.
			if r, id := sendResult(t, conns[tc.sends[0].from], 100, 1, 1, to[:tc.sends[0].n]...); r != proto.ResultOK || id == 0 {
				t.Fatalf("repeat of the first send: result %d packet %d", r, id)
			}
			// The next second (rate), or once the packets expire (live): sends again.
			clk.Add(time.Minute + time.Second)
			wait.For(t, 5*time.Second, "the server's clock", clk.sec(s))
			wait.For(t, 5*time.Second, "the packets' expiry", func() bool { return s.money.GroupStats().Live == 0 })
			key++
			if r, _ := sendResult(t, conns[1], 100, 1, key, to[:1]...); r != proto.ResultOK {
				t.Fatalf("after the limit lifted: result %d", r)
			}
			st := s.Stats().Groups
			if st.TooMany+st.RateLimited != uint64(len(tc.sends))-accepted {
				t.Fatalf("refusals counted %d + %d, want %d", st.TooMany, st.RateLimited, uint64(len(tc.sends))-accepted)
			}
			audit(t, s)
		})
	}
}

// TestIdempotencyKeyLivesWithThePacket: a repeated key answers the packet
// while it lives; once it expired the key is gone with it, and the same key
// makes a new packet.
func TestIdempotencyKeyLivesWithThePacket(t *testing.T) {
	clk := newFakeClock()
	s := startLedgerServer(t, "", func(o *Options) { o.Now = clk.Now; o.PacketTTL = time.Minute })
	c := login(t, s, 1)
	id := send(t, c, 100, 1, 42, 2)
	if again := send(t, c, 100, 1, 42, 2); again != id {
		t.Fatalf("repeat while live: packet %d, want %d", again, id)
	}
	clk.Add(time.Minute)
	wait.For(t, 5*time.Second, "the expiry", func() bool { return s.money.GroupStats().Live == 0 })
	if n := idemKeys(s); n != 0 {
		t.Fatalf("%d idempotency keys kept after the packet expired", n)
	}
	if again := send(t, c, 100, 1, 42, 2); again == id {
		t.Fatalf("the key of an expired packet still answers packet %d", id)
	}
	audit(t, s)
}

func idemKeys(s *Server) int { return s.money.Holdings().Keys }

// liveState counts what the group engine holds: packets in the maps and
// queues (and the queues' arrays), idempotency keys, per-sender live and
// rate entries, and the live counter.
type liveState struct {
	packets, fifo, fifoCap, keys, senders, live int
}

func stateOf(s *Server) liveState {
	h := s.money.Holdings()
	return liveState{packets: h.Packets, fifo: h.Queued, fifoCap: h.QueueCap, keys: h.Keys, senders: h.Senders, live: int(h.Live)}
}

// heapAfterGC is the live heap of this process (server and test clients).
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestLiveStateDrainsAfterExpiry: three rounds of 24,000 group packets
// (clients and the generator) with a two-second TTL. After each round
// expires nothing is left: no packet in the maps or queues, no idempotency
// key, no per-sender count, and the heap is back near where it started (the
// maps and queues give back the room of a peak).
func TestLiveStateDrainsAfterExpiry(t *testing.T) {
	const ttl = 2 * time.Second
	s := startServer(t, func(o *Options) {
		o.PacketTTL = ttl
		o.MaxLivePerSender = 1 << 20
		o.MaxSenderRate = 1 << 30
	})
	senders := []*client.Conn{login(t, s, 1), login(t, s, 2), login(t, s, 3), login(t, s, 4)}
	opener := login(t, s, 1000)
	base := heapAfterGC()
	var firstAfter uint64
	const perSender = 5000
	for round := range 3 {
		t0 := time.Now()
		gen, err := s.StartGenerator(GeneratorSpec{Count: 4000, Rate: 1_000_000, From: 5000, To: 6000})
		if err != nil {
			t.Fatal(err)
		}
		wait.For(t, 10*time.Second, "the generator", func() bool {
			for _, gi := range s.Generators() {
				if gi.ID == gen.ID {
					return gi.Done
				}
			}
			return false
		})
		var sent uint64
		for i, c := range senders {
			var b []byte
			for k := range perSender {
				to := []uint32{1000, 1001 + uint32(k%50), 2000 + uint32(k%7)}
				b = proto.AppendSend(b, 1, 30, 3, uint64(round*perSender+k+1), to)
			}
			if err := c.Send(b); err != nil {
				t.Fatal(err)
			}
			for n := 0; n < perSender; { // refunds of the last round come too
				f, err := c.Read()
				if err != nil {
					t.Fatalf("sender %d: %v", i, err)
				}
				if f.Cmd != proto.CmdSendResp {
					continue
				}
				if f.Field(0) != proto.ResultOK {
					t.Fatalf("send refused: %d", f.Field(0))
				}
				n++
				sent++
			}
		}
		took := time.Since(t0)
		// User 1000 is a recipient of every client packet: it opens a few.
		for k := range 200 {
			f, err := opener.Read()
			if err != nil {
				t.Fatal(err)
			}
			if f.Cmd == proto.CmdPush && k%2 == 0 {
				if err := opener.SendOpen(f.Field(0)); err != nil {
					t.Fatal(err)
				}
			}
		}
		peak := stateOf(s)
		peakHeap := heapAfterGC()
		if peak.packets != 4*perSender+4000 || peak.keys != peak.packets || peak.live != peak.packets {
			t.Fatalf("round %d at its peak after %v: %+v", round, took, peak)
		}
		// Expiry drops a packet from its shard first and its key and live
		// counts just after: wait for all of it, then report what stayed.
		drained := func(st liveState) bool {
			return st.packets|st.fifo|st.keys|st.senders|st.live == 0 && st.fifoCap <= 64*64
		}
		deadline := time.Now().Add(3 * ttl)
		left := stateOf(s)
		for !drained(left) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			left = stateOf(s)
		}
		if !drained(left) {
			t.Fatalf("round %d: left after expiry %+v (peak %+v)", round, left, peak)
		}
		// Drain the opener's pushes and answers so its socket does not hold the server's.
		opener.Timeout = 200 * time.Millisecond
		for {
			if _, err := opener.Read(); err != nil {
				break
			}
		}
		opener.Timeout = 5 * time.Second
		after := heapAfterGC()
		grown := int64(peakHeap) - int64(base)
		t.Logf("round %d: %d client packets + generator in %v, peak %+v, heap %d -> %d -> %d", round, sent, took, peak, base, peakHeap, after)
		if int64(after)-int64(base) > grown/4 {
			t.Fatalf("round %d: heap %d B after expiry, %d B before the first round (peak %d B): the room of the peak is kept", round, after, base, peakHeap)
		}
		// Each round ends where the first ended: nothing builds up (an
		// idempotency key kept per packet would add about 1 MB a round).
		if round == 0 {
			firstAfter = after
		} else if after > firstAfter+256<<10 {
			t.Fatalf("round %d: heap %d B after expiry, %d B after the first round", round, after, firstAfter)
		}
	}
}

// TestCampaignLimits: a campaign over the count or rate limit is refused
// with 400, one over the number running with 429; the issuer keeps the
// waiting packets at MaxWaiting; a stop releases the waiting packets, and
// the ledger and its audit agree with what was granted.
func TestCampaignLimits(t *testing.T) {
	dir := t.TempDir()
	s := startLedgerServer(t, dir, func(o *Options) {
		o.MaxCampaigns = 2
		o.MaxCampaignRate = 20000
		o.MaxCampaignCount = 1_000_000
		o.MaxWaiting = 50
		o.Sets = 1
	})
	var e struct{ Error string }
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"count":4294967295,"rate":1000000000,"min":1,"max":2}`, http.StatusBadRequest},
		{`{"count":1000001,"rate":10,"min":1,"max":2}`, http.StatusBadRequest},
		{`{"count":100,"rate":20001,"min":1,"max":2}`, http.StatusBadRequest},
	} {
		if code := httpJSON(t, s, "POST", "/api/campaigns", tc.body, &e); code != tc.code || e.Error == "" {
			t.Fatalf("POST %s: %d %q, want %d", tc.body, code, e.Error, tc.code)
		}
	}
	var c1, c2 CampaignInfo
	if code := httpJSON(t, s, "POST", "/api/campaigns", `{"count":1000000,"rate":20000,"budget":5000000}`, &c1); code != http.StatusCreated {
		t.Fatalf("first campaign: %d", code)
	}
	if code := httpJSON(t, s, "POST", "/api/campaigns", `{"count":10,"rate":1,"min":1,"max":1}`, &c2); code != http.StatusCreated {
		t.Fatalf("second campaign: %d", code)
	}
	if code := httpJSON(t, s, "POST", "/api/campaigns", `{"count":10,"rate":1,"min":1,"max":1}`, &e); code != http.StatusTooManyRequests {
		t.Fatalf("third campaign: %d %q, want 429", code, e.Error)
	}
	if code := httpJSON(t, s, "GET", "/yaohongbao?qps=5&sum=10", "", &e); code != http.StatusTooManyRequests {
		t.Fatalf("/yaohongbao as a third campaign: %d %q, want 429", code, e.Error)
	}
	// 20,000/s would issue a thousand in 50 ms: the issuer stops at 50 waiting.
	wait.For(t, 5*time.Second, "50 waiting", func() bool { return s.Stats().Waiting == 50 })
	time.Sleep(200 * time.Millisecond)
	if w := s.Stats().Waiting; w != 50 {
		t.Fatalf("%d waiting, the limit is 50", w)
	}
	shaker := login(t, s, 7)
	var got uint64
	for range 20 {
		r, err := shaker.Shake()
		if err != nil {
			t.Fatal(err)
		}
		if r.Result == proto.ResultGot {
			got += uint64(r.Amount)
		}
	}
	wait.For(t, 5*time.Second, "topped up to 50", func() bool { return s.Stats().Waiting == 50 })
	var stopped CampaignInfo
	if code := httpJSON(t, s, "POST", fmt.Sprintf("/api/campaigns/%d/stop", c1.ID), "", &stopped); code != http.StatusOK {
		t.Fatalf("stop: %d", code)
	}
	if err := s.led.Sync(); err != nil {
		t.Fatal(err)
	}
	c2now := s.Campaigns()[1]
	waiting := c2now.Issued - uint32(c2now.Taken)
	if stopped.Issued != uint32(stopped.Taken)+stopped.Released || s.Stats().Waiting != int(waiting) || stopped.Released == 0 {
		t.Fatalf("stopped %+v: issued != taken + released, or %d waiting (campaign 2: %d)", stopped, s.Stats().Waiting, waiting)
	}
	if stopped.AmountIssued != stopped.AmountTaken+stopped.AmountReleased {
		t.Fatalf("stopped %+v: amount issued != taken + released", stopped)
	}
	// Now a third may start.
	var c3 CampaignInfo
	if code := httpJSON(t, s, "POST", "/api/campaigns", `{"count":10,"rate":1,"min":1,"max":1}`, &c3); code != http.StatusCreated {
		t.Fatalf("campaign after a stop: %d", code)
	}
	rep := audit(t, s)
	if rep.Granted != got+s.Campaigns()[1].AmountTaken {
		t.Fatalf("audit granted %d, shakes got %d", rep.Granted, got)
	}
	// After a restart the stopped campaign is stopped, with what was granted.
	stopServer(t, s)
	s2 := startLedgerServer(t, dir, nil)
	ci := s2.Campaigns()[0]
	if ci.State != StateStopped || ci.Taken != stopped.Taken || ci.AmountTaken != stopped.AmountTaken {
		t.Fatalf("after restart: %+v, stopped as %+v", ci, stopped)
	}
	audit(t, s2)
}

// TestGeneratorLimits: a generator over the rate or count limit is refused
// with 400, one over the number running with 429.
func TestGeneratorLimits(t *testing.T) {
	s := startServer(t, func(o *Options) { o.MaxCampaigns = 1; o.MaxCampaignRate = 100; o.MaxCampaignCount = 1000 })
	var e struct{ Error string }
	if code := httpJSON(t, s, "GET", "/fahongbao?qps=101&sum=10&min=1&max=10", "", &e); code != http.StatusBadRequest {
		t.Fatalf("rate over the limit: %d %q", code, e.Error)
	}
	if code := httpJSON(t, s, "POST", "/api/generators", `{"count":1001,"rate":1,"from":1,"to":10}`, &e); code != http.StatusBadRequest {
		t.Fatalf("count over the limit: %d %q", code, e.Error)
	}
	var g GeneratorInfo
	if code := httpJSON(t, s, "POST", "/api/generators", `{"count":1000,"rate":1,"from":1,"to":10}`, &g); code != http.StatusCreated {
		t.Fatalf("generator: %d", code)
	}
	if code := httpJSON(t, s, "GET", "/fahongbao?qps=1&sum=10&min=1&max=10", "", &e); code != http.StatusTooManyRequests {
		t.Fatalf("second generator: %d %q, want 429", code, e.Error)
	}
}

// TestRestartRebuildsOnlyLivePackets: packets that expired (refunded, or
// every share opened) before a restart are not rebuilt, nor their
// idempotency keys; opens of them answer expired; the live ones are whole.
func TestRestartRebuildsOnlyLivePackets(t *testing.T) {
	dir := t.TempDir()
	short := func(o *Options) { o.PacketTTL = time.Second }
	s := startLedgerServer(t, dir, short)
	c := login(t, s, 1)
	var old []uint32
	for k := range 20 {
		old = append(old, send(t, c, 10, 1, uint64(k+1), 2))
	}
	r2 := login(t, s, 2)
	for _, id := range old[:10] { // every share opened: no refund
		if r := open(t, r2, id); r.Result != proto.ResultOK {
			t.Fatalf("open %d: %+v", id, r)
		}
	}
	wait.For(t, 5*time.Second, "the expiry", func() bool { return s.money.GroupStats().Live == 0 })
	stopServer(t, s)
	s = startLedgerServer(t, dir, nil) // 24 h
	c = login(t, s, 1)
	live := send(t, c, 10, 2, 1, 2, 3) // key 1 again: a new packet
	if live == old[0] {
		t.Fatal("the expired packet's key still answers it")
	}
	a := open(t, login(t, s, 2), live)
	stopServer(t, s)

	s = startLedgerServer(t, dir, nil)
	if ls := stateOf(s); ls.packets != 1 || ls.keys != 1 || ls.live != 1 || ls.senders != 1 {
		t.Fatalf("rebuilt %+v, want the one live packet", ls)
	}
	r2 = login(t, s, 2)
	if r := open(t, r2, live); r.Result != proto.ResultAlreadyOpened || r.Amount != a.Amount {
		t.Fatalf("live packet after restart: %+v, want already opened with %d", r, a.Amount)
	}
	for _, id := range []uint32{old[0], old[15]} {
		if r := open(t, r2, id); r.Result != proto.ResultExpired {
			t.Fatalf("expired packet %d after restart: %+v", id, r)
		}
	}
	if r := open(t, r2, live+100); r.Result != proto.ResultUnknownPacket {
		t.Fatalf("never-made packet after restart: %+v", r)
	}
	if r := open(t, login(t, s, 3), live); r.Result != proto.ResultOK {
		t.Fatalf("second share after restart: %+v", r)
	}
	rep := audit(t, s)
	if rep.Packets != 21 {
		t.Fatalf("audit counts %d packets, want 21", rep.Packets)
	}
}
