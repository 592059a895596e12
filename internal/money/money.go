// Package money is hongbao's money engine: balances and their ledger
// records, group packets, shake campaigns and the SETs' queues of packets
// waiting to be taken, the system account's generators, and the audit of
// the ledger against the live state.
//
// It knows nothing of connections, sessions or frames. What it needs from
// outside comes in through narrow interfaces: a Ledger that makes records
// durable, a Clock, and a Sink that tells online users of pushes and
// refunds. An answer that must wait for durability is a ledger.Done the
// caller hands in; the engine queues it with the movement's record.
//
// The files split by concern: money.go (the engine, balances), queue.go
// (the SETs' waiting packets), campaign.go (shake campaigns), group.go
// (group packets), generator.go (the system account's sends), wallet.go
// (top-ups and withdrawals), audit.go.
package money

import (
	"log/slog"
	"sync"
	"time"

	"hongbao/internal/ledger"
)

// SystemUser is the account of packets the server itself sends (the
// generator): user id 0, which no client can log in as.
const SystemUser = 0

// Ledger is what the engine needs of a durable ledger (*ledger.Log is one).
// Records complete in the order they were appended.
type Ledger interface {
	// Append queues rec (copied; nil is a barrier) and calls done, if not
	// nil, once everything appended up to it is durable or cannot be.
	Append(rec *ledger.Record, done ledger.Done)
	// Mark calls at, once everything appended before it is durable, with
	// the position it stands at.
	Mark(at func(pos int64, err error))
	// ReplayTo replays the ledger up to a position Mark gave.
	ReplayTo(pos int64) (*ledger.State, error)
}

var _ Ledger = (*ledger.Log)(nil)

// Clock is the engine's time.
type Clock interface {
	// Now stamps records and decides expiry.
	Now() time.Time
	// Second is the caller's coarse clock in Unix seconds: a sender's rate
	// budget is counted per Second, the one its answers are stamped with.
	Second() uint64
}

// Push is a new group packet as its recipients are told of it.
type Push struct {
	Packet, Sender, Total, Shares uint32
	// First3 are the first three recipients in the sender's order (the
	// classic push names them).
	First3 [3]uint32
}

// Sink tells online users what happened to their money outside an answer.
// Its methods run on the goroutine that made the change (an event loop,
// the ledger's writer, the ticker) and must not block.
type Sink interface {
	// Push tells the online users among to (sorted, not to be changed) of
	// a new group packet, and returns how many it told.
	Push(p Push, to []uint32) int
	// Refund tells sender, if online, that amount cents of packet went
	// back to them when it expired.
	Refund(sender, packet, amount uint32)
}

// Limits bound what users and operators may ask of the engine.
type Limits struct {
	// Users, if non-zero, is the last user id; UsersFrom, if non-zero, the
	// first: a group packet's recipients must be in range.
	UsersFrom, Users uint32
	// PacketTTL is how long a group packet may be opened before its
	// remainder goes back to the sender.
	PacketTTL time.Duration
	// A group send: its total, shares, cents per share and recipients.
	MaxPacketCents, MaxShares, MinShareCents uint32
	MaxRecipients                            int
	// Live state: group packets in memory (all senders', and one user's;
	// the system account is bounded by the first alone), and a user's
	// recipients per second.
	MaxLivePackets, MaxLivePerSender, MaxSenderRate int
	// Campaigns and generators: how many run at once (each kind apart),
	// and one's rate and count.
	MaxCampaigns                      int
	MaxCampaignRate, MaxCampaignCount uint32
	// MaxWaiting bounds the shake packets issued and waiting in the SETs.
	MaxWaiting int
	// MaxMoneyKeys bounds the top-up and withdrawal keys remembered
	// (ledger.KeyWindow long); zero is DefaultMaxMoneyKeys.
	MaxMoneyKeys int
	// AmountMin and AmountMax are a generator's default amount range.
	AmountMin, AmountMax uint32
}

// Config is what New needs.
type Config struct {
	// Sets is the number of SETs (user partitions); SetOf maps a user to one.
	Sets   int
	Limits Limits
	// Ledger is nil to run without one: movements are done at once and
	// are not durable.
	Ledger Ledger
	Clock  Clock
	// Sink is nil to tell nobody.
	Sink Sink
	// Online is the number of users logged in to a SET: the issuer spreads
	// shake packets over the SETs in proportion. Nil: equal shares.
	Online func(set int) int64
	Logger *slog.Logger
}

