package server

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"hongbao/internal/ledger"
	"hongbao/internal/pace"
	"hongbao/internal/proto"
)

// GeneratorSpec asks for Count group packets at Rate per second from the
// system account (user 0), each of Recipients distinct random users in
// [From, To] with Shares shares and an amount uniform in [AmountMin,
// AmountMax] cents (defaults: 3 recipients, 3 shares, the server's amount range).
type GeneratorSpec struct {
	Count      uint32 `json:"count"`
	Rate       uint32 `json:"rate"`
	From       uint32 `json:"from"`
	To         uint32 `json:"to"`
	Recipients uint32 `json:"recipients,omitempty"`
	Shares     uint32 `json:"shares,omitempty"`
	AmountMin  uint32 `json:"amount_min,omitempty"`
	AmountMax  uint32 `json:"amount_max,omitempty"`
}

// GeneratorInfo is a generator's progress.
type GeneratorInfo struct {
	ID uint32 `json:"id"`
	GeneratorSpec
	Sent   uint64 `json:"sent"`
	Failed uint64 `json:"failed"`
	Amount uint64 `json:"amount"`
	Done   bool   `json:"done"`
}

type generator struct {
	info                 GeneratorInfo
	sent, failed, amount atomic.Uint64
	done                 atomic.Bool
	stop                 chan struct{}
}

type generators struct {
	mu   sync.Mutex
	list []*generator
	wg   sync.WaitGroup
}

// StartGenerator starts creating group packets from the system account.
func (s *Server) StartGenerator(spec GeneratorSpec) (GeneratorInfo, error) {
	if spec.Recipients == 0 {
		spec.Recipients = 3
	}
	if spec.Shares == 0 {
		spec.Shares = spec.Recipients
	}
	if spec.AmountMin == 0 {
		spec.AmountMin = max(s.opts.AmountMin, spec.Shares*s.opts.MinShareCents)
	}
	if spec.AmountMax == 0 {
		spec.AmountMax = max(s.opts.AmountMax, spec.AmountMin)
	}
	switch {
	case spec.Count == 0 || spec.Rate == 0:
		return GeneratorInfo{}, fmt.Errorf("%w: count and rate must be positive", ErrBadCampaign)
	case spec.From == 0 || spec.To < spec.From || uint64(spec.To-spec.From)+1 < uint64(spec.Recipients):
		return GeneratorInfo{}, fmt.Errorf("%w: need 1 <= from <= to with at least %d users in [from, to]", ErrBadCampaign, spec.Recipients)
	case spec.AmountMax < spec.AmountMin:
		return GeneratorInfo{}, fmt.Errorf("%w: amount_min above amount_max", ErrBadCampaign)
	}
	if err := checkLimits(&s.opts, spec.Count, spec.Rate); err != nil {
		return GeneratorInfo{}, err
	}
	probe := SendSpec{Total: spec.AmountMin, Shares: spec.Shares, Recipients: make([]uint32, spec.Recipients)}
	for i := range probe.Recipients {
		probe.Recipients[i] = spec.From + uint32(i)
	}
	if r := s.validateSend(&probe); r != proto.ResultOK {
		return GeneratorInfo{}, fmt.Errorf("%w: its packets break the send limits (result %d)", ErrBadCampaign, r)
	}
	probe.Total = spec.AmountMax
	if r := s.validateSend(&probe); r != proto.ResultOK {
		return GeneratorInfo{}, fmt.Errorf("%w: amount_max breaks the send limits (result %d)", ErrBadCampaign, r)
	}
	g := &generator{stop: make(chan struct{})}
	s.gens.mu.Lock()
	running := 0
	for _, o := range s.gens.list {
		if !o.done.Load() {
			running++
		}
	}
	if running >= s.opts.MaxCampaigns {
		s.gens.mu.Unlock()
		return GeneratorInfo{}, fmt.Errorf("%w: %d generators are running, the most allowed", ErrTooManyCampaigns, running)
	}
	g.info = GeneratorInfo{ID: uint32(len(s.gens.list) + 1), GeneratorSpec: spec}
	s.gens.list = append(s.gens.list, g)
	s.gens.mu.Unlock()
	s.gens.wg.Add(1)
	go s.runGenerator(g)
	return g.snapshot(), nil
}

