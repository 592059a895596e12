package ledger

import (
	"container/heap"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"
)

// KeyWindow is how long a top-up's or withdrawal's idempotency key is
// remembered: the same key within it moves the money once. Replay keeps the
// keys of the last KeyWindow of the ledger (by record time), so the memory
// they take is bounded by the rate of top-ups, not by history.
const KeyWindow = 24 * time.Hour

// MoneyKey is a top-up's or withdrawal's idempotency key: the two kinds
// have keys of their own.
type MoneyKey struct {
	Kind Kind
	Key  uint64
}

// KeyUse is the movement a MoneyKey made.
type KeyUse struct {
	User    uint32
	Amount  uint64
	Balance int64
	Time    int64 // Unix milliseconds
}

// Packet is a group packet as the ledger knows it.
type Packet struct {
	ID         uint32
	Sender     uint32
	Total      uint64
	Shares     uint32
	Expiry     int64 // Unix milliseconds
	Key        uint64
	Recipients []uint32
	Opened     map[uint32]uint64 // user -> amount
	Granted    uint64
	Refunded   uint64
	Remaining  uint64 // as last recorded
	SharesLeft uint32 // as last recorded
	Expired    bool   // its remainder was refunded
}

// Campaign is a shake campaign's durable progress.
type Campaign struct {
	ID          uint32
	Count, Rate uint32
	Min, Max    uint32
	Budget      uint64
	Stopped     bool
	Taken       uint32
	AmountTaken uint64
	MinShare    uint64
}

// State is what replaying a ledger rebuilds: the live packets with who
// opened what, campaigns' progress and users' balances, plus every
// invariant violation seen on the way.
//
// A packet is closed, checked and dropped from Packets once nothing more
// can happen to it: when its refund is recorded, or when every share is
// granted and a later record is past its expiry. So replaying a long
// ledger holds only the packets still live at its end (what a restarted
// server rebuilds), and the ids of closed packets in bitsets, so that a
// record that touches a closed packet is still flagged.
type State struct {
	Packets   map[uint32]*Packet
	Campaigns map[uint32]*Campaign
	// Balances are the users' balances as last recorded; Computed are
	// grants - sends + refunds summed from the records.
	Balances map[uint32]int64
	Computed map[uint32]int64
	// MaxPacket is the highest group packet id, MaxShakePacket the highest
	// shake packet id, MaxCampaign the highest campaign id.
	MaxPacket, MaxShakePacket, MaxCampaign uint32
	Records                                uint64
	ByKind                                 map[Kind]uint64
	// GrantedTotal sums every grant (shares and shake packets), cents.
	GrantedTotal uint64
	// Group packets over the whole ledger, closed ones included: how many
	// were funded and closed, and the cents funded, granted in shares and
	// refunded. FundedAmount = SharesGranted + Refunded + the remaining
	// amount of the packets still in Packets.
	Funded, Closed                        uint64
	FundedAmount, SharesGranted, Refunded uint64
	// Money in and out of the system: top-ups and withdrawals (cents),
	// and the shake packets granted by campaigns (ShakeGranted, part of
	// GrantedTotal). Conservation: TopUps - Withdrawn + ShakeGranted =
	// the sum of every balance (the system account's too) + the remaining
	// amount of the live group packets.
	TopUps, Withdrawn, ShakeGranted uint64
	// Keys are the top-up and withdrawal keys of the last KeyWindow.
	Keys map[MoneyKey]KeyUse

	violations []string
	refunded   idSet       // closed by their refund
	finished   idSet       // closed with every share granted, past expiry
	shakes     idSet       // shake packets granted
	full       expiryQueue // packets with every share granted, by expiry
	now        int64       // the latest record time seen, Unix ms
	keyOrder   []MoneyKey  // Keys in record order, to forget them after KeyWindow
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Packets: map[uint32]*Packet{}, Campaigns: map[uint32]*Campaign{},
		Balances: map[uint32]int64{}, Computed: map[uint32]int64{}, ByKind: map[Kind]uint64{}, Keys: map[MoneyKey]KeyUse{}}
}

func (s *State) violate(format string, a ...any) {
	if len(s.violations) < 10000 {
		s.violations = append(s.violations, fmt.Sprintf(format, a...))
	}
}

