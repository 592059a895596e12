package money

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"hongbao/internal/ledger"
	"hongbao/internal/proto"
)

// wallClock is the real clock.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }
func (wallClock) Second() uint64 { return uint64(time.Now().Unix()) }

// told records what the engine told users through its Sink.
type told struct {
	mu      sync.Mutex
	pushes  []Push
	to      [][]uint32
	refunds [][3]uint32
}

func (k *told) Push(p Push, to []uint32) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pushes, k.to = append(k.pushes, p), append(k.to, slices.Clone(to))
	return len(to)
}

func (k *told) Refund(sender, packet, amount uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refunds = append(k.refunds, [3]uint32{sender, packet, amount})
}

var testLimits = Limits{Users: 1000, PacketTTL: time.Hour, MaxPacketCents: 20000, MaxShares: 100, MinShareCents: 1, MaxRecipients: 500,
	MaxLivePackets: 1000, MaxLivePerSender: 2, MaxSenderRate: 5000, MaxCampaigns: 4, MaxCampaignRate: 1000, MaxCampaignCount: 1000,
	MaxWaiting: 1000, AmountMin: 1, AmountMax: 200}

// newEngine makes an engine with a real ledger in a temporary directory
// (none when durable is false), closed with the test.
func newEngine(t *testing.T, durable bool, sink Sink) *Engine {
	t.Helper()
	c := Config{Sets: 4, Limits: testLimits, Clock: wallClock{}, Sink: sink}
	if durable {
		led, _, err := ledger.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { led.Close() })
		c.Ledger = led
	}
	return New(c)
}

// fund tops user up with cents (a key of its own each call) and fails the
// test if the top-up does not go through.
func fund(t testing.TB, e *Engine, user uint32, cents uint64) {
	t.Helper()
	fundN++
	if _, err := e.TopUp(user, cents, fmt.Sprintf("fund-%d-%d", user, fundN)); err != nil {
		t.Fatalf("top-up of user %d: %v", user, err)
	}
}

var fundN int

// sendWait sends sp and waits for its answer, at once or from the ledger.
func sendWait(t *testing.T, e *Engine, sp SendSpec) (id, result uint32, later bool) {
	t.Helper()
	ch := make(chan [2]uint32, 1)
	id, result, later = e.Send(sp, func(id, r uint32) { ch <- [2]uint32{id, r} })
	if later {
		select {
		case v := <-ch:
			id, result = v[0], v[1]
		case <-time.After(5 * time.Second):
			t.Fatal("no answer from the ledger")
		}
	}
	select {
	case v := <-ch:
		t.Fatalf("done called (%v) for an answer given at once", v)
	default:
	}
	return id, result, later
}

