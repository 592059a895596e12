package server

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/ledger"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

// startLedgerServer starts a server with a ledger in dir (a new temporary
// one when dir is "").
func startLedgerServer(t testing.TB, dir string, mod func(*Options)) *Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	return startServer(t, func(o *Options) {
		o.DataDir = dir
		if mod != nil {
			mod(o)
		}
	})
}

func stopServer(t testing.TB, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func audit(t testing.TB, s *Server) AuditReport {
	t.Helper()
	rep, err := s.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("audit: %v", rep.Violations)
	}
	return rep
}

func send(t testing.TB, c *client.Conn, total, shares uint32, key uint64, to ...uint32) uint32 {
	t.Helper()
	r, err := c.SendPacket(total, shares, key, to)
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != proto.ResultOK || r.Packet == 0 {
		t.Fatalf("send %d cents in %d shares to %v: result %d packet %d", total, shares, to, r.Result, r.Packet)
	}
	return r.Packet
}

func open(t testing.TB, c *client.Conn, packet uint32) client.OpenResult {
	t.Helper()
	r, err := c.Open(packet)
	if err != nil {
		t.Fatal(err)
	}
	if r.Packet != packet {
		t.Fatalf("answer for packet %d, want %d", r.Packet, packet)
	}
	return r
}

func TestGroupSendPushOpen(t *testing.T) {
	s := startLedgerServer(t, "", nil)
	fund(t, s, 1, 300)
	sender := login(t, s, 1)
	r2, r3 := login(t, s, 2), login(t, s, 3)
	id := send(t, sender, 300, 3, 1, 2, 3, 4, 5)
	for _, c := range []*client.Conn{r2, r3} {
		p, err := c.ReadPush()
		if err != nil {
			t.Fatal(err)
		}
		if p != (client.Push{Packet: id, Sender: 1, Total: 300, Shares: 3}) {
			t.Fatalf("push %+v", p)
		}
	}
	var sum uint32
	for _, c := range []*client.Conn{r2, r3} {
		r := open(t, c, id)
		if r.Result != proto.ResultOK || r.Amount < 1 {
			t.Fatalf("open: %+v", r)
		}
		sum += r.Amount
	}
	// User 4 was offline at the push: it lists the packet after login.
	r4 := login(t, s, 4)
	if l, err := r4.List(); err != nil || !slices.Equal(l, []uint32{id}) {
		t.Fatalf("pending of user 4: %v %v", l, err)
	}
	r := open(t, r4, id)
	sum += r.Amount
	if r.Result != proto.ResultOK || sum != 300 {
		t.Fatalf("last share %+v, sum %d", r, sum)
	}
	if l, _ := r4.List(); len(l) != 0 {
		t.Fatalf("opened packet still listed: %v", l)
	}
	if r := open(t, login(t, s, 5), id); r.Result != proto.ResultPacketTaken {
		t.Fatalf("fourth recipient: %+v, want all taken", r)
	}
	if r := open(t, login(t, s, 6), id); r.Result != proto.ResultNotRecipient {
		t.Fatalf("non-recipient: %+v", r)
	}
	if b := s.money.Balance(1); b != 0 {
		t.Fatalf("sender balance %d", b)
	}
	rep := audit(t, s)
	if rep.ByKind["funded"] != 1 || rep.ByKind["grant"] != 3 || rep.Granted != 300 {
		t.Fatalf("audit report %+v", rep)
	}
}

func TestGroupClassicPushAndOpen(t *testing.T) {
	s := startLedgerServer(t, "", func(o *Options) { o.AllowClassic = true })
	fund(t, s, 1, 50)
	sender := login(t, s, 1)
	cc := dial(t, s)
	if err := cc.LoginClassic(7); err != nil {
		t.Fatal(err)
	}
	id := send(t, sender, 50, 2, 9, 7, 8)
	p, err := cc.ReadPush()
	if err != nil || p.Packet != id || p.Total != 50 || p.Shares != 2 {
		t.Fatalf("classic push %+v %v", p, err)
	}
	a, err := cc.OpenClassic(id)
	if err != nil || a < 1 || a > 49 {
		t.Fatalf("classic open: %d %v", a, err)
	}
	if again, err := cc.OpenClassic(id); err != nil || again != a {
		t.Fatalf("classic reopen: %d %v, want %d", again, err, a)
	}
	audit(t, s)
}

