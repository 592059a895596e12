package load

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"

	"hongbao/internal/proto"
	"hongbao/internal/schedule"
)

// fakeConn is the part of gnet.Conn the handler uses, over an in-memory
// inbound buffer; any other method panics (nil embedded interface).
type fakeConn struct {
	gnet.Conn
	ctx  any
	el   gnet.EventLoop
	in   []byte
	out  []byte
	keep bool // keep written bytes in out
}

func (f *fakeConn) Context() any              { return f.ctx }
func (f *fakeConn) EventLoop() gnet.EventLoop { return f.el }
func (f *fakeConn) Peek(n int) ([]byte, error) {
	if n <= 0 {
		return f.in, nil
	}
	if n > len(f.in) {
		return nil, io.ErrShortBuffer
	}
	return f.in[:n], nil
}
func (f *fakeConn) Discard(n int) (int, error) {
	n = min(n, len(f.in))
	f.in = f.in[n:]
	return n, nil
}
func (f *fakeConn) Write(p []byte) (int, error) {
	if f.keep {
		f.out = append(f.out, p...)
	}
	return len(p), nil
}

// fakeLoop runs submitted work at once, on the caller's goroutine.
type fakeLoop struct{ gnet.EventLoop }

func (*fakeLoop) Execute(ctx context.Context, r gnet.Runnable) error { return r.Run(ctx) }