// openWait opens packet id for user and waits for a durable answer.
func openWait(t *testing.T, e *Engine, user, id uint32) OpenResult {
	t.Helper()
	ch := make(chan error, 1)
	var later func(OpenResult) ledger.Done
	if e.Durable() {
		later = func(OpenResult) ledger.Done {
			return ledger.DoneFunc(func(_ *ledger.Record, err error) { ch <- err })
		}
	}
	r := e.Open(user, id, later)
	if r.Durable {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// TestSendAnswersAtOnceOrLater: a send is answered at once when it is
// refused or there is no ledger, and through done once its record is
// durable otherwise; a repeated key answers the same packet; the
// recipients are pushed once the packet is made.
func TestSendAnswersAtOnceOrLater(t *testing.T) {
	to := []uint32{3, 2}
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("ledger=%v", durable), func(t *testing.T) {
			k := &told{}
			e := newEngine(t, durable, k)
			fund(t, e, 1, 120)
			cases := []struct {
				name   string
				sp     SendSpec
				result uint32
				later  bool // with a ledger
			}{
				{"valid", SendSpec{Sender: 1, Total: 100, Shares: 2, Key: 1, Recipients: to}, proto.ResultOK, true},
				{"repeat", SendSpec{Sender: 1, Total: 100, Shares: 2, Key: 1, Recipients: to}, proto.ResultOK, true},
				{"bad amount", SendSpec{Sender: 1, Total: 0, Shares: 1, Key: 2, Recipients: to}, proto.ResultBadAmount, false},
				{"system user recipient", SendSpec{Sender: 1, Total: 10, Shares: 1, Key: 3, Recipients: []uint32{0}}, proto.ResultBadRecipients, false},
				{"second live", SendSpec{Sender: 1, Total: 10, Shares: 1, Key: 4, Recipients: to}, proto.ResultOK, true},
				{"third live", SendSpec{Sender: 1, Total: 10, Shares: 1, Key: 5, Recipients: to}, proto.ResultTooManyPackets, false},
				{"no funds", SendSpec{Sender: 4, Total: 10, Shares: 1, Key: 1, Recipients: to}, proto.ResultInsufficientFunds, false},
				{"over the balance", SendSpec{Sender: 1, Total: 11, Shares: 1, Key: 6, Recipients: to}, proto.ResultInsufficientFunds, false},
			}
			var first uint32
			for _, c := range cases {
				id, r, later := sendWait(t, e, c.sp)
				if r != c.result || later != (durable && c.later) {
					t.Fatalf("%s: result %d later %v, want %d %v", c.name, r, later, c.result, durable && c.later)
				}
				switch {
				case c.name == "valid":
					first = id
				case c.name == "repeat" && id != first:
					t.Fatalf("repeat answered packet %d, want %d", id, first)
				case r != proto.ResultOK && id != 0:
					t.Fatalf("%s: refused, yet packet %d", c.name, id)
				}
			}
			if durable { // the pushes follow the answers: wait for the writer to pass them
				if err := e.led.(*ledger.Log).Sync(); err != nil {
					t.Fatal(err)
				}
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			if len(k.pushes) != 2 || k.pushes[0].Packet != first || k.pushes[0].Total != 100 || k.pushes[0].First3 != [3]uint32{3, 2, 0} ||
				!slices.Equal(k.to[0], []uint32{2, 3}) {
				t.Fatalf("pushes %+v to %v, want two, the first of packet %d to 2 and 3", k.pushes, k.to, first)
			}
			if g := e.GroupStats(); g.Sent != 2 || g.FundedAmount != 110 || g.Pushes != 4 || g.TooMany != 1 || g.InsufficientFunds != 2 || g.Live != 2 {
				t.Fatalf("stats %+v", g)
			}
			if b, b4 := e.Balance(1), e.Balance(4); b != 10 || b4 != 0 {
				t.Fatalf("senders' balances %d and %d, want 10 and 0", b, b4)
			}
		})
	}
}

// TestExpireRefundsAndTells: an expired packet's remainder goes back to
// its sender, who is told once the refund is durable, and the packet
// leaves memory.
func TestExpireRefundsAndTells(t *testing.T) {
	k := &told{}
	e := newEngine(t, true, k)
	fund(t, e, 1, 100)
	id, _, _ := sendWait(t, e, SendSpec{Sender: 1, Total: 100, Shares: 2, Key: 1, Recipients: []uint32{2, 3}})
	got := openWait(t, e, 2, id)
	e.Expire(time.Now().Add(2 * time.Hour))
	if err := e.led.(*ledger.Log).Sync(); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	refunds := slices.Clone(k.refunds)
	k.mu.Unlock()
	if want := [3]uint32{1, id, 100 - got.Amount}; len(refunds) != 1 || refunds[0] != want {
		t.Fatalf("refunds %v, want %v", refunds, want)
	}
	if h := e.Holdings(); h != (Holdings{QueueCap: h.QueueCap}) {
		t.Fatalf("held after expiry: %+v", h)
	}
	if r := openWait(t, e, 3, id); r.Result != proto.ResultExpired {
		t.Fatalf("open after expiry: %+v", r)
	}
	if rep, err := e.Audit(); err != nil || !rep.OK {
		t.Fatalf("audit: %v %v", err, rep.Violations)
	}
}

// TestAuditComparesLiveStateWithTheLedger: an engine whose memory differs
// from its ledger fails the audit.
func TestAuditComparesLiveStateWithTheLedger(t *testing.T) {
	e := newEngine(t, true, nil)
	fund(t, e, 1, 100)
	id, r, _ := sendWait(t, e, SendSpec{Sender: 1, Total: 100, Shares: 2, Key: 1, Recipients: []uint32{2, 3}})
	if r != proto.ResultOK {
		t.Fatalf("send: %d", r)
	}
	openWait(t, e, 2, id)
	if rep, err := e.Audit(); err != nil || !rep.OK {
		t.Fatalf("audit: %v %v", err, rep.Violations)
	}
	sh := e.groups.shard(id)
	sh.mu.Lock()
	sh.packets[id].remaining++
	sh.mu.Unlock()
	b := e.balanceOf(7)
	b.mu.Lock()
	b.m[7] = 5
	b.mu.Unlock()
	rep, err := e.Audit()
	if err != nil {
		t.Fatal(err)
	}
	v := strings.Join(rep.Violations, "\n")
	if rep.OK || !strings.Contains(v, fmt.Sprintf("packet %d: server has", id)) || !strings.Contains(v, "user 7: balance 5 in the server, 0 in the ledger") {
		t.Fatalf("audit of a diverged engine: ok=%v\n%s", rep.OK, v)
	}
}

// TestAuditWithoutLedger: there is nothing to audit.
func TestAuditWithoutLedger(t *testing.T) {
	if _, err := newEngine(t, false, nil).Audit(); err != ErrNoLedger {
		t.Fatalf("audit without a ledger: %v, want ErrNoLedger", err)
	}
}

// TestMergeAudits: the counts add up, violations name their node, and the
// whole is clean only when every node is.
func TestMergeAudits(t *testing.T) {
	a := AuditReport{Records: 3, ByKind: map[string]uint64{"grant": 2, "funded": 1}, Packets: 1, Users: 2, Granted: 50, TopUps: 9, Violations: []string{}, OK: true}
	b := AuditReport{Records: 2, ByKind: map[string]uint64{"grant": 1}, Campaigns: 1, Users: 1, Granted: 7, Violations: []string{"x"}}
	m := MergeAudits([]string{"n1", "n2"}, []AuditReport{a, b})
	if m.Records != 5 || m.ByKind["grant"] != 3 || m.ByKind["funded"] != 1 || m.Packets != 1 || m.Campaigns != 1 || m.Users != 3 ||
		m.Granted != 57 || m.TopUps != 9 || !slices.Equal(m.Violations, []string{"n2: x"}) || m.OK {
		t.Fatalf("merged %+v", m)
	}
	if one := MergeAudits([]string{"n1"}, []AuditReport{a}); !one.OK || one.Records != 3 || len(one.Violations) != 0 {
		t.Fatalf("merged alone %+v", one)
	}
}

// TestShakeTakeAndGrant: a shake packet issued into a SET is taken by a
// user of that SET only, once, and granted with its record.
func TestShakeTakeAndGrant(t *testing.T) {
	e := newEngine(t, true, nil)
	if _, err := e.StartCampaign(CampaignSpec{Count: 1, Rate: 1000, Min: 7, Max: 7}); err != nil {
		t.Fatal(err)
	}
	e.Issue(time.Now().Add(time.Second))
	if e.Waiting() != 1 || e.AllTaken() {
		t.Fatalf("waiting %d, all taken %v after the issue", e.Waiting(), e.AllTaken())
	}
	var user uint32
	for u := uint32(1); u <= 4; u++ {
		if p, ok := e.TakeShake(u); ok {
			if user != 0 || p.Amount != 7 {
				t.Fatalf("user %d took %+v (user %d took one before)", u, p, user)
			}
			user = u
			done := make(chan error, 1)
			e.GrantShake(u, p, ledger.DoneFunc(func(_ *ledger.Record, err error) { done <- err }))
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	if user == 0 || !e.AllTaken() || e.Balance(user) != 7 || e.Campaigns()[0].Taken != 1 {
		t.Fatalf("taken by %d, all taken %v, balance %d, campaign %+v", user, e.AllTaken(), e.Balance(user), e.Campaigns()[0])
	}
	if rep, err := e.Audit(); err != nil || !rep.OK || rep.ByKind["shake"] != 1 {
		t.Fatalf("audit: %v %+v", err, rep)
	}
}