func (s *State) balance(r *Record, delta int64) {
	s.Computed[r.User] += delta
	s.Balances[r.User] = r.Balance
	if got, want := r.Balance, s.Computed[r.User]; got != want {
		s.violate("user %d: balance %d recorded after %s of packet %d differs from grants - sends + refunds = %d", r.User, got, r.Kind, r.Packet, want)
		s.Computed[r.User] = got // report each divergence once
	}
	// Only the system account (user 0) may run below zero: it funds the
	// generators' packets.
	if r.User != 0 && r.Balance < 0 {
		s.violate("user %d: balance %d below zero after %s of %d cents (packet %d)", r.User, r.Balance, r.Kind, r.Amount, r.Packet)
	}
}

// keyed applies a top-up or withdrawal's key: a key seen within
// KeyWindow moved money twice.
func (s *State) keyed(r *Record) {
	for len(s.keyOrder) > 0 {
		k := s.keyOrder[0]
		if u, ok := s.Keys[k]; ok && u.Time > s.now-KeyWindow.Milliseconds() {
			break
		}
		delete(s.Keys, k)
		s.keyOrder = s.keyOrder[1:]
	}
	if len(s.keyOrder) == 0 {
		s.keyOrder = nil // let a drained slice's array go
	}
	k := MoneyKey{r.Kind, r.Key}
	if u, dup := s.Keys[k]; dup {
		s.violate("%s key %#x used twice: user %d, %d cents at %d ms, and user %d, %d cents at %d ms", r.Kind, r.Key, u.User, u.Amount, u.Time, r.User, r.Amount, r.Time)
		return
	}
	s.Keys[k] = KeyUse{User: r.User, Amount: r.Amount, Balance: r.Balance, Time: r.Time}
	s.keyOrder = append(s.keyOrder, k)
}