// loggedInUser sets up a Client whose user 1 is logged in on a fake loop.
func loggedInUser(t testing.TB, users int) (*Client, *handler, *fakeConn, *user) {
	c, err := New(Options{Addr: "127.0.0.1:1", Total: users, QPS: users, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	c.cfg.epochNs = time.Now().UnixNano()
	h := &handler{c: c}
	fl := &fakeLoop{}
	var fc *fakeConn
	for i := range c.users {
		u := &c.users[i]
		f := &fakeConn{ctx: u, el: fl}
		if _, act := h.OnOpen(f); act != gnet.None {
			t.Fatal("OnOpen refused")
		}
		f.in = proto.AppendLoginResp(nil, 0, u.id, proto.ResultOK)
		if act := h.OnTraffic(f); act != gnet.None || phaseOf(u.state.Load()) != phOnline {
			t.Fatalf("login: action %v state %x", act, u.state.Load())
		}
		if i == 0 {
			fc = f
		}
	}
	return c, h, fc, &c.users[0]
}

func TestUserIsSmall(t *testing.T) {
	if sz := unsafe.Sizeof(user{}); sz > 128 {
		t.Fatalf("user is %d bytes; keep it small, there is one per connection", sz)
	}
}

func TestRing(t *testing.T) {
	var u user
	for round := range 3 {
		for i := range ringSize {
			u.push(uint32(round*100 + i))
		}
		if u.n != ringSize {
			t.Fatalf("n=%d", u.n)
		}
		for i := range ringSize {
			if got := u.pop(); got != uint32(round*100+i) {
				t.Fatalf("round %d: pop %d = %d", round, i, got)
			}
		}
		u.push(1) // shift the head so the next round wraps
		u.pop()
	}
}

// The receive path decodes answers in place and records latencies without
// allocating.
func TestOnTrafficDoesNotAllocate(t *testing.T) {
	c, h, fc, u := loggedInUser(t, 1)
	var frames []byte
	for range ringSize {
		frames = proto.AppendShakeResp(frames, 0, u.id, proto.ResultGot, 1, 3)
	}
	frames = proto.AppendPing(frames, proto.CmdPing, 0, 9)
	allocs := testing.AllocsPerRun(200, func() {
		for range ringSize {
			u.push(0)
		}
		fc.in = frames
		if h.OnTraffic(fc) != gnet.None || len(fc.in) != 0 {
			t.Fatal("frames not consumed")
		}
	})
	if allocs != 0 {
		t.Errorf("OnTraffic allocates %.1f times per call", allocs)
	}
	tot := c.totals()
	if tot.Answered != 201*ringSize || tot.Got != tot.Answered || tot.Amount != 3*tot.Got || tot.Errors != 0 {
		t.Errorf("totals %+v", tot)
	}
}

// A frame split across reads waits for the rest.
func TestOnTrafficPartialFrame(t *testing.T) {
	c, h, fc, u := loggedInUser(t, 1)
	u.push(0)
	f := proto.AppendShakeResp(nil, 0, u.id, proto.ResultNone, 0, 0)
	fc.in = f[:10]
	h.OnTraffic(fc)
	if len(fc.in) != 10 || c.totals().Answered != 0 {
		t.Fatal("partial frame consumed")
	}
	fc.in = f
	h.OnTraffic(fc)
	if len(fc.in) != 0 || c.totals().None != 1 {
		t.Fatal("completed frame not consumed")
	}
}

func TestOnTrafficUnknownAndBad(t *testing.T) {
	_, h, fc, _ := loggedInUser(t, 1)
	// Unknown command >= 0x0100 with a valid length: skipped.
	fc.in = proto.AppendFrame(nil, 0x01f0, 0, 1, 2)
	if act := h.OnTraffic(fc); act != gnet.None || len(fc.in) != 0 {
		t.Fatalf("unknown new command: action %v", act)
	}
	// A client-to-server command from the server: protocol error.
	fc.in = proto.AppendShake(nil, 0, 1)
	if act := h.OnTraffic(fc); act != gnet.Close {
		t.Fatalf("shake from server: action %v", act)
	}
}

// An error frame: the reason is recorded and the user stops sending; the
// client waits for the server to close, and counts (as errors) any frame
// the server sends after the error frame.
func TestOnTrafficErrorFrame(t *testing.T) {
	c, h, fc, u := loggedInUser(t, 1)
	fc.in = proto.AppendError(nil, 0, proto.ReasonReplaced, proto.CmdLogin)
	fc.in = proto.AppendShakeResp(fc.in, 0, u.id, proto.ResultNone, 0, 0)
	if act := h.OnTraffic(fc); act != gnet.None || len(fc.in) != 0 {
		t.Fatalf("error frame: action %v, %d bytes left", act, len(fc.in))
	}
	fc.in = proto.AppendError(nil, 0, proto.ReasonShutdown, 0)
	h.OnTraffic(fc)
	if got := c.reasonsCopy(); got[proto.ReasonReplaced.String()] != 1 || len(got) != 1 {
		t.Fatalf("reasons %v", got)
	}
	tot := c.totals()
	if tot.Errors != 3 || tot.AfterError != 2 || tot.None != 0 {
		t.Fatalf("errors %d after_error %d none %d", tot.Errors, tot.AfterError, tot.None)
	}
	if phaseOf(u.state.Load()) == phOnline || c.conns() != 0 {
		t.Fatalf("user still online (state %x, conns %d): the scheduler would send on a closing connection", u.state.Load(), c.conns())
	}
	h.OnClose(fc, nil)
	if u.bye || c.loopAt(0).byes != 0 || c.conns() != 0 {
		t.Fatalf("after close: bye %v byes %d conns %d", u.bye, c.loopAt(0).byes, c.conns())
	}
}

// The sweep pings a user silent for PingIdle and no other.
func TestSweepPingsSilentUsers(t *testing.T) {
	c, _, fc, u := loggedInUser(t, 2)
	c.cfg.pingIdle = 10
	l := c.loopAt(0)
	fc.keep = true
	now := c.epochSec(time.Now())
	u.lastTx = now - 10 // silent for PingIdle
	other := &c.users[1]
	other.lastTx = now - 9
	l.pingScan = now - 3 // a scan is due every PingIdle/4
	l.sweep.Run(context.Background())
	h, p, err := proto.Parse(fc.out)
	if err != nil || h.Cmd != proto.CmdPing || proto.U32(p, 0) != u.id || len(fc.out) != int(h.Len) {
		t.Fatalf("wrote %x (%v), want one ping of user %d", fc.out, err, u.id)
	}
	if u.lastTx != now || other.lastTx != now-9 || c.totals().Pings != 1 {
		t.Fatalf("lastTx %d/%d pings %d", u.lastTx, other.lastTx, c.totals().Pings)
	}
	// No scan before another quarter of PingIdle.
	fc.out = nil
	u.lastTx = now - 20
	l.sweep.Run(context.Background())
	if len(fc.out) != 0 {
		t.Fatalf("pinged again before the next scan: %x", fc.out)
	}
}

// The send path writes one frame per due request on the loop and does not
// allocate.
func TestBatchSendDoesNotAllocate(t *testing.T) {
	c, _, _, _ := loggedInUser(t, 8)
	l := c.loopAt(0)
	items := make([]item, 8)
	for i := range items {
		items[i] = item{idx: uint32(i), at: 1}
	}
	allocs := testing.AllocsPerRun(100, func() {
		l.send(items)
		for i := range c.users {
			c.users[i].reset()
		}
	})
	if allocs != 0 {
		t.Errorf("send allocates %.1f times per batch", allocs)
	}
	if got := c.totals().Sent; got != 101*8 {
		t.Errorf("sent %d", got)
	}
}

// A full scheduler tick (enumerate, group by loop, hand over, send) does
// not allocate once batches are recycled.
func TestSchedulerTickDoesNotAllocate(t *testing.T) {
	c, _, _, _ := loggedInUser(t, 1000)
	s := scheduler{c: c, ctx: context.Background()}
	sec := time.Now().Unix()
	j := 0
	allocs := testing.AllocsPerRun(200, func() {
		s.emit(sec, 1000, j, j+4)
		s.flush(0)
		for i := range c.users {
			c.users[i].reset()
		}
		j = (j + 4) % 996
	})
	if allocs != 0 {
		t.Errorf("a tick allocates %.1f times", allocs)
	}
	if c.totals().Sent != 201*4 {
		t.Errorf("sent %d", c.totals().Sent)
	}
}

// Offline users' slots are skipped, not sent.
func TestSchedulerSkipsOffline(t *testing.T) {
	c, h, fc, u := loggedInUser(t, 10)
	h.OnClose(fc, nil)
	if phaseOf(u.state.Load()) != phOffline {
		t.Fatal("user still online after OnClose")
	}
	s := scheduler{c: c, ctx: context.Background()}
	s.emit(1_700_000_000, 10, 0, 10)
	s.flush(0)
	tot := c.totals()
	if tot.Sent != 9 || tot.SkippedOffline != 1 || tot.Disconnects != 1 {
		t.Errorf("sent %d skipped %d disconnects %d", tot.Sent, tot.SkippedOffline, tot.Disconnects)
	}
}

// Requests older than Timeout are expired by the sweep; their answers then
// count as late, in FIFO order.
func TestSweepExpires(t *testing.T) {
	c, h, fc, u := loggedInUser(t, 1)
	c.cfg.timeout = 100 * time.Millisecond
	l := c.loopAt(0)
	nowUS := uint32((time.Now().UnixNano() - c.cfg.epochNs) / 1000)
	u.push(nowUS - 500_000) // 0.5 s old: expired
	u.push(nowUS)           // fresh
	l.inflight.Add(2)
	l.sweep.Run(context.Background())
	if u.n != 1 || u.late != 1 || l.timeouts.Load() != 1 || l.inflight.Load() != 1 {
		t.Fatalf("n %d late %d timeouts %d inflight %d", u.n, u.late, l.timeouts.Load(), l.inflight.Load())
	}
	fc.in = proto.AppendShakeResp(nil, 0, u.id, proto.ResultNone, 0, 0)
	fc.in = proto.AppendShakeResp(fc.in, 0, u.id, proto.ResultNone, 0, 0)
	h.OnTraffic(fc)
	tot := c.totals()
	if tot.Late != 1 || tot.Answered != 1 || u.n != 0 || u.late != 0 || c.inFlight() != 0 {
		t.Fatalf("late %d answered %d", tot.Late, tot.Answered)
	}
}

func TestRingOverflowCountsTimeout(t *testing.T) {
	c, _, _, u := loggedInUser(t, 1)
	l := c.loopAt(0)
	items := []item{{idx: 0, at: 1}}
	for range ringSize + 3 {
		l.send(items)
	}
	if u.n != ringSize || u.late != 3 || l.timeouts.Load() != 3 || l.inflight.Load() != ringSize {
		t.Fatalf("n %d late %d timeouts %d inflight %d", u.n, u.late, l.timeouts.Load(), l.inflight.Load())
	}
}

func TestLoginFrames(t *testing.T) {
	// The classic login is the bare user id; the token login verifies.
	for _, classic := range []bool{true, false} {
		o := Options{Total: 5, Classic: classic, Duration: 100 * time.Millisecond}
		if !classic {
			o.Secret = testSecret
		}
		srv := startServer(t, func(s *fakeServer) { s.secret = testSecret })
		o.Addr = srv.addr()
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := c.Run(ctx)
		cancel()
		if err != nil || s.Connected != 5 {
			t.Fatalf("classic=%v: %v connected %d", classic, err, s.Connected)
		}
		srv.mu.Lock()
		want := proto.CmdTokenLogin
		if classic {
			want = proto.CmdLogin
		}
		if srv.loginCmds[want] != 5 || len(srv.loginCmds) != 1 {
			t.Errorf("classic=%v: login commands %v", classic, srv.loginCmds)
		}
		srv.mu.Unlock()
	}
}

func TestSources(t *testing.T) {
	got := loopbackSources(300)
	if len(got) != 300 || got[0].String() != "127.0.0.1" || got[253].String() != "127.0.0.254" ||
		got[254].String() != "127.0.1.1" {
		t.Fatalf("sources %v ... %v", got[:2], got[250:256])
	}
	lo, hi := portRange()
	per := int(float64(hi-lo+1) * portShare)
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7000}
	if s := autoSources(per, loop); len(s) != 1 {
		t.Errorf("%d conns: %d sources", per, len(s))
	}
	if s := autoSources(per+1, loop); len(s) != 2 || s[1] != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("%d conns: sources %v", per+1, s)
	}
	if s := autoSources(10, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 7000}); s != nil {
		t.Errorf("remote server: sources %v, want none", s)
	}
}

