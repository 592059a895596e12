package money

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hongbao/internal/ledger"
	"hongbao/internal/proto"
)

// setClock is a clock the test moves.
type setClock struct{ ms atomic.Int64 }

func (c *setClock) Now() time.Time { return time.UnixMilli(c.ms.Load()) }
func (c *setClock) Second() uint64 { return uint64(c.ms.Load() / 1000) }

// openEngine opens the ledger in dir and restores an engine from it.
func openEngine(t *testing.T, dir string, clk Clock, lim Limits) (*Engine, *ledger.Log) {
	t.Helper()
	led, st, err := ledger.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Sets: 4, Limits: lim, Clock: clk, Ledger: led})
	e.Restore(st)
	return e, led
}

// records replays dir's ledger and counts its records.
func records(t *testing.T, led *ledger.Log) uint64 {
	t.Helper()
	if err := led.Sync(); err != nil {
		t.Fatal(err)
	}
	st, err := led.ReplayTo(-1)
	if err != nil {
		t.Fatal(err)
	}
	return st.Records
}

// TestTopUpOncePerKey: a top-up repeated with its key credits once and
// answers the first result, also after a restart (the keys come back from
// the ledger); the key with another amount is refused; a key is forgotten
// after ledger.KeyWindow, and the keys remembered are bounded.
func TestTopUpOncePerKey(t *testing.T) {
	dir := t.TempDir()
	clk := &setClock{}
	clk.ms.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	lim := testLimits
	lim.MaxMoneyKeys = 3
	e, led := openEngine(t, dir, clk, lim)
	first, err := e.TopUp(7, 500, "order-1")
	if err != nil || first != (Transfer{User: 7, Cents: 500, Balance: 500}) {
		t.Fatalf("top-up: %+v %v", first, err)
	}
	again, err := e.TopUp(7, 500, "order-1")
	if err != nil || !again.Repeat || again.Balance != 500 || e.Balance(7) != 500 {
		t.Fatalf("repeat: %+v %v, balance %d", again, err, e.Balance(7))
	}
	if _, err := e.TopUp(7, 600, "order-1"); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("the key with another amount: %v", err)
	}
	if _, err := e.Withdraw(7, 100, "order-1"); err != nil || e.Balance(7) != 400 {
		t.Fatalf("a withdrawal has keys of its own: %v, balance %d", err, e.Balance(7))
	}
	if n := records(t, led); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
	led.Close()

	e, led = openEngine(t, dir, clk, lim)
	defer func() { led.Close() }()
	if r, err := e.TopUp(7, 500, "order-1"); err != nil || !r.Repeat || r.Balance != 500 || e.Balance(7) != 400 {
		t.Fatalf("repeat after a restart: %+v %v, balance %d", r, err, e.Balance(7))
	}
	if _, err := e.TopUp(7, 1, "order-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.TopUp(7, 1, "order-3"); !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("a fourth key with three allowed: %v", err)
	}
	clk.ms.Add(ledger.KeyWindow.Milliseconds() + 1)
	if r, err := e.TopUp(7, 500, "order-1"); err != nil || r.Repeat || e.Balance(7) != 901 {
		t.Fatalf("the key after the window: %+v %v, balance %d", r, err, e.Balance(7))
	}
	if h := len(e.keys.m); h != 1 {
		t.Fatalf("%d keys remembered, want 1", h)
	}
	if rep, err := e.Audit(); err != nil || !rep.OK {
		t.Fatalf("audit: %v %v", err, rep.Violations)
	}
}

