package money

import (
	"cmp"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"hongbao/internal/ledger"
	"hongbao/internal/proto"
	"hongbao/internal/split"
)

// gpacket is a group packet. Its shard's lock guards every field but the
// immutable ones (id, sender, total, shares, expiry, key, recipients).
type gpacket struct {
	id, sender uint32
	total      uint64
	shares     uint32
	expiry     int64     // Unix milliseconds
	key        uint64    // the sender's idempotency key
	first3     [3]uint32 // the first three recipients in the sender's order, for the classic push
	sorted     []uint32  // recipients sorted, for lookup and pushes (the ledger keeps the sender's order)

	remaining uint64
	left      uint32
	opened    map[uint32]uint32 // user -> amount; nil until the first open
	expired   bool
}

func (p *gpacket) isRecipient(u uint32) bool {
	_, ok := slices.BinarySearch(p.sorted, u)
	return ok
}

// gshard owns the packets whose id maps to it: every operation on a packet
// runs under its shard's lock and no lock is shared between shards.
type gshard struct {
	mu      sync.Mutex
	packets map[uint32]*gpacket // live packets: expired ones are evicted
	peak    int                 // the most packets held since the map was last rebuilt (shrunk)
	fifo    pqueue              // by expiry (the TTL is one for all, so creation order)
	// evictedUpTo is the highest id evicted from this shard: an unknown id
	// at or below it is a packet that expired.
	evictedUpTo uint32
	rng         *rand.Rand
	_           [64]byte
}

type idemKey struct {
	sender uint32
	key    uint64
}

// idemShard holds, for the senders that map to it, their idempotency keys
// (while the packet lives), their live packets, and the recipients they
// sent to in the current second (the rate budget). Every map here is
// bounded: keys and live counts by the live packets, the rate map by the
// senders active in one second.
type idemShard struct {
	mu       sync.Mutex
	m        map[idemKey]uint32
	mPeak    int
	live     map[uint32]uint32 // sender -> live packets (absent: none)
	livePeak int
	rateSec  uint64            // the second rate counts
	rate     map[uint32]uint32 // sender -> recipients sent to in rateSec
	_        [64]byte
}

// groups is the group-packet engine.
type groups struct {
	e      *Engine
	shards []gshard
	idem   []idemShard
	nextID atomic.Uint32

	// live counts the packets in memory (not yet evicted), every sender's.
	live atomic.Int64

	// counters
	sent, opens, grants, refunds atomic.Uint64
	grantedAmount, refunded      atomic.Uint64
	fundedAmount, pushes         atomic.Uint64
	tooMany, rateLimited         atomic.Uint64 // sends refused by the limits
	insufficient                 atomic.Uint64 // sends refused for the sender's balance
}

const groupShards = 64

func (g *groups) init(e *Engine) {
	g.e, g.shards, g.idem = e, make([]gshard, groupShards), make([]idemShard, groupShards)
	for i := range g.shards {
		g.shards[i].packets = map[uint32]*gpacket{}
		g.shards[i].rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		g.idem[i].m = map[idemKey]uint32{}
		g.idem[i].live = map[uint32]uint32{}
		g.idem[i].rate = map[uint32]uint32{}
	}
}

func (g *groups) shard(id uint32) *gshard    { return &g.shards[id%uint32(len(g.shards))] }
func (g *groups) idemOf(u uint32) *idemShard { return &g.idem[u%uint32(len(g.idem))] }

// SendSpec is a group packet to send.
type SendSpec struct {
	Sender     uint32
	Total      uint32
	Shares     uint32
	Key        uint64
	Recipients []uint32
}