// Apply applies one record, noting any violation it shows.
func (s *State) Apply(r *Record) {
	s.Records++
	s.ByKind[r.Kind]++
	if r.Time > s.now {
		s.now = r.Time
		s.closeFinished()
	}
	switch r.Kind {
	case KindCampaign:
		if _, dup := s.Campaigns[r.Campaign]; dup {
			s.violate("campaign %d started twice", r.Campaign)
			return
		}
		s.Campaigns[r.Campaign] = &Campaign{ID: r.Campaign, Count: r.Count, Rate: r.Rate, Min: r.Min, Max: r.Max, Budget: r.Budget}
		s.MaxCampaign = max(s.MaxCampaign, r.Campaign)
	case KindCampaignStop:
		if c := s.Campaigns[r.Campaign]; c != nil {
			c.Stopped = true
		} else {
			s.violate("unknown campaign %d stopped", r.Campaign)
		}
	case KindShake:
		s.MaxShakePacket = max(s.MaxShakePacket, r.Packet)
		c := s.Campaigns[r.Campaign]
		if c == nil {
			s.violate("shake packet %d granted from unknown campaign %d", r.Packet, r.Campaign)
			return
		}
		if r.Amount < 1 {
			s.violate("shake packet %d of campaign %d granted %d cents (below 1 cent)", r.Packet, r.Campaign, r.Amount)
		}
		if !s.shakes.add(r.Packet) {
			s.violate("shake packet %d of campaign %d granted twice", r.Packet, r.Campaign)
		}
		c.Taken++
		c.AmountTaken += r.Amount
		s.GrantedTotal += r.Amount
		s.ShakeGranted += r.Amount
		s.balance(r, int64(r.Amount))
	case KindFunded:
		if _, dup := s.Packets[r.Packet]; dup || s.refunded.has(r.Packet) || s.finished.has(r.Packet) {
			s.violate("packet %d funded twice", r.Packet)
			return
		}
		p := &Packet{ID: r.Packet, Sender: r.User, Total: r.Amount, Shares: r.Shares, Expiry: r.Expiry, Key: r.Key,
			Recipients: r.Recipients, Opened: map[uint32]uint64{}, Remaining: r.Amount, SharesLeft: r.Shares}
		if r.Shares < 1 || r.Amount < uint64(r.Shares) {
			s.violate("packet %d funded with %d cents for %d shares (below 1 cent a share)", r.Packet, r.Amount, r.Shares)
		}
		s.Packets[r.Packet] = p
		s.MaxPacket = max(s.MaxPacket, r.Packet)
		s.Funded++
		s.FundedAmount += r.Amount
		s.balance(r, -int64(r.Amount))
	case KindGrant:
		p := s.Packets[r.Packet]
		if p == nil && !s.refunded.has(r.Packet) && !s.finished.has(r.Packet) {
			s.violate("share of unknown packet %d granted to user %d", r.Packet, r.User)
			return
		}
		s.GrantedTotal += r.Amount
		s.balance(r, int64(r.Amount))
		switch {
		case p == nil && s.refunded.has(r.Packet):
			s.violate("packet %d: share granted to user %d after its refund", r.Packet, r.User)
			return
		case p == nil:
			s.violate("packet %d: share granted to user %d after every share was granted and it expired", r.Packet, r.User)
			return
		}
		if _, twice := p.Opened[r.User]; twice {
			s.violate("user %d opened packet %d twice", r.User, r.Packet)
		}
		if r.Amount < 1 {
			s.violate("packet %d: share of %d cents to user %d (below 1 cent)", r.Packet, r.Amount, r.User)
		}
		if p.Expired {
			s.violate("packet %d: share granted to user %d after its refund", r.Packet, r.User)
		}
		// The server answers "expired" from the packet's expiry on, with
		// the grant stamped by the same clock reading.
		if p.Expiry > 0 && r.Time >= p.Expiry {
			s.violate("packet %d: share granted to user %d at %d ms, after its expiry at %d ms", r.Packet, r.User, r.Time, p.Expiry)
		}
		p.Opened[r.User] += r.Amount
		p.Granted += r.Amount
		s.SharesGranted += r.Amount
		p.Remaining, p.SharesLeft = r.Remaining, r.SharesLeft
		if p.SharesLeft == 0 && p.Remaining == 0 {
			heap.Push(&s.full, expiring{p.Expiry, p.ID})
			s.closeFinished()
		}
	case KindRefund:
		p := s.Packets[r.Packet]
		if p == nil && !s.refunded.has(r.Packet) && !s.finished.has(r.Packet) {
			s.violate("refund of unknown packet %d", r.Packet)
			return
		}
		s.balance(r, int64(r.Amount))
		switch {
		case p == nil && s.refunded.has(r.Packet):
			s.violate("packet %d refunded twice", r.Packet)
			return
		case p == nil:
			s.violate("packet %d refunded %d cents after every share was granted", r.Packet, r.Amount)
			return
		}
		if p.Expired {
			s.violate("packet %d refunded twice", r.Packet)
		}
		if r.User != p.Sender {
			s.violate("packet %d refunded to user %d, not its sender %d", r.Packet, r.User, p.Sender)
		}
		p.Expired = true
		p.Refunded += r.Amount
		s.Refunded += r.Amount
		p.Remaining, p.SharesLeft = r.Remaining, r.SharesLeft
		s.close(p, &s.refunded)
	case KindTopUp:
		if r.User == 0 {
			s.violate("top-up of %d cents to the system account", r.Amount)
		}
		s.TopUps += r.Amount
		s.balance(r, int64(r.Amount))
		s.keyed(r)
	case KindWithdraw:
		if r.User == 0 {
			s.violate("withdrawal of %d cents from the system account", r.Amount)
		}
		s.Withdrawn += r.Amount
		s.balance(r, -int64(r.Amount))
		s.keyed(r)
	}
}

// closeFinished closes the packets with every share granted whose expiry
// the ledger's time has passed.
func (s *State) closeFinished() {
	for len(s.full) > 0 && s.full[0].expiry <= s.now {
		e := heap.Pop(&s.full).(expiring)
		if p := s.Packets[e.id]; p != nil && !p.Expired && p.SharesLeft == 0 && p.Remaining == 0 {
			s.close(p, &s.finished)
		}
	}
}

// close checks a packet's invariants for the last time and drops it,
// remembering its id in set.
func (s *State) close(p *Packet, set *idSet) {
	for _, v := range packetViolations(p) {
		s.violate("%s", v)
	}
	delete(s.Packets, p.ID)
	set.add(p.ID)
	s.Closed++
}

// packetViolations checks one packet's invariants.
func packetViolations(p *Packet) []string {
	var out []string
	if p.Total != p.Granted+p.Refunded+p.Remaining {
		out = append(out, fmt.Sprintf("packet %d: funded %d differs from granted %d + refunded %d + remaining %d",
			p.ID, p.Total, p.Granted, p.Refunded, p.Remaining))
	}
	if int(p.Shares) != len(p.Opened)+int(p.SharesLeft) && !p.Expired {
		out = append(out, fmt.Sprintf("packet %d: %d shares differ from %d opened + %d left", p.ID, p.Shares, len(p.Opened), p.SharesLeft))
	}
	if len(p.Opened) > int(p.Shares) {
		out = append(out, fmt.Sprintf("packet %d: opened by %d users, more than its %d shares", p.ID, len(p.Opened), p.Shares))
	}
	return out
}