// TestGroupRace: 1,000 recipients open a 10-share packet at once, each on
// its own connection.
func TestGroupRace(t *testing.T) {
	s := startLedgerServer(t, "", func(o *Options) { o.MaxRecipients = 1000 })
	const n, shares, total = 1000, 10, 5000
	users := make([]uint32, n)
	conns := make([]*client.Conn, n)
	for i := range users {
		users[i] = uint32(100 + i)
		conns[i] = login(t, s, users[i])
	}
	fund(t, s, 1, total)
	id := send(t, login(t, s, 1), total, shares, 1, users...)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		got   = map[uint32]int{}
		sum   uint32
		start = make(chan struct{})
	)
	for i := range conns {
		wg.Add(1)
		go func(c *client.Conn) {
			defer wg.Done()
			<-start
			r, err := c.Open(id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			got[r.Result]++
			if r.Result == proto.ResultOK {
				sum += r.Amount
			}
		}(conns[i])
	}
	close(start)
	wg.Wait()
	if got[proto.ResultOK] != shares || got[proto.ResultPacketTaken] != n-shares || sum != total {
		t.Fatalf("results %v, sum %d: want %d ok, %d all taken, sum %d", got, sum, shares, n-shares, total)
	}
	audit(t, s)
}

func TestGroupIdempotency(t *testing.T) {
	s := startLedgerServer(t, "", nil)
	fund(t, s, 1, 100)
	sender := login(t, s, 1)
	id := send(t, sender, 100, 2, 42, 2, 3)
	// The same send again (say, after a lost answer) is the same packet, funded once.
	if again := send(t, sender, 100, 2, 42, 2, 3); again != id {
		t.Fatalf("resend with the same key made packet %d, want %d", again, id)
	}
	c := login(t, s, 2)
	first := open(t, c, id)
	if first.Result != proto.ResultOK {
		t.Fatalf("open %+v", first)
	}
	c.Close()
	// Retried on a new connection: the same amount, counted once.
	c2 := login(t, s, 2)
	for i := 0; i < 2; i++ {
		r := open(t, c2, id)
		if r.Result != proto.ResultAlreadyOpened || r.Amount != first.Amount {
			t.Fatalf("retry %d: %+v, want already opened with %d", i, r, first.Amount)
		}
	}
	if b := s.money.Balance(2); b != int64(first.Amount) {
		t.Fatalf("balance %d after one share of %d", b, first.Amount)
	}
	rep := audit(t, s)
	if rep.ByKind["funded"] != 1 || rep.ByKind["grant"] != 1 {
		t.Fatalf("records %v: want one funded, one grant", rep.ByKind)
	}
}

func TestGroupExpiryRefundsSender(t *testing.T) {
	s := startLedgerServer(t, "", func(o *Options) { o.PacketTTL = 2 * time.Second })
	fund(t, s, 1, 500)
	sender := login(t, s, 1)
	id := send(t, sender, 500, 5, 1, 2, 3)
	r := open(t, login(t, s, 2), id)
	ref, err := func() (client.Refund, error) { sender.Timeout = 10 * time.Second; return sender.ReadRefund() }()
	if err != nil {
		t.Fatal(err)
	}
	if ref.Packet != id || ref.Amount != 500-r.Amount {
		t.Fatalf("refund %+v, want %d", ref, 500-r.Amount)
	}
	if b := s.money.Balance(1); b != 500-int64(r.Amount) {
		t.Fatalf("sender balance %d, want 500 - %d", b, r.Amount)
	}
	if late := open(t, login(t, s, 3), id); late.Result != proto.ResultExpired {
		t.Fatalf("open after expiry: %+v", late)
	}
	if again := open(t, login(t, s, 2), id); again.Result != proto.ResultExpired {
		t.Fatalf("reopen after expiry: %+v", again)
	}
	if h := s.money.Holdings(); h.Packets != 0 { // id was the only packet
		t.Fatalf("expired packet still in memory: %+v", h)
	}
	if r := open(t, login(t, s, 3), id+1000); r.Result != proto.ResultUnknownPacket {
		t.Fatalf("open of a never-made packet: %+v", r)
	}
	rep := audit(t, s)
	if rep.ByKind["refund"] != 1 {
		t.Fatalf("records %v", rep.ByKind)
	}
}