// validateSend checks a send against the limits and returns the result
// code of the first problem, or ResultOK with the recipients sorted (a new
// slice: the packet keeps it for lookups, so a send sorts them once).
func (e *Engine) validateSend(sp *SendSpec) ([]uint32, uint32) {
	o := &e.lim
	switch {
	case sp.Total == 0 || sp.Total > o.MaxPacketCents:
		return nil, proto.ResultBadAmount
	case sp.Shares < 1 || sp.Shares > o.MaxShares:
		return nil, proto.ResultBadShares
	case uint64(sp.Shares)*uint64(o.MinShareCents) > uint64(sp.Total):
		return nil, proto.ResultTooFewCents
	case len(sp.Recipients) == 0 || len(sp.Recipients) > o.MaxRecipients:
		return nil, proto.ResultBadRecipients
	}
	sorted := slices.Clone(sp.Recipients)
	slices.Sort(sorted)
	for i, u := range sorted {
		if u == SystemUser || u < o.UsersFrom || (o.Users > 0 && u > o.Users) || (i > 0 && sorted[i-1] == u) {
			return nil, proto.ResultBadRecipients
		}
	}
	return sorted, proto.ResultOK
}

// Send creates a group packet: it is funded from the sender's balance
// (durably, with a ledger), then every online recipient is pushed it. A
// repeated idempotency key answers the original packet while it lives.
//
// When the answer is known at once (a refusal, or any answer without a
// ledger) Send returns it with later false and never calls done. Otherwise
// it returns later true, and done learns the packet id and result once the
// funding record (or, for a repeat, everything before it) is durable; done
// runs on the ledger's writer before the recipients are pushed.
func (e *Engine) Send(sp SendSpec, done func(id, result uint32)) (id, result uint32, later bool) {
	return e.groups.send(sp, done)
}

func (g *groups) send(sp SendSpec, done func(id, result uint32)) (uint32, uint32, bool) {
	e := g.e
	sorted, r := e.validateSend(&sp)
	if r != proto.ResultOK {
		return 0, r, false
	}
	is := g.idemOf(sp.Sender)
	k := idemKey{sp.Sender, sp.Key}
	is.mu.Lock()
	if id, ok := is.m[k]; ok {
		is.mu.Unlock()
		if e.led == nil {
			return id, proto.ResultOK, false
		}
		e.barrier(func(err error) {
			if err != nil {
				done(id, proto.ResultLedgerFailed)
				return
			}
			done(id, proto.ResultOK)
		})
		return id, proto.ResultOK, true
	}
	// A first look, so that a send the balance plainly cannot cover
	// takes no id and no place in the limits; the check that counts is
	// the one tryMove makes under the balance lock below.
	if !covered(sp.Sender, e.Balance(sp.Sender), int64(sp.Total)) {
		is.mu.Unlock()
		g.insufficient.Add(1)
		return 0, proto.ResultInsufficientFunds, false
	}
	if r := g.admit(is, &sp); r != proto.ResultOK {
		is.mu.Unlock()
		return 0, r, false
	}
	id := g.nextID.Add(1)
	p := &gpacket{id: id, sender: sp.Sender, total: uint64(sp.Total), shares: sp.Shares, key: sp.Key,
		expiry: e.clock.Now().Add(e.lim.PacketTTL).UnixMilli(),
		sorted: sorted, remaining: uint64(sp.Total), left: sp.Shares}
	copy(p.first3[:], sp.Recipients)
	sh := g.shard(id)
	sh.mu.Lock()
	// The record keeps the recipients in the sender's order; sp.Recipients
	// is this send's own slice, never changed after.
	rec := ledger.Record{Kind: ledger.KindFunded, Time: e.clock.Now().UnixMilli(), Packet: id, Amount: p.total, Shares: p.shares,
		Remaining: p.total, SharesLeft: p.shares, Expiry: p.expiry, Key: p.key, Recipients: sp.Recipients}
	var done2 ledger.Done
	if e.led != nil {
		done2 = ledger.DoneFunc(func(_ *ledger.Record, err error) {
			if err != nil {
				e.log.Error("ledger: funding a packet", "packet", id, "err", err)
				done(id, proto.ResultLedgerFailed)
				return
			}
			g.funded(p)
			done(id, proto.ResultOK)
			g.push(p)
		})
	}
	// The debit is checked and queued under the balance lock while the
	// shard's lock is held: an open of the packet (pushed once the record
	// is durable) waits for the shard, so it finds the packet below.
	if !e.tryMove(sp.Sender, -int64(p.total), &rec, done2) {
		sh.mu.Unlock()
		g.unadmit(is, &sp)
		is.mu.Unlock()
		g.insufficient.Add(1)
		return 0, proto.ResultInsufficientFunds, false
	}
	is.m[k] = id
	is.mPeak = max(is.mPeak, len(is.m))
	sh.packets[id] = p
	sh.peak = max(sh.peak, len(sh.packets))
	sh.fifo.push(p)
	if e.led == nil {
		sh.mu.Unlock()
		is.mu.Unlock()
		g.funded(p)
		g.push(p)
		return id, proto.ResultOK, false
	}
	sh.mu.Unlock()
	is.mu.Unlock()
	return id, proto.ResultOK, true
}