func (g *generator) snapshot() GeneratorInfo {
	i := g.info
	i.Sent, i.Failed, i.Amount, i.Done = g.sent.Load(), g.failed.Load(), g.amount.Load(), g.done.Load()
	return i
}

// Generators lists the generators.
func (s *Server) Generators() []GeneratorInfo {
	s.gens.mu.Lock()
	defer s.gens.mu.Unlock()
	out := make([]GeneratorInfo, 0, len(s.gens.list))
	for _, g := range s.gens.list {
		out = append(out, g.snapshot())
	}
	return out
}

func (s *Server) stopGenerators() {
	s.gens.mu.Lock()
	for _, g := range s.gens.list {
		if !g.done.Load() {
			select {
			case <-g.stop:
			default:
				close(g.stop)
			}
		}
	}
	s.gens.mu.Unlock()
	s.gens.wg.Wait()
}

func (s *Server) runGenerator(g *generator) {
	defer s.gens.wg.Done()
	defer g.done.Store(true)
	sp := g.info.GeneratorSpec
	rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(g.info.ID)))
	t := time.NewTicker(pace.Tick(float64(sp.Rate)))
	defer t.Stop()
	// Unlike a campaign's, the generator's backlog is kept whole (MaxLag
	// 0): after a stall it catches up, so Count packets take Count/Rate
	// seconds (the runner sizes Count to its phases).
	p := pace.New(int(sp.Rate), 0, s.opts.Now())
	var made uint32
	for made < sp.Count {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		n := min(p.Due(s.opts.Now()), int(sp.Count-made))
		p.Take(n)
		for due := made + uint32(n); made < due; made++ {
			to := make([]uint32, 0, sp.Recipients)
			for len(to) < int(sp.Recipients) {
				u := sp.From + uint32(rng.Uint64N(uint64(sp.To-sp.From)+1))
				dup := false
				for _, v := range to {
					dup = dup || v == u
				}
				if !dup {
					to = append(to, u)
				}
			}
			amount := sp.AmountMin + uint32(rng.Uint64N(uint64(sp.AmountMax-sp.AmountMin)+1))
			key := uint64(g.info.ID)<<32 | uint64(made)
			s.groups.send(SendSpec{Sender: SystemUser, Total: amount, Shares: sp.Shares, Key: key, Recipients: to},
				func(_ uint32, r uint32) {
					if r == proto.ResultOK {
						g.sent.Add(1)
						g.amount.Add(uint64(amount))
					} else {
						g.failed.Add(1)
					}
				})
		}
	}
}

// AuditReport is the result of checking the ledger.
type AuditReport struct {
	Records    uint64            `json:"records"`
	ByKind     map[string]uint64 `json:"by_kind"`
	Packets    int               `json:"packets"`
	Campaigns  int               `json:"campaigns"`
	Users      int               `json:"users"`
	Granted    uint64            `json:"granted_amount"`
	Violations []string          `json:"violations"`
	OK         bool              `json:"ok"`
}

// ErrNoLedger is returned by Audit on a server without a ledger.
var ErrNoLedger = errors.New("server runs without a ledger")