func TestGroupBadInputWritesNothing(t *testing.T) {
	s := startLedgerServer(t, "", nil)
	fund(t, s, 1, 100)
	c := login(t, s, 1)
	many := make([]uint32, DefaultMaxRecipients+1)
	for i := range many {
		many[i] = uint32(i + 2)
	}
	cases := []struct {
		name          string
		total, shares uint32
		to            []uint32
		want          uint32
	}{
		{"zero amount", 0, 1, []uint32{2}, proto.ResultBadAmount},
		{"negative amount", ^uint32(0), 1, []uint32{2}, proto.ResultBadAmount},
		{"oversized amount", DefaultMaxPacketCents + 1, 1, []uint32{2}, proto.ResultBadAmount},
		{"zero shares", 100, 0, []uint32{2}, proto.ResultBadShares},
		{"too many shares", 10000, DefaultMaxShares + 1, []uint32{2}, proto.ResultBadShares},
		{"more shares than cents", 5, 6, []uint32{2}, proto.ResultTooFewCents},
		{"no recipients", 100, 1, nil, proto.ResultBadRecipients},
		{"too many recipients", 100, 1, many, proto.ResultBadRecipients},
		{"duplicate recipient", 100, 2, []uint32{2, 2}, proto.ResultBadRecipients},
		{"system user as recipient", 100, 1, []uint32{0}, proto.ResultBadRecipients},
	}
	for i, tc := range cases {
		r, err := c.SendPacket(tc.total, tc.shares, uint64(i), tc.to)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.Result != tc.want || r.Packet != 0 {
			t.Errorf("%s: result %d packet %d, want result %d", tc.name, r.Result, r.Packet, tc.want)
		}
	}
	if r := open(t, c, 12345); r.Result != proto.ResultUnknownPacket {
		t.Errorf("unknown packet: %+v", r)
	}
	if err := s.led.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := s.led.Stats(); st.Records != 1 {
		t.Fatalf("bad input wrote %d records (after the top-up)", st.Records-1)
	}
	// A non-recipient writes nothing either.
	id := send(t, c, 100, 1, 99, 2)
	if r := open(t, login(t, s, 3), id); r.Result != proto.ResultNotRecipient {
		t.Errorf("non-recipient: %+v", r)
	}
	s.led.Sync()
	if st := s.led.Stats(); st.Records != 2 {
		t.Fatalf("%d records after a top-up, one send and a refused open, want 2", st.Records)
	}
	// A malformed send (count disagrees with the frame) closes the connection.
	bad := proto.AppendSend(nil, 1, 100, 1, 7, []uint32{2, 3})
	bad[proto.HeaderSize+19] = 3
	if err := c.Send(bad); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, proto.ReasonBadPayload)
	audit(t, s)
}