// funded counts a packet made (durably, with a ledger).
func (g *groups) funded(p *gpacket) {
	g.sent.Add(1)
	g.fundedAmount.Add(p.total)
}

// admit checks a new send against the limits on live state and, if it
// passes, counts it: the sender's recipients this second (the rate budget,
// recipients x packets), the sender's live packets, and the live packets of
// all. The system account (the generator, the operator's own) is bounded
// by the total alone. is is sp.Sender's idem shard, locked.
func (g *groups) admit(is *idemShard, sp *SendSpec) uint32 {
	o := &g.e.lim
	n := uint32(len(sp.Recipients))
	if sp.Sender != SystemUser {
		if sec := g.e.clock.Second(); sec != is.rateSec {
			// Only this second's senders are kept: a map that grew in a
			// busy second is replaced rather than kept at its peak.
			if len(is.rate) > 1024 {
				is.rate = make(map[uint32]uint32)
			} else {
				clear(is.rate)
			}
			is.rateSec = sec
		}
		if used := is.rate[sp.Sender]; uint64(used)+uint64(n) > uint64(o.MaxSenderRate) {
			g.rateLimited.Add(1)
			return proto.ResultRateLimited
		}
		if is.live[sp.Sender] >= uint32(o.MaxLivePerSender) {
			g.tooMany.Add(1)
			return proto.ResultTooManyPackets
		}
	}
	if g.live.Add(1) > int64(o.MaxLivePackets) {
		g.live.Add(-1)
		g.tooMany.Add(1)
		return proto.ResultTooManyPackets
	}
	if sp.Sender != SystemUser {
		is.rate[sp.Sender] += n
		is.live[sp.Sender]++
		is.livePeak = max(is.livePeak, len(is.live))
	}
	return proto.ResultOK
}

// unadmit takes back what admit counted for a send refused after it.
// is is sp.Sender's idem shard, locked.
func (g *groups) unadmit(is *idemShard, sp *SendSpec) {
	g.live.Add(-1)
	if sp.Sender == SystemUser {
		return
	}
	if is.rateSec == g.e.clock.Second() {
		if n := is.rate[sp.Sender]; n > uint32(len(sp.Recipients)) {
			is.rate[sp.Sender] = n - uint32(len(sp.Recipients))
		} else {
			delete(is.rate, sp.Sender)
		}
	}
	if n := is.live[sp.Sender]; n > 1 {
		is.live[sp.Sender] = n - 1
	} else {
		delete(is.live, sp.Sender)
	}
}

// forget drops what is kept of an evicted packet outside its shard: its
// idempotency key (a send with that key is a new packet from now on) and
// its count in the live packets.
func (g *groups) forget(sender uint32, key uint64, id uint32) {
	is := g.idemOf(sender)
	is.mu.Lock()
	k := idemKey{sender, key}
	if is.m[k] == id {
		delete(is.m, k)
		is.m = shrunk(is.m, &is.mPeak)
	}
	if sender != SystemUser {
		if n := is.live[sender]; n > 1 {
			is.live[sender] = n - 1
		} else {
			delete(is.live, sender)
			is.live = shrunk(is.live, &is.livePeak)
		}
	}
	is.mu.Unlock()
	g.live.Add(-1)
}