// Audit checks the ledger of a running server: it takes a consistent
// snapshot of the live state (every packet shard and balance shard locked
// for the moment of copying, with a mark queued to the ledger at that
// point), waits until the mark is durable, replays the file up to the mark,
// checks its invariants, and checks that the live state agrees with it:
// every packet's remaining amount, shares and who opened what, and every
// balance.
func (s *Server) Audit() (AuditReport, error) {
	if s.led == nil {
		return AuditReport{}, ErrNoLedger
	}
	type livePacket struct {
		remaining uint64
		left      uint32
		expiry    int64
		opened    map[uint32]uint32
	}
	g := s.groups
	packets := map[uint32]livePacket{}
	balances := map[uint32]int64{}
	type mark struct {
		off int64
		err error
	}
	ch := make(chan mark, 1)
	for i := range g.shards {
		g.shards[i].mu.Lock()
	}
	for i := range g.bals {
		g.bals[i].mu.Lock()
	}
	// Read under the locks: every record before the mark was stamped before
	// this, so a packet the replay closed as expired has expiry <= nowMs.
	nowMs := s.opts.Now().UnixMilli()
	for i := range g.shards {
		for id, p := range g.shards[i].packets {
			packets[id] = livePacket{p.remaining, p.left, p.expiry, maps.Clone(p.opened)}
		}
	}
	for i := range g.bals {
		maps.Copy(balances, g.bals[i].m)
	}
	s.led.Mark(func(off int64, err error) { ch <- mark{off, err} })
	for i := range g.bals {
		g.bals[i].mu.Unlock()
	}
	for i := range g.shards {
		g.shards[i].mu.Unlock()
	}
	m := <-ch
	if m.err != nil {
		return AuditReport{}, m.err
	}
	st, err := ledger.ReplayTo(s.opts.DataDir, m.off)
	if err != nil {
		return AuditReport{}, err
	}
	rep := ReportOf(st)
	var diff []string
	for id, lp := range st.Packets {
		p, ok := packets[id]
		switch {
		case !ok && (lp.Expired || lp.Expiry <= nowMs):
			continue // expired: evicted from memory
		case !ok:
			diff = append(diff, fmt.Sprintf("packet %d is in the ledger but not in the server", id))
			continue
		case p.remaining != lp.Remaining || p.left != lp.SharesLeft:
			diff = append(diff, fmt.Sprintf("packet %d: server has %d cents in %d shares left, the ledger %d in %d", id, p.remaining, p.left, lp.Remaining, lp.SharesLeft))
		case len(p.opened) != len(lp.Opened):
			diff = append(diff, fmt.Sprintf("packet %d: opened by %d users in the server, %d in the ledger", id, len(p.opened), len(lp.Opened)))
		}
		for u, a := range lp.Opened {
			if p.opened[u] != uint32(a) {
				diff = append(diff, fmt.Sprintf("packet %d: user %d got %d cents in the server, %d in the ledger", id, u, p.opened[u], a))
			}
		}
		delete(packets, id)
	}
	for id, p := range packets {
		if p.expiry <= nowMs && id <= st.MaxPacket {
			continue // expired, not yet evicted; the replay closed it
		}
		diff = append(diff, fmt.Sprintf("packet %d is in the server but not in the ledger", id))
	}
	for u, b := range balances {
		if st.Balances[u] != b {
			diff = append(diff, fmt.Sprintf("user %d: balance %d in the server, %d in the ledger", u, b, st.Balances[u]))
		}
	}
	for u, b := range st.Balances {
		if _, ok := balances[u]; !ok && b != 0 {
			diff = append(diff, fmt.Sprintf("user %d: balance %d in the ledger, none in the server", u, b))
		}
	}
	slices.Sort(diff)
	rep.Violations = append(rep.Violations, diff...)
	rep.OK = len(rep.Violations) == 0
	return rep, nil
}

// ReportOf summarises a replayed ledger and its violations.
func ReportOf(st *ledger.State) AuditReport {
	rep := AuditReport{Records: st.Records, ByKind: map[string]uint64{}, Packets: int(st.Funded), Campaigns: len(st.Campaigns),
		Users: len(st.Balances), Granted: st.GrantedTotal, Violations: st.Violations()}
	for k, n := range st.ByKind {
		rep.ByKind[k.String()] = n
	}
	if rep.Violations == nil {
		rep.Violations = []string{}
	}
	rep.OK = len(rep.Violations) == 0
	return rep
}