// TestGroupRecovery: a restart on the same directory recovers packets
// with their remaining amount and shares, who opened what, campaigns'
// progress and balances.
func TestGroupRecovery(t *testing.T) {
	dir := t.TempDir()
	s := startLedgerServer(t, dir, nil)
	fund(t, s, 1, 1010)
	sender := login(t, s, 1)
	id := send(t, sender, 1000, 4, 7, 2, 3, 4, 5)
	amounts := map[uint32]uint32{}
	for _, u := range []uint32{2, 3} {
		amounts[u] = open(t, login(t, s, u), id).Amount
	}
	info, err := s.StartCampaign(CampaignSpec{Count: 1000, Rate: 1000, Budget: 5000})
	if err != nil {
		t.Fatal(err)
	}
	shaker := login(t, s, 9)
	var shook uint32
	wait.For(t, 5*time.Second, "a shake packet", func() bool {
		r, err := shaker.Shake()
		if err != nil {
			t.Fatal(err)
		}
		shook += r.Amount
		return r.Result == proto.ResultGot
	})
	stopServer(t, s)

	s2 := startLedgerServer(t, dir, nil)
	for u, a := range amounts {
		if r := open(t, login(t, s2, u), id); r.Result != proto.ResultAlreadyOpened || r.Amount != a {
			t.Fatalf("user %d after restart: %+v, want already opened with %d", u, r, a)
		}
	}
	r4 := open(t, login(t, s2, 4), id)
	r5 := open(t, login(t, s2, 5), id)
	if r4.Result != proto.ResultOK || r5.Result != proto.ResultOK || amounts[2]+amounts[3]+r4.Amount+r5.Amount != 1000 {
		t.Fatalf("remaining shares after restart: %+v %+v with %v", r4, r5, amounts)
	}
	if b := s2.money.Balance(1); b != 10 {
		t.Fatalf("sender balance after restart %d", b)
	}
	if b := s2.money.Balance(9); b != int64(shook) {
		t.Fatalf("shaker balance after restart %d, want %d", b, shook)
	}
	var c CampaignInfo
	for _, ci := range s2.Campaigns() {
		if ci.ID == info.ID {
			c = ci
		}
	}
	if c.Taken != 1 || c.AmountTaken != uint64(shook) {
		t.Fatalf("campaign after restart %+v, want 1 taken of %d cents", c, shook)
	}
	// A new packet gets a new id.
	if id2 := send(t, login(t, s2, 1), 10, 1, 8, 2); id2 == id {
		t.Fatalf("packet id %d reused", id2)
	}
	audit(t, s2)
}

// TestDurableAnswersKeepOrder: a pipelined shake (got, durable), ping and
// open are answered in the order sent.
func TestDurableAnswersKeepOrder(t *testing.T) {
	s := startLedgerServer(t, "", func(o *Options) { o.Sets = 1 })
	fund(t, s, 1, 100)
	id := send(t, login(t, s, 1), 100, 1, 1, 2)
	if _, err := s.StartCampaign(CampaignSpec{Count: 100, Rate: 1000, Min: 1, Max: 5}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "packets waiting", func() bool { return s.Stats().Waiting > 10 })
	c := login(t, s, 2)
	var b []byte
	b = proto.AppendShake(b, 1, 2)
	b = proto.AppendFrame(b, proto.CmdOpen, 1, id)
	b = proto.AppendPing(b, proto.CmdPing, 1, 77)
	b = proto.AppendShake(b, 1, 2)
	b = proto.AppendPing(b, proto.CmdPing, 1, 78)
	if err := c.Send(b); err != nil {
		t.Fatal(err)
	}
	want := []proto.Cmd{proto.CmdShakeResp, proto.CmdOpenResp, proto.CmdPong, proto.CmdShakeResp, proto.CmdPong}
	for i, w := range want {
		f, err := c.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Cmd != w {
			t.Fatalf("answer %d is %#04x, want %#04x", i, uint16(f.Cmd), uint16(w))
		}
		if f.Cmd == proto.CmdShakeResp && f.Field(1) != proto.ResultGot {
			t.Fatalf("shake %d: result %d", i, f.Field(1))
		}
	}
	st, err := ledger.Replay(s.opts.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.ByKind[ledger.KindShake] != 2 {
		t.Fatalf("shake records %d, want 2", st.ByKind[ledger.KindShake])
	}
	audit(t, s)
}

// TestExpiryAfterRestart: a packet that expires while the server is down
// is refunded by the restarted server, once.
func TestExpiryAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ttl := func(o *Options) { o.PacketTTL = time.Second }
	s := startLedgerServer(t, dir, ttl)
	fund(t, s, 1, 300)
	id := send(t, login(t, s, 1), 300, 3, 1, 2, 3)
	a := open(t, login(t, s, 2), id).Amount
	stopServer(t, s)
	time.Sleep(1100 * time.Millisecond) // past the TTL while down
	s2 := startLedgerServer(t, dir, ttl)
	wait.For(t, 5*time.Second, "the refund", func() bool { return s2.money.Balance(1) == 300-int64(a) })
	if r := open(t, login(t, s2, 3), id); r.Result != proto.ResultExpired {
		t.Fatalf("open after expiry: %+v", r)
	}
	rep := audit(t, s2)
	if rep.ByKind["refund"] != 1 {
		t.Fatalf("records %v", rep.ByKind)
	}
}
