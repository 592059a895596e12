package server

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

// SystemUser is the account of packets the server itself sends (the
// generator): user id 0, which no client can log in as.
const SystemUser = 0

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

// balShard holds the balances of the users that map to it. Its lock is
// held while a movement's record is queued to the ledger, so the balances
// recorded follow the order of the file.
type balShard struct {
	mu sync.Mutex
	m  map[uint32]int64
	_  [64]byte
}

// groups is the group-packet engine.
type groups struct {
	s      *Server
	shards []gshard
	idem   []idemShard
	bals   []balShard
	nextID atomic.Uint32

	// live counts the packets in memory (not yet evicted), every sender's.
	live atomic.Int64

	// counters
	sent, opens, grants, refunds atomic.Uint64
	grantedAmount, refunded      atomic.Uint64
	fundedAmount, pushes         atomic.Uint64
	tooMany, rateLimited         atomic.Uint64 // sends refused by the limits
}

const groupShards = 64

func newGroups(s *Server) *groups {
	g := &groups{s: s, shards: make([]gshard, groupShards), idem: make([]idemShard, groupShards), bals: make([]balShard, groupShards)}
	for i := range g.shards {
		g.shards[i].packets = map[uint32]*gpacket{}
		g.shards[i].rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		g.idem[i].m = map[idemKey]uint32{}
		g.idem[i].live = map[uint32]uint32{}
		g.idem[i].rate = map[uint32]uint32{}
		g.bals[i].m = map[uint32]int64{}
	}
	return g
}

func (g *groups) shard(id uint32) *gshard      { return &g.shards[id%uint32(len(g.shards))] }
func (g *groups) idemOf(u uint32) *idemShard   { return &g.idem[u%uint32(len(g.idem))] }
func (g *groups) balanceOf(u uint32) *balShard { return &g.bals[u%uint32(len(g.bals))] }

// move changes user's balance by delta, fills rec's User and Balance and
// queues rec to the ledger (if any) under the balance lock.
func (g *groups) move(user uint32, delta int64, rec *ledger.Record, done ledger.Done) {
	b := g.balanceOf(user)
	b.mu.Lock()
	bal := b.m[user] + delta
	b.m[user] = bal
	rec.User, rec.Balance = user, bal
	if g.s.led != nil {
		g.s.led.Append(rec, done)
	}
	b.mu.Unlock()
}

// Balance returns a user's balance in cents.
func (g *groups) Balance(user uint32) int64 {
	b := g.balanceOf(user)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[user]
}

// SendSpec is a group packet to send.
type SendSpec struct {
	Sender     uint32
	Total      uint32
	Shares     uint32
	Key        uint64
	Recipients []uint32
}

// validate checks a send against the limits and returns the result code
// of the first problem, or ResultOK.
func (s *Server) validateSend(sp *SendSpec) uint32 {
	o := &s.opts
	switch {
	case sp.Total == 0 || sp.Total > o.MaxPacketCents:
		return proto.ResultBadAmount
	case sp.Shares < 1 || sp.Shares > o.MaxShares:
		return proto.ResultBadShares
	case uint64(sp.Shares)*uint64(o.MinShareCents) > uint64(sp.Total):
		return proto.ResultTooFewCents
	case len(sp.Recipients) == 0 || len(sp.Recipients) > o.MaxRecipients:
		return proto.ResultBadRecipients
	}
	sorted := slices.Clone(sp.Recipients)
	slices.Sort(sorted)
	for i, u := range sorted {
		if u == SystemUser || u < o.UsersFrom || (o.Users > 0 && u > o.Users) || (i > 0 && sorted[i-1] == u) {
			return proto.ResultBadRecipients
		}
	}
	return proto.ResultOK
}

// sendDone learns the outcome of a send: the packet id and a result code.
// It runs on the ledger writer (or inline without a ledger).
type sendDone func(packet uint32, result uint32)

// send creates a group packet. Invalid sends are answered at once and
// change nothing; a valid one is funded durably, then done is called and
// every online recipient is pushed the packet. A repeated idempotency key
// answers the original packet (once it is durable).
func (g *groups) send(sp SendSpec, done sendDone) {
	s := g.s
	if r := s.validateSend(&sp); r != proto.ResultOK {
		done(0, r)
		return
	}
	is := g.idemOf(sp.Sender)
	k := idemKey{sp.Sender, sp.Key}
	is.mu.Lock()
	if id, ok := is.m[k]; ok {
		is.mu.Unlock()
		g.barrier(func(err error) {
			if err != nil {
				done(id, proto.ResultLedgerFailed)
				return
			}
			done(id, proto.ResultOK)
		})
		return
	}
	if r := g.admit(is, &sp); r != proto.ResultOK {
		is.mu.Unlock()
		done(0, r)
		return
	}
	id := g.nextID.Add(1)
	is.m[k] = id
	is.mPeak = max(is.mPeak, len(is.m))
	p := &gpacket{id: id, sender: sp.Sender, total: uint64(sp.Total), shares: sp.Shares, key: sp.Key,
		expiry: s.opts.Now().Add(s.opts.PacketTTL).UnixMilli(),
		sorted: slices.Clone(sp.Recipients), remaining: uint64(sp.Total), left: sp.Shares}
	copy(p.first3[:], sp.Recipients)
	slices.Sort(p.sorted)
	sh := g.shard(id)
	sh.mu.Lock()
	sh.packets[id] = p
	sh.peak = max(sh.peak, len(sh.packets))
	sh.fifo.push(p)
	// The record keeps the recipients in the sender's order; sp.Recipients
	// is this send's own slice, never changed after.
	rec := ledger.Record{Kind: ledger.KindFunded, Time: s.opts.Now().UnixMilli(), Packet: id, Amount: p.total, Shares: p.shares,
		Remaining: p.total, SharesLeft: p.shares, Expiry: p.expiry, Key: p.key, Recipients: sp.Recipients}
	fin := func(err error) {
		if err != nil {
			s.opts.Logger.Error("ledger: funding a packet", "packet", id, "err", err)
			done(id, proto.ResultLedgerFailed)
			return
		}
		g.sent.Add(1)
		g.fundedAmount.Add(p.total)
		done(id, proto.ResultOK)
		g.push(p)
	}
	if s.led == nil {
		g.move(sp.Sender, -int64(p.total), &rec, nil)
		sh.mu.Unlock()
		is.mu.Unlock()
		fin(nil)
		return
	}
	g.move(sp.Sender, -int64(p.total), &rec, ledger.DoneFunc(func(_ *ledger.Record, err error) { fin(err) }))
	sh.mu.Unlock()
	is.mu.Unlock()
}