// Connections bound to a second loopback source address work (with
// IP_BIND_ADDRESS_NO_PORT set before bind).
func TestExplicitSources(t *testing.T) {
	srv := startServer(t, nil)
	c := newClient(t, Options{Addr: srv.addr(), Total: 4, QPS: 4, Duration: 200 * time.Millisecond,
		Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}})
	s := run(t, c, nil)
	if s.Connected != 4 || s.Errors != 0 {
		t.Fatalf("connected %d errors %d", s.Connected, s.Errors)
	}
}

func TestRetryQueueOrder(t *testing.T) {
	var q retryQueue
	q.wake = make(chan struct{}, 1)
	us := make([]user, 3)
	q.push(30, &us[2])
	q.push(10, &us[0])
	q.push(20, &us[1])
	if u, due := q.pop(5); u != nil || due != 10 {
		t.Fatalf("pop before due: %v %d", u, due)
	}
	for i := range us {
		if u, _ := q.pop(100); u != &us[i] {
			t.Fatalf("pop %d: wrong user", i)
		}
	}
	if u, due := q.pop(100); u != nil || due != 0 {
		t.Fatal("empty queue returned something")
	}
}

func TestPacer(t *testing.T) {
	var p pacer
	p.init(200) // 5 ms apart
	ctx := context.Background()
	start := time.Now()
	for range 21 {
		if !p.wait(ctx) {
			t.Fatal("wait failed")
		}
		p.took()
	}
	if el := time.Since(start); el < 90*time.Millisecond || el > 400*time.Millisecond {
		t.Fatalf("21 events at 200/s took %v, want about 100ms", el)
	}
}