// Engine is the money engine. Its methods are safe for concurrent use.
type Engine struct {
	led    Ledger // nil without one
	clock  Clock
	sink   Sink
	lim    Limits
	log    *slog.Logger
	online func(set int) int64

	queues []queue
	bals   []balShard
	groups groups
	camps  campaigns
	gens   generators
	keys   moneyKeys
}

// New makes an engine with nothing in it; Restore fills it from a ledger.
func New(c Config) *Engine {
	e := &Engine{led: c.Ledger, clock: c.Clock, sink: c.Sink, lim: c.Limits, log: c.Logger, online: c.Online,
		queues: make([]queue, max(c.Sets, 1)), bals: make([]balShard, balShards)}
	if e.log == nil {
		e.log = slog.Default()
	}
	for i := range e.bals {
		e.bals[i].m = map[uint32]int64{}
	}
	e.groups.init(e)
	e.camps.init(e)
	e.keys.m = map[ledger.MoneyKey]*keyUse{}
	return e
}

// SetOf is the SET that holds user, of sets: one rule for the access
// layer's sessions and the engine's queues.
func SetOf(user uint32, sets int) int { return int(user) % sets }

// balShard holds the balances of the users that map to it. Its lock is
// held while a movement's record is queued to the ledger, so the balances
// recorded follow the order of the file.
type balShard struct {
	mu sync.Mutex
	m  map[uint32]int64
	_  [64]byte
}

const balShards = 64

func (e *Engine) balanceOf(u uint32) *balShard { return &e.bals[u%uint32(len(e.bals))] }

// move changes user's balance by delta, fills rec's User and Balance and
// queues rec to the ledger under the balance lock. Without a ledger, done
// (if any) runs at once, after the lock. It is for credits: a debit goes
// through tryMove, which may refuse it.
func (e *Engine) move(user uint32, delta int64, rec *ledger.Record, done ledger.Done) {
	e.tryMove(user, delta, rec, done)
}

// covered reports whether user's balance covers a debit of amount cents:
// a user's balance never goes below zero; the system account (user 0),
// which funds the generators' packets, may.
func covered(user uint32, bal int64, amount int64) bool {
	return user == SystemUser || bal >= amount
}

// tryMove is move, refused (false, nothing queued, done not called) when
// delta is a debit the balance does not cover. The check and the change
// happen under one hold of the balance lock, so concurrent debits of one
// user can never take it below zero together.
func (e *Engine) tryMove(user uint32, delta int64, rec *ledger.Record, done ledger.Done) bool {
	b := e.balanceOf(user)
	b.mu.Lock()
	if delta < 0 && !covered(user, b.m[user], -delta) {
		b.mu.Unlock()
		return false
	}
	bal := b.m[user] + delta
	b.m[user] = bal
	rec.User, rec.Balance = user, bal
	if e.led != nil {
		e.led.Append(rec, done)
		done = nil
	}
	b.mu.Unlock()
	if done != nil {
		done.Durable(rec, nil)
	}
	return true
}

// Balance returns a user's balance in cents.
func (e *Engine) Balance(user uint32) int64 {
	b := e.balanceOf(user)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[user]
}

// Durable reports whether the engine has a ledger: then every movement is
// answered once its record is durable.
func (e *Engine) Durable() bool { return e.led != nil }

// Barrier calls done once everything queued to the ledger so far is
// durable (at once without a ledger): an answer that needs no record of
// its own waits there behind earlier ones.
func (e *Engine) Barrier(done ledger.Done) {
	if e.led == nil {
		done.Durable(nil, nil)
		return
	}
	e.led.Append(nil, done)
}

// barrier is Barrier with a function.
func (e *Engine) barrier(fn func(error)) {
	e.Barrier(ledger.DoneFunc(func(_ *ledger.Record, err error) { fn(err) }))
}

// Restore rebuilds the engine from a replayed ledger: balances, live group
// packets with their idempotency keys, and campaigns. It sorts the
// recipients of st's packets in place (st is not used after).
func (e *Engine) Restore(st *ledger.State) {
	now := e.clock.Now()
	e.groups.restore(st, now)
	e.camps.restore(st, now)
	e.keys.restore(st, now)
	for u, b := range st.Balances {
		e.balanceOf(u).m[u] = b
	}
}
