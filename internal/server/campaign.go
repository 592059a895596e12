package server

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"hongbao/internal/ledger"
	"hongbao/internal/pace"
	"hongbao/internal/split"
)

// CampaignSpec asks for Count shake packets issued at Rate per second, with
// amounts uniform in [Min, Max] cents, or, when Budget is set, a total of
// Budget cents split among the packets by the double-mean rule.
type CampaignSpec struct {
	Count  uint32 `json:"count"`
	Rate   uint32 `json:"rate"`
	Min    uint32 `json:"min,omitempty"`
	Max    uint32 `json:"max,omitempty"`
	Budget uint64 `json:"budget,omitempty"`
}

// ErrBadCampaign wraps every reason a campaign spec is refused.
var ErrBadCampaign = errors.New("bad campaign")

// ErrNoCampaign is returned for an unknown campaign id.
var ErrNoCampaign = errors.New("no such campaign")

// ErrTooManyCampaigns is returned when as many campaigns (or generators)
// run as the server allows (Options.MaxCampaigns).
var ErrTooManyCampaigns = errors.New("too many running")

// checkLimits refuses a campaign or generator over the server's limits.
func checkLimits(o *Options, count, rate uint32) error {
	switch {
	case count > o.MaxCampaignCount:
		return fmt.Errorf("%w: count %d above the limit of %d packets", ErrBadCampaign, count, o.MaxCampaignCount)
	case rate > o.MaxCampaignRate:
		return fmt.Errorf("%w: rate %d above the limit of %d packets/s", ErrBadCampaign, rate, o.MaxCampaignRate)
	}
	return nil
}

func (c CampaignSpec) validate() error {
	switch {
	case c.Count == 0:
		return fmt.Errorf("%w: count must be positive", ErrBadCampaign)
	case c.Rate == 0:
		return fmt.Errorf("%w: rate must be positive", ErrBadCampaign)
	case c.Budget > 0 && (c.Min != 0 || c.Max != 0):
		return fmt.Errorf("%w: give either min/max or budget, not both", ErrBadCampaign)
	case c.Budget > 0 && c.Budget < uint64(c.Count):
		return fmt.Errorf("%w: budget %d cents cannot give %d packets a cent each", ErrBadCampaign, c.Budget, c.Count)
	case c.Budget > 0 && c.Budget-uint64(c.Count-1) > math.MaxUint32:
		// One packet may get all but a cent per other packet, and an amount
		// travels as a uint32.
		return fmt.Errorf("%w: budget too large for %d packets: one packet could exceed %d cents", ErrBadCampaign, c.Count, uint32(math.MaxUint32))
	case c.Budget == 0 && (c.Min == 0 || c.Max < c.Min):
		return fmt.Errorf("%w: need 1 <= min <= max cents, got min=%d max=%d", ErrBadCampaign, c.Min, c.Max)
	}
	return nil
}

// Campaign states.
const (
	StateRunning = "running"
	StateDone    = "done"    // every packet issued
	StateStopped = "stopped" // stopped before the end
)

// CampaignInfo is a campaign's progress as the admin API shows it.
type CampaignInfo struct {
	ID uint32 `json:"id"`
	CampaignSpec
	State        string `json:"state"`
	Issued       uint32 `json:"issued"`
	Taken        uint64 `json:"taken"`
	AmountIssued uint64 `json:"amount_issued"`
	AmountTaken  uint64 `json:"amount_taken"`
	// Released are the packets issued, not taken, and taken back out of
	// the SETs when the campaign was stopped: never granted, so not in the
	// ledger. Issued = Taken + Released + still waiting.
	Released       uint32 `json:"released"`
	AmountReleased uint64 `json:"amount_released"`
}

// campaign is a running shake campaign. The issuer goroutine owns the issue
// fields; the take counters are bumped by the event loops.
type campaign struct {
	id   uint32
	spec CampaignSpec

	// owned by the issuer, guarded by campaigns.mu for readers
	state        string
	issued       uint32
	amountIssued uint64
	pace         pace.Pacer
	released     uint32
	amtReleased  uint64

	taken       atomic.Uint64
	amountTaken atomic.Uint64
}