// BenchmarkOnTraffic decodes 16 shake answers in one read and records
// their latencies.
func BenchmarkOnTraffic(b *testing.B) {
	_, h, fc, u := loggedInUser(b, 1)
	var frames []byte
	for range ringSize {
		frames = proto.AppendShakeResp(frames, 0, u.id, proto.ResultNone, 0, 0)
	}
	b.ReportAllocs()
	for b.Loop() {
		for range ringSize {
			u.push(0)
		}
		fc.in = frames
		h.OnTraffic(fc)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ringSize), "ns/answer")
}

// BenchmarkTick is one scheduler tick at 20,000 requests/s over 10,000
// users: 20 sends enumerated, batched, handed to a (fake, synchronous) loop
// and written.
func BenchmarkTick(b *testing.B) {
	c, _, _, _ := loggedInUser(b, 10000)
	s := scheduler{c: c, ctx: context.Background()}
	sec := time.Now().Unix()
	const q = 20000
	b.ReportAllocs()
	ms := 0
	for b.Loop() {
		j0 := ms * q / 1000
		s.emit(sec, q, j0, j0+q/1000)
		s.flush(0)
		ms = (ms + 1) % 1000
	}
}

func TestStateWord(t *testing.T) {
	var u user
	u.setFlag(flEver | flTried)
	a1 := u.startAttempt()
	u.setPhase(phOnline, 300)
	st := u.state.Load()
	if phaseOf(st) != phOnline || loopOf(st) != 300 || st&(flEver|flTried) != flEver|flTried || st&attemptMask != a1 {
		t.Fatalf("state %x", st)
	}
	a2 := u.startAttempt()
	st = u.state.Load()
	if a2 == a1 || phaseOf(st) != phDialing || loopOf(st) != 0 || st&(flEver|flTried) != flEver|flTried {
		t.Fatalf("new attempt: state %x", st)
	}
	for range 5000 { // the attempt number wraps inside its bits
		u.startAttempt()
	}
	if st := u.state.Load(); st&(flEver|flTried) != flEver|flTried || loopOf(st) != 0 {
		t.Fatalf("after wrap: state %x", st)
	}
}