// TestRefusalsWriteNothing: a send from a zero balance (result 32), a
// withdrawal beyond the balance, and malformed transfers write no record
// and move nothing.
func TestRefusalsWriteNothing(t *testing.T) {
	clk := &setClock{}
	clk.ms.Store(time.Now().UnixMilli())
	e, led := openEngine(t, t.TempDir(), clk, testLimits)
	defer led.Close()
	if _, r, later := sendWait(t, e, SendSpec{Sender: 3, Total: 100, Shares: 1, Key: 1, Recipients: []uint32{4}}); r != proto.ResultInsufficientFunds || later {
		t.Fatalf("send from a zero balance: %d %v", r, later)
	}
	fund(t, e, 3, 99)
	if _, r, _ := sendWait(t, e, SendSpec{Sender: 3, Total: 100, Shares: 1, Key: 1, Recipients: []uint32{4}}); r != proto.ResultInsufficientFunds {
		t.Fatalf("send one cent beyond the balance: %d", r)
	}
	if _, err := e.Withdraw(3, 100, "w1"); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("withdrawal beyond the balance: %v", err)
	}
	for _, c := range []struct {
		user  uint32
		cents uint64
		key   string
	}{{0, 1, "k"}, {3, 0, "k"}, {3, 1, ""}, {3, MaxTransferCents + 1, "k"}, {2000, 1, "k"}, {3, 1, string(make([]byte, MaxKeyLen+1))}} {
		if _, err := e.TopUp(c.user, c.cents, c.key); !errors.Is(err, ErrBadTransfer) {
			t.Fatalf("top-up %d %d %q: %v, want ErrBadTransfer", c.user, c.cents, c.key, err)
		}
	}
	if n, b := records(t, led), e.Balance(3); n != 1 || b != 99 {
		t.Fatalf("%d records (want the top-up alone), balance %d", n, b)
	}
	if g := e.GroupStats(); g.InsufficientFunds != 2 || g.Live != 0 || e.Holdings().Keys != 0 {
		t.Fatalf("after refusals: %+v, %+v", g, e.Holdings())
	}
	// The refused send left no key: the same key sends once funded.
	fund(t, e, 3, 1)
	if _, r, _ := sendWait(t, e, SendSpec{Sender: 3, Total: 100, Shares: 1, Key: 1, Recipients: []uint32{4}}); r != proto.ResultOK || e.Balance(3) != 0 {
		t.Fatalf("send once funded: %d, balance %d", r, e.Balance(3))
	}
	if rep, err := e.Audit(); err != nil || !rep.OK {
		t.Fatalf("audit: %v %v", err, rep.Violations)
	}
}

// TestRacingSpenders: many goroutines spend one balance at once, and 1,000
// users with a balance each send to each other at once (while the packets
// are opened); no balance goes below zero, exactly what the balances
// cover is sent, and the audit (conservation included) is clean.
func TestRacingSpenders(t *testing.T) {
	lim := testLimits
	lim.Users, lim.MaxLivePackets, lim.MaxLivePerSender, lim.MaxSenderRate = 2000, 1_000_000, 1_000_000, 1_000_000
	clk := &setClock{}
	clk.ms.Store(time.Now().UnixMilli())
	e, led := openEngine(t, t.TempDir(), clk, lim)
	defer led.Close()

	// One balance of 10,000 cents, 200 goroutines x 10 sends of 100.
	fund(t, e, 1, 10_000)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 200 {
		wg.Go(func() {
			for i := range 10 {
				_, r, _ := sendWait(t, e, SendSpec{Sender: 1, Total: 100, Shares: 1, Key: uint64(g*10 + i + 1), Recipients: []uint32{2}})
				switch r {
				case proto.ResultOK:
					ok.Add(1)
				case proto.ResultInsufficientFunds:
					refused.Add(1)
				default:
					t.Errorf("send: result %d", r)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("one balance of 10,000 cents, 2,000 racing sends of 100: %d sent, %d refused, balance %d", ok.Load(), refused.Load(), e.Balance(1))
	if ok.Load() != 100 || refused.Load() != 1900 || e.Balance(1) != 0 {
		t.Fatalf("%d sent, %d refused, balance %d; want 100, 1,900, 0", ok.Load(), refused.Load(), e.Balance(1))
	}

	// 1,000 users with 1,000 cents each send 300 cents to 3 others 5 times
	// each while the recipients open what they get.
	const users = 1000
	for u := uint32(10); u < 10+users; u++ {
		fund(t, e, u, 1000)
	}
	ok.Store(0)
	refused.Store(0)
	var opened atomic.Int64
	for i := range users {
		u := uint32(10 + i)
		wg.Go(func() {
			for k := range 5 {
				to := []uint32{10 + (u-10+1)%users, 10 + (u-10+7)%users, 10 + (u-10+31)%users}
				id, r, _ := sendWait(t, e, SendSpec{Sender: u, Total: 300, Shares: 3, Key: uint64(k + 1), Recipients: to})
				switch r {
				case proto.ResultOK:
					ok.Add(1)
					if openWait(t, e, to[k%3], id).Result == proto.ResultOK {
						opened.Add(1)
					}
				case proto.ResultInsufficientFunds:
					refused.Add(1)
				default:
					t.Errorf("send: result %d", r)
				}
			}
		})
	}
	wg.Wait()
	var neg int
	for u := uint32(1); u < 10+users; u++ {
		if e.Balance(u) < 0 {
			neg++
		}
	}
	rep, err := e.Audit()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d users racing: %d sent, %d refused, %d opened, %d balances below zero; audit of %d records ok=%v",
		users, ok.Load(), refused.Load(), opened.Load(), neg, rep.Records, rep.OK)
	if neg != 0 || !rep.OK || ok.Load()+refused.Load() != 5*users || ok.Load() < 3*users {
		t.Fatalf("%d balances below zero, %d sent, %d refused, audit %v", neg, ok.Load(), refused.Load(), rep.Violations)
	}
}