// shrunk returns m, or, once it holds under a quarter of the most entries
// it held (*peak, at least 1,024), a copy sized to what it holds: a Go map
// keeps the room of deleted entries, so a map that drained after a peak
// would otherwise hold its peak's memory for good.
func shrunk[K comparable, V any](m map[K]V, peak *int) map[K]V {
	if *peak < 1024 || len(m) >= *peak/4 {
		return m
	}
	c := make(map[K]V, len(m))
	maps.Copy(c, m)
	*peak = len(c)
	return c
}

// pqueue is a FIFO of packets. Popping advances head; the dead front is
// dropped once it is half the slice, and the array is reallocated smaller
// once it is mostly empty, so a queue that drained after a peak gives its
// memory back.
type pqueue struct {
	buf  []*gpacket
	head int
}

func (q *pqueue) push(p *gpacket)                  { q.buf = append(q.buf, p) }
func (q *pqueue) len() int                         { return len(q.buf) - q.head }
func (q *pqueue) at(i int) *gpacket                { return q.buf[q.head+i] }
func (q *pqueue) sort(cmp func(a, b *gpacket) int) { slices.SortFunc(q.buf[q.head:], cmp) }

// drop removes the first n packets.
func (q *pqueue) drop(n int) {
	clear(q.buf[q.head : q.head+n])
	q.head += n
	live := len(q.buf) - q.head
	switch {
	case cap(q.buf) > 64 && live < cap(q.buf)/4:
		q.buf, q.head = append(make([]*gpacket, 0, 2*live), q.buf[q.head:]...), 0
	case live == 0:
		q.buf, q.head = q.buf[:0], 0
	case q.head >= len(q.buf)/2:
		copy(q.buf, q.buf[q.head:])
		clear(q.buf[live:])
		q.buf, q.head = q.buf[:live], 0
	}
}

// push tells every online recipient of p about it (the Sink), and counts
// those told.
func (g *groups) push(p *gpacket) {
	if g.e.sink == nil {
		return
	}
	n := g.e.sink.Push(Push{Packet: p.id, Sender: p.sender, Total: uint32(p.total), Shares: p.shares, First3: p.first3}, p.sorted)
	g.pushes.Add(uint64(n))
}

// OpenResult is the outcome of an open.
type OpenResult struct {
	Result uint32
	Amount uint32
	// Durable is true when the answer waits for the ledger: a new share
	// (its grant record) or a repeat (the first grant's record).
	Durable bool
}

// Open opens group packet id for user. With a ledger, an answer that must
// be durable (a new share, or a repeat) is built by later, under the
// packet's lock and before its record is queued, and completed by the
// ledger; Open returns it with Durable set. Otherwise, and always without a
// ledger (later may then be nil), the result is the answer.
func (e *Engine) Open(user, id uint32, later func(OpenResult) ledger.Done) OpenResult {
	if e.led == nil {
		later = nil
	}
	return e.groups.open(user, id, later)
}

// open is Open; later is nil without a ledger.
func (g *groups) open(user, id uint32, later func(OpenResult) ledger.Done) OpenResult {
	e := g.e
	sh := g.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	g.opens.Add(1)
	p := sh.packets[id]
	switch {
	case p == nil && id != 0 && id <= sh.evictedUpTo:
		return OpenResult{Result: proto.ResultExpired}
	case p == nil:
		return OpenResult{Result: proto.ResultUnknownPacket}
	case !p.isRecipient(user):
		return OpenResult{Result: proto.ResultNotRecipient}
	}
	if a, ok := p.opened[user]; ok {
		r := OpenResult{Result: proto.ResultAlreadyOpened, Amount: a}
		if later != nil {
			r.Durable = true
			e.led.Append(nil, later(r))
		}
		return r
	}
	now := e.clock.Now()
	if p.expired || now.UnixMilli() >= p.expiry {
		return OpenResult{Result: proto.ResultExpired}
	}
	if p.left == 0 {
		return OpenResult{Result: proto.ResultPacketTaken}
	}
	amount := split.Next(sh.rng, p.remaining, uint64(p.left))
	p.remaining -= amount
	p.left--
	if p.opened == nil {
		p.opened = make(map[uint32]uint32, min(p.shares, 8))
	}
	p.opened[user] = uint32(amount)
	g.grants.Add(1)
	g.grantedAmount.Add(amount)
	rec := ledger.Record{Kind: ledger.KindGrant, Time: now.UnixMilli(), Packet: id, Amount: amount, Remaining: p.remaining, SharesLeft: p.left}
	r := OpenResult{Result: proto.ResultOK, Amount: uint32(amount)}
	var done ledger.Done
	if later != nil {
		r.Durable = true
		done = later(r)
	}
	e.move(user, int64(amount), &rec, done)
	return r
}