// TestPacing checks the sender's automatic pacing: the tick grows as this
// process's share of the rate shrinks (1-8 ms, 100 ms idle), the linger
// stays within half a tick, and wait never sleeps less than a tick, nor
// past the second after next (idle: past the next second), nor past this
// process's next own slot by more than a tick.
func TestPacing(t *testing.T) {
	newClient := func(total int, from, to uint32, qps int, o Options) *Client {
		t.Helper()
		plan, err := schedule.New(uint32(total))
		if err != nil {
			t.Fatal(err)
		}
		sh, err := plan.Share(from, to)
		if err != nil {
			t.Fatal(err)
		}
		o.Total = total
		c := &Client{o: o, cfg: config{from: from, to: to, share: sh}}
		c.rate.qps.Store(int64(qps))
		return c
	}
	for _, tc := range []struct {
		name           string
		c              *Client
		tick, lingerAt time.Duration // lingerAt: linger for a tick of tick
	}{
		{"one process at 18,000/s", newClient(18000, 1, 18000, 18000, Options{}), time.Millisecond, 500 * time.Microsecond},
		{"one of 52 at 30,000/s", newClient(1_000_000, 1, 19230, 30000, Options{}), maxAutoTick, autoLinger},
		{"idle", newClient(1000, 1, 1000, 0, Options{}), idleTick, autoLinger},
		{"demo: 5,000/s over 10,000", newClient(10000, 1, 10000, 5000, Options{}), 3200 * time.Microsecond, autoLinger},
		{"fixed tick, no linger", newClient(1000, 1, 1000, 100, Options{Tick: 2 * time.Millisecond, Linger: -1}), 2 * time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			if got := c.tick(); got != tc.tick {
				t.Errorf("tick %v, want %v", got, tc.tick)
			}
			if got := c.linger(tc.tick); got != tc.lingerAt {
				t.Errorf("linger %v, want %v", got, tc.lingerAt)
			}
			q := c.QPS()
			for sec := int64(1_700_000_000); sec < 1_700_000_000+30; sec++ {
				for _, at := range []int64{0, 250e6, 999e6} {
					now := sec*1e9 + at
					j1 := schedule.Due(q, time.Duration(at))
					w := c.wait(sec, q, j1, now)
					if w < c.tick() {
						t.Fatalf("wait %v at %d+%d ns: shorter than a tick %v", w, sec, at, c.tick())
					}
					// It wakes by the second after next, where a slot or a
					// new rate may be due (a rate set sooner wakes it).
					if end := now + int64(w); w > c.tick() && end > (sec+2)*1e9 {
						t.Fatalf("wait %v at %d+%d ns: past the second after next", w, sec, at)
					}
					// Idle, it sleeps to the next second: no polling.
					if q == 0 && now+int64(w) != max((sec+1)*1e9, now+int64(c.tick())) {
						t.Fatalf("idle wait %v at %d+%d ns: not to the next second", w, sec, at)
					}
					// No own slot is skipped by more than a tick.
					if j, ok := c.cfg.share.Next(sec, q, j1); ok {
						due := sec*1e9 + int64(schedule.SlotOffset(j, q))
						if now+int64(w) > max(due, now)+int64(c.tick()) {
							t.Fatalf("sleeps %v past slot %d due at +%v", w, j, time.Duration(due-now))
						}
					}
				}
			}
		})
	}
}