// campaigns issues packets of all running campaigns into the sets, paced
// within each second and spread over the sets in proportion to their users.
type campaigns struct {
	mu     sync.Mutex
	list   []*campaign
	nextID uint32
	rng    *rand.Rand

	led        *ledger.Log // nil without a ledger
	opts       *Options
	sets       []set
	perSet     []uint64 // packets issued into each set, for proportional spreading
	nextPacket atomic.Uint32

	// outstanding counts packets of all campaigns not yet taken and still to
	// be issued; with started set, zero means "all taken".
	outstanding atomic.Int64
	started     atomic.Bool
	// waiting counts packets issued into the sets and not yet taken or
	// released; the issuer keeps it under opts.MaxWaiting.
	waiting atomic.Int64
}

func newCampaigns(sets []set, o *Options) *campaigns {
	return &campaigns{sets: sets, opts: o, perSet: make([]uint64, len(sets)), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

func (cs *campaigns) start(spec CampaignSpec, now time.Time) (CampaignInfo, error) {
	if err := spec.validate(); err != nil {
		return CampaignInfo{}, err
	}
	if err := checkLimits(cs.opts, spec.Count, spec.Rate); err != nil {
		return CampaignInfo{}, err
	}
	cs.mu.Lock()
	running := 0
	for _, c := range cs.list {
		if c.state == StateRunning {
			running++
		}
	}
	if running >= cs.opts.MaxCampaigns {
		cs.mu.Unlock()
		return CampaignInfo{}, fmt.Errorf("%w: %d campaigns are running, the most allowed", ErrTooManyCampaigns, running)
	}
	cs.nextID++
	c := &campaign{id: cs.nextID, spec: spec, state: StateRunning, pace: pace.New(int(spec.Rate), maxLag, now)}
	cs.list = append(cs.list, c)
	cs.outstanding.Add(int64(spec.Count))
	cs.started.Store(true)
	info := c.info()
	if cs.led != nil {
		// Queued under the lock, so the record precedes any of its grants.
		rec := ledger.Record{Kind: ledger.KindCampaign, Time: now.UnixMilli(), Campaign: c.id, Count: spec.Count, Rate: spec.Rate,
			Min: spec.Min, Max: spec.Max, Budget: spec.Budget}
		wait := make(chan error, 1)
		cs.led.Append(&rec, ledger.DoneFunc(func(_ *ledger.Record, err error) { wait <- err }))
		cs.mu.Unlock()
		if err := <-wait; err != nil {
			return info, err
		}
		return info, nil
	}
	cs.mu.Unlock()
	return info, nil
}

// restore resumes the campaigns of a replayed ledger: what was granted
// stays granted; packets that were issued but not granted are lost with the
// process and issued again; a running campaign resumes its pace from now.
func (cs *campaigns) restore(st *ledger.State, now time.Time) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.nextID = st.MaxCampaign
	cs.nextPacket.Store(st.MaxShakePacket)
	for _, id := range slices.Sorted(maps.Keys(st.Campaigns)) {
		lc := st.Campaigns[id]
		c := &campaign{id: id, spec: CampaignSpec{Count: lc.Count, Rate: lc.Rate, Min: lc.Min, Max: lc.Max, Budget: lc.Budget},
			state: StateRunning, pace: pace.New(int(lc.Rate), maxLag, now), issued: min(lc.Taken, lc.Count), amountIssued: lc.AmountTaken}
		c.taken.Store(uint64(lc.Taken))
		c.amountTaken.Store(lc.AmountTaken)
		switch {
		case lc.Stopped:
			c.state = StateStopped
		case c.issued >= lc.Count:
			c.state = StateDone
		default:
			cs.outstanding.Add(int64(lc.Count - c.issued))
		}
		cs.list = append(cs.list, c)
		cs.started.Store(true)
	}
}

// stop ends a running campaign: nothing more is issued, and its packets
// waiting in the SETs are taken back out (released). They were never
// granted, so the ledger has nothing of them and the audit is unchanged: a
// stopped campaign's budget still covers granted + not granted. A campaign
// that issued everything (done) is left as it is.
func (cs *campaigns) stop(id uint32) (CampaignInfo, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.list {
		if c.id == id {
			if c.state != StateRunning {
				return c.info(), nil
			}
			cs.outstanding.Add(-int64(c.spec.Count - c.issued))
			c.state = StateStopped
			if cs.led != nil {
				cs.led.Append(&ledger.Record{Kind: ledger.KindCampaignStop, Time: cs.opts.Now().UnixMilli(), Campaign: id}, nil)
			}
			for i := range cs.sets {
				st := &cs.sets[i]
				st.mu.Lock()
				n, amount := st.queue.removeIf(func(p *packet) bool { return p.campaign == c })
				st.mu.Unlock()
				c.released += uint32(n)
				c.amtReleased += amount
				cs.waiting.Add(-int64(n))
				cs.outstanding.Add(-int64(n))
			}
			return c.info(), nil
		}
	}
	return CampaignInfo{}, fmt.Errorf("%w: %d", ErrNoCampaign, id)
}

func (cs *campaigns) infos() []CampaignInfo {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := make([]CampaignInfo, 0, len(cs.list))
	for _, c := range cs.list {
		out = append(out, c.info())
	}
	return out
}

func (c *campaign) info() CampaignInfo {
	return CampaignInfo{
		ID: c.id, CampaignSpec: c.spec, State: c.state, Issued: c.issued,
		Taken: c.taken.Load(), AmountIssued: c.amountIssued, AmountTaken: c.amountTaken.Load(),
		Released: c.released, AmountReleased: c.amtReleased,
	}
}

// allTaken reports whether campaigns ran and nothing is left to take.
func (cs *campaigns) allTaken() bool {
	return cs.started.Load() && cs.outstanding.Load() <= 0
}

// The issuer wakes at pace.Tick of the running campaigns' total rate (half
// the interval between packets, within 5-100 ms), and once a second when
// no campaign runs (the ticker's second boundary; a started campaign kicks
// it).
const minTick = pace.MinTick

func tickFor(rate float64) time.Duration { return pace.Tick(rate) }

// maxLag bounds catch-up: after a stall (a paused process, a full
// MaxWaiting) a campaign issues at most maxLag's worth of its backlog, plus
// the packet just due, and forgets the rest rather than burst it out.
const maxLag = 50 * time.Millisecond

// issue issues every packet due at now and returns the running
// campaigns' total rate.
func (cs *campaigns) issue(now time.Time) (rate float64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	room := int64(cs.opts.MaxWaiting) - cs.waiting.Load()
	for _, c := range cs.list {
		if c.state != StateRunning {
			continue
		}
		rate += float64(c.spec.Rate)
		// At MaxWaiting the campaign falls behind; its pacer forgets what is
		// more than maxLag late, so that is not burst out later.
		n := min(c.pace.Due(now), int(c.spec.Count-c.issued), int(max(room, 0)))
		for range n {
			cs.issueOne(c)
		}
		c.pace.Take(n)
		room -= int64(n)
		if c.issued == c.spec.Count {
			c.state = StateDone
		}
	}
	return rate
}

func (cs *campaigns) issueOne(c *campaign) {
	var amount uint64
	left := uint64(c.spec.Count - c.issued)
	if c.spec.Budget > 0 {
		amount = split.Next(cs.rng, c.spec.Budget-c.amountIssued, left)
	} else {
		amount = uint64(c.spec.Min) + cs.rng.Uint64N(uint64(c.spec.Max-c.spec.Min)+1)
	}
	p := packet{id: cs.nextPacket.Add(1), amount: uint32(amount), campaign: c}
	cs.sets[cs.pickSet()].put(p)
	cs.waiting.Add(1)
	c.issued++
	c.amountIssued += amount
}

// pickSet chooses the set furthest below its fair share of packets, where
// the fair share is proportional to its online users (equal shares when
// nobody is online).
func (cs *campaigns) pickSet() int {
	var total int64
	for i := range cs.sets {
		total += cs.sets[i].online.Load()
	}
	var issued uint64
	for _, n := range cs.perSet {
		issued += n
	}
	best, bestDeficit := 0, -1e18
	for i := range cs.sets {
		var share float64
		if total > 0 {
			share = float64(cs.sets[i].online.Load()) / float64(total)
		} else {
			share = 1 / float64(len(cs.sets))
		}
		if share == 0 {
			continue
		}
		if d := share*float64(issued+1) - float64(cs.perSet[i]); d > bestDeficit {
			best, bestDeficit = i, d
		}
	}
	cs.perSet[best]++
	return best
}

// taken records that a packet of c was granted.
func (cs *campaigns) taken(p packet) {
	p.campaign.taken.Add(1)
	p.campaign.amountTaken.Add(uint64(p.amount))
	cs.outstanding.Add(-1)
	cs.waiting.Add(-1)
}