// Pending lists the group packets user may still open (at most limit).
func (e *Engine) Pending(user uint32, limit int) []uint32 { return e.groups.pending(user, limit) }

func (g *groups) pending(user uint32, limit int) []uint32 {
	nowMs := g.e.clock.Now().UnixMilli()
	var out []uint32
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		for j := sh.fifo.len() - 1; j >= 0 && len(out) < limit; j-- {
			p := sh.fifo.at(j)
			if p.expired || nowMs >= p.expiry {
				break
			}
			if p.left > 0 && p.isRecipient(user) {
				if _, done := p.opened[user]; !done {
					out = append(out, p.id)
				}
			}
		}
		sh.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// Expire refunds every group packet past its expiry at now, tells online
// senders (the Sink, once the refund is durable), and evicts the packet
// from memory (the ledger keeps it) with its idempotency key: an open of
// it is answered "expired" from then on, and a send with its key makes a
// new packet.
func (e *Engine) Expire(now time.Time) { e.groups.expire(now) }

func (g *groups) expire(now time.Time) {
	e := g.e
	nowMs := now.UnixMilli()
	var gone []*gpacket
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		n := 0
		for n < sh.fifo.len() && sh.fifo.at(n).expiry <= nowMs {
			p := sh.fifo.at(n)
			n++
			delete(sh.packets, p.id)
			gone = append(gone, p)
			sh.evictedUpTo = max(sh.evictedUpTo, p.id)
			if p.expired {
				continue
			}
			p.expired = true
			if p.remaining == 0 {
				continue
			}
			amount := p.remaining
			p.remaining, p.left = 0, 0
			g.refunds.Add(1)
			g.refunded.Add(amount)
			rec := ledger.Record{Kind: ledger.KindRefund, Time: nowMs, Packet: p.id, Amount: amount}
			id, sender := p.id, p.sender
			notify := func() {
				if e.sink != nil {
					e.sink.Refund(sender, id, uint32(amount))
				}
			}
			if e.led == nil {
				e.move(sender, int64(amount), &rec, nil)
				notify()
				continue
			}
			e.move(sender, int64(amount), &rec, ledger.DoneFunc(func(_ *ledger.Record, err error) {
				if err == nil {
					notify()
				}
			}))
		}
		if n > 0 {
			sh.fifo.drop(n)
			sh.packets = shrunk(sh.packets, &sh.peak)
		}
		sh.mu.Unlock()
		// Outside the shard's lock: a send takes the idem lock first.
		for _, p := range gone {
			g.forget(p.sender, p.key, p.id)
		}
		clear(gone)
		gone = gone[:0]
	}
}