// admit checks a new send against the limits on live state and, if it
// passes, counts it: the sender's recipients this second (the rate budget,
// recipients x packets), the sender's live packets, and the live packets of
// all. The system account (the generator, the operator's own) is bounded
// by the total alone. is is sp.Sender's idem shard, locked.
func (g *groups) admit(is *idemShard, sp *SendSpec) uint32 {
	o := &g.s.opts
	n := uint32(len(sp.Recipients))
	if sp.Sender != SystemUser {
		if sec := g.s.sec.Load(); sec != is.rateSec {
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

// barrier calls fn once everything queued to the ledger so far is durable
// (at once without a ledger).
func (g *groups) barrier(fn func(error)) {
	if g.s.led == nil {
		fn(nil)
		return
	}
	g.s.led.Append(nil, ledger.DoneFunc(func(_ *ledger.Record, err error) { fn(err) }))
}

// push tells every online recipient of p about it: the classic 0x0004
// frame (three-recipient form) to classic sessions, CmdPush to others.
func (g *groups) push(p *gpacket) {
	s := g.s
	now := s.sec.Load()
	u3 := p.first3
	var classic, ours []byte
	pushed := 0
	for _, u := range p.sorted {
		st := &s.sets[int(u)%len(s.sets)]
		st.mu.Lock()
		ss := st.sessions[u]
		st.mu.Unlock()
		if ss == nil {
			continue
		}
		var f []byte
		if ss.classic {
			if classic == nil {
				classic = proto.AppendFrame(nil, proto.CmdClassicPush, now, p.id, uint32(p.total), p.shares, u3[0], u3[1], u3[2])
			}
			f = classic
		} else {
			if ours == nil {
				ours = proto.AppendFrame(nil, proto.CmdPush, now, p.id, p.sender, uint32(p.total), p.shares)
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
	g.pushes.Add(uint64(pushed))
}

// openResult is the outcome of an open.
type openResult struct {
	result uint32
	amount uint32
	// durable is true when the answer must wait for the ledger: a new
	// share (its grant record) or a repeat (the first grant's record).
	durable bool
}

// open opens packet id for user. An answer that must be durable (later is
// non-nil: there is a ledger) is built by later, under the packet's lock
// and before its record is queued, and completed by the ledger.
func (g *groups) open(user, id uint32, later func(openResult) ledger.Done) openResult {
	s := g.s
	sh := g.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	g.opens.Add(1)
	p := sh.packets[id]
	switch {
	case p == nil && id != 0 && id <= sh.evictedUpTo:
		return openResult{result: proto.ResultExpired}
	case p == nil:
		return openResult{result: proto.ResultUnknownPacket}
	case !p.isRecipient(user):
		return openResult{result: proto.ResultNotRecipient}
	}
	if a, ok := p.opened[user]; ok {
		r := openResult{result: proto.ResultAlreadyOpened, amount: a}
		if later != nil {
			r.durable = true
			s.led.Append(nil, later(r))
		}
		return r
	}
	now := s.opts.Now()
	if p.expired || now.UnixMilli() >= p.expiry {
		return openResult{result: proto.ResultExpired}
	}
	if p.left == 0 {
		return openResult{result: proto.ResultPacketTaken}
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
	r := openResult{result: proto.ResultOK, amount: uint32(amount)}
	var done ledger.Done
	if later != nil {
		r.durable = true
		done = later(r)
	}
	g.move(user, int64(amount), &rec, done)
	return r
}

// pending lists the packets user may still open (at most max).
func (g *groups) pending(user uint32, limit int) []uint32 {
	nowMs := g.s.opts.Now().UnixMilli()
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

// expire refunds every packet past its expiry, tells online senders, and
// evicts the packet from memory (the ledger keeps it) with its idempotency
// key: an open of it is answered "expired" from then on, and a send with
// its key makes a new packet.
func (g *groups) expire(now time.Time) {
	s := g.s
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
				st := &s.sets[int(sender)%len(s.sets)]
				st.mu.Lock()
				ss := st.sessions[sender]
				st.mu.Unlock()
				if ss != nil && !ss.classic {
					ss.post(proto.AppendFrame(nil, proto.CmdRefund, s.sec.Load(), id, uint32(amount)), false)
				}
			}
			if s.led == nil {
				g.move(sender, int64(amount), &rec, nil)
				notify()
				continue
			}
			g.move(sender, int64(amount), &rec, ledger.DoneFunc(func(_ *ledger.Record, err error) {
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

// restore rebuilds the live packets, their idempotency keys and the
// balances from a replayed ledger. Closed packets are not in st; every id
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
	for u, b := range st.Balances {
		g.balanceOf(u).m[u] = b
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