// Violations checks the invariants over the whole state and returns every
// violation found, the ones seen while replaying (closed packets
// included) first. Empty means the ledger is consistent.
func (s *State) Violations() []string {
	out := append([]string(nil), s.violations...)
	var remaining uint64
	for _, id := range slices.Sorted(maps.Keys(s.Packets)) {
		p := s.Packets[id]
		remaining += p.Remaining
		out = append(out, packetViolations(p)...)
	}
	if s.FundedAmount != s.SharesGranted+s.Refunded+remaining {
		out = append(out, fmt.Sprintf("group packets: funded %d cents differ from granted %d + refunded %d + remaining %d",
			s.FundedAmount, s.SharesGranted, s.Refunded, remaining))
	}
	for _, id := range slices.Sorted(maps.Keys(s.Campaigns)) {
		c := s.Campaigns[id]
		if c.Taken > c.Count {
			out = append(out, fmt.Sprintf("campaign %d: %d packets granted, more than its %d", id, c.Taken, c.Count))
		}
		if c.Budget > 0 {
			notIssued := int64(c.Budget) - int64(c.AmountTaken)
			if notIssued < int64(c.Count-min(c.Taken, c.Count)) {
				out = append(out, fmt.Sprintf("campaign %d: budget %d differs from granted %d + not issued %d (too little left for the %d packets not granted)",
					id, c.Budget, c.AmountTaken, notIssued, c.Count-min(c.Taken, c.Count)))
			}
		} else if c.AmountTaken > uint64(c.Count)*uint64(c.Max) || c.AmountTaken < uint64(c.Taken)*uint64(c.Min) {
			out = append(out, fmt.Sprintf("campaign %d: granted %d cents outside %d packets x [%d, %d]", id, c.AmountTaken, c.Taken, c.Min, c.Max))
		}
	}
	users := make([]uint32, 0, len(s.Balances))
	for u := range s.Balances {
		users = append(users, u)
	}
	sort.Slice(users, func(i, j int) bool { return users[i] < users[j] })
	var sum int64
	for _, u := range users {
		sum += s.Balances[u]
		if s.Balances[u] != s.Computed[u] {
			out = append(out, fmt.Sprintf("user %d: balance %d differs from grants - sends + refunds = %d", u, s.Balances[u], s.Computed[u]))
		}
		if u != 0 && s.Balances[u] < 0 {
			out = append(out, fmt.Sprintf("user %d: balance %d below zero", u, s.Balances[u]))
		}
	}
	// Money is neither made nor lost inside: what came in (top-ups and
	// campaigns' shake grants) less what went out is held in balances and
	// in the live packets' remainders.
	if in := int64(s.TopUps) - int64(s.Withdrawn) + int64(s.ShakeGranted); in != sum+int64(remaining) {
		out = append(out, fmt.Sprintf("conservation: top-ups %d - withdrawals %d + shake grants %d = %d differ from balances %d + packet remainders %d = %d",
			s.TopUps, s.Withdrawn, s.ShakeGranted, in, sum, remaining, sum+int64(remaining)))
	}
	return out
}

// idSet is a set of ids, sparse in blocks of 65,536: ids are handed out in
// sequence, so a million of them cost about 128 KiB.
type idSet map[uint32]*[1024]uint64

// add inserts id and reports whether it was new.
func (s *idSet) add(id uint32) bool {
	if *s == nil {
		*s = idSet{}
	}
	b := (*s)[id>>16]
	if b == nil {
		b = new([1024]uint64)
		(*s)[id>>16] = b
	}
	w, bit := (id&0xffff)>>6, uint64(1)<<(id&63)
	if b[w]&bit != 0 {
		return false
	}
	b[w] |= bit
	return true
}

func (s idSet) has(id uint32) bool {
	b := s[id>>16]
	return b != nil && b[(id&0xffff)>>6]&(uint64(1)<<(id&63)) != 0
}

// expiring is a packet id with its expiry, in expiryQueue.
type expiring struct {
	expiry int64
	id     uint32
}

// expiryQueue is a min-heap of packets by expiry (container/heap).
type expiryQueue []expiring

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].expiry < q[j].expiry }
func (q expiryQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *expiryQueue) Push(x any)        { *q = append(*q, x.(expiring)) }
func (q *expiryQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}