// restore rebuilds the live packets and their idempotency keys from a
// replayed ledger. Closed packets are not in st; every id
// up to st.MaxPacket that is not restored has expired. It sorts the
// recipients of st's packets in place (st is not used after).
func (g *groups) restore(st *ledger.State, now time.Time) {
	g.nextID.Store(st.MaxPacket)
	nowMs := now.UnixMilli()
	for i := range g.shards {
		g.shards[i].evictedUpTo = st.MaxPacket
	}
	for _, id := range slices.Sorted(maps.Keys(st.Packets)) {
		lp := st.Packets[id]
		if lp.Expired || (lp.Remaining == 0 && lp.Expiry <= nowMs) {
			continue // refunded, or every share granted and expired: nothing left to do
		}
		p := &gpacket{id: id, sender: lp.Sender, total: lp.Total, shares: lp.Shares, expiry: lp.Expiry, key: lp.Key,
			remaining: lp.Remaining, left: lp.SharesLeft, expired: lp.Expired}
		copy(p.first3[:], lp.Recipients)
		p.sorted = lp.Recipients
		slices.Sort(p.sorted)
		if len(lp.Opened) > 0 {
			p.opened = make(map[uint32]uint32, len(lp.Opened))
			for u, a := range lp.Opened {
				p.opened[u] = uint32(a)
			}
		}
		sh := g.shard(id)
		is := g.idemOf(p.sender)
		is.m[idemKey{p.sender, p.key}] = id
		if p.sender != SystemUser {
			is.live[p.sender]++
		}
		g.live.Add(1)
		sh.packets[id] = p
		sh.fifo.push(p)
	}
	for i := range g.shards {
		sh := &g.shards[i]
		sh.peak = len(sh.packets)
		sh.fifo.sort(func(a, b *gpacket) int { return cmp.Compare(a.expiry, b.expiry) })
	}
	for i := range g.idem {
		g.idem[i].mPeak, g.idem[i].livePeak = len(g.idem[i].m), len(g.idem[i].live)
	}
}

// GroupStats count group packets.
type GroupStats struct {
	Sent          uint64 `json:"sent"`
	FundedAmount  uint64 `json:"funded_amount"`
	Opens         uint64 `json:"opens"`
	Grants        uint64 `json:"grants"`
	GrantedAmount uint64 `json:"granted_amount"`
	Refunds       uint64 `json:"refunds"`
	Refunded      uint64 `json:"refunded_amount"`
	Pushes        uint64 `json:"pushes"` // pushes queued to online recipients
	// Sends refused by the limits of live state (results 30 and 31).
	TooMany     uint64 `json:"too_many_packets"`
	RateLimited uint64 `json:"rate_limited"`
	// Sends refused because the sender's balance did not cover them
	// (result 32).
	InsufficientFunds uint64 `json:"insufficient_funds"`
	Live              int64  `json:"live"` // packets in memory now (a gauge)
}

// GroupStats reads the group-packet counters.
func (e *Engine) GroupStats() GroupStats {
	g := &e.groups
	return GroupStats{Sent: g.sent.Load(), FundedAmount: g.fundedAmount.Load(), Opens: g.opens.Load(), Grants: g.grants.Load(),
		GrantedAmount: g.grantedAmount.Load(), Refunds: g.refunds.Load(), Refunded: g.refunded.Load(), Pushes: g.pushes.Load(),
		TooMany: g.tooMany.Load(), RateLimited: g.rateLimited.Load(), InsufficientFunds: g.insufficient.Load(), Live: g.live.Load()}
}

// Holdings is what the engine holds in memory for group packets. Every
// part is bounded by the live packets, and all drain to zero once they
// expire (tests check that the memory of a peak is given back).
type Holdings struct {
	Packets  int   // in the shards' maps
	Queued   int   // in the shards' expiry queues
	QueueCap int   // the room of those queues' arrays
	Keys     int   // idempotency keys
	Senders  int   // senders with a count of live packets
	Live     int64 // the live counter the limits check
}

// Holdings counts what the engine holds, one shard at a time.
func (e *Engine) Holdings() Holdings {
	var h Holdings
	g := &e.groups
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		h.Packets += len(sh.packets)
		h.Queued += sh.fifo.len()
		h.QueueCap += cap(sh.fifo.buf)
		sh.mu.Unlock()
	}
	for i := range g.idem {
		is := &g.idem[i]
		is.mu.Lock()
		h.Keys += len(is.m)
		h.Senders += len(is.live)
		is.mu.Unlock()
	}
	h.Live = g.live.Load()
	return h
}
