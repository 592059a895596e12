package money

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"hongbao/internal/pace"
	"hongbao/internal/proto"
)

// GeneratorSpec asks for Count group packets at Rate per second from the
// system account (user 0), each of Recipients distinct random users in
// [From, To] with Shares shares and an amount uniform in [AmountMin,
// AmountMax] cents (defaults: 3 recipients, 3 shares, Limits' amount range).
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
func (e *Engine) StartGenerator(spec GeneratorSpec) (GeneratorInfo, error) {
	if spec.Recipients == 0 {
		spec.Recipients = 3
	}
	if spec.Shares == 0 {
		spec.Shares = spec.Recipients
	}
	if spec.AmountMin == 0 {
		spec.AmountMin = max(e.lim.AmountMin, spec.Shares*e.lim.MinShareCents)
	}
	if spec.AmountMax == 0 {
		spec.AmountMax = max(e.lim.AmountMax, spec.AmountMin)
	}
	switch {
	case spec.Count == 0 || spec.Rate == 0:
		return GeneratorInfo{}, fmt.Errorf("%w: count and rate must be positive", ErrBadCampaign)
	case spec.From == 0 || spec.To < spec.From || uint64(spec.To-spec.From)+1 < uint64(spec.Recipients):
		return GeneratorInfo{}, fmt.Errorf("%w: need 1 <= from <= to with at least %d users in [from, to]", ErrBadCampaign, spec.Recipients)
	case spec.AmountMax < spec.AmountMin:
		return GeneratorInfo{}, fmt.Errorf("%w: amount_min above amount_max", ErrBadCampaign)
	}
	if err := checkLimits(&e.lim, spec.Count, spec.Rate); err != nil {
		return GeneratorInfo{}, err
	}
	probe := SendSpec{Total: spec.AmountMin, Shares: spec.Shares, Recipients: make([]uint32, spec.Recipients)}
	for i := range probe.Recipients {
		probe.Recipients[i] = spec.From + uint32(i)
	}
	if _, r := e.validateSend(&probe); r != proto.ResultOK {
		return GeneratorInfo{}, fmt.Errorf("%w: its packets break the send limits (result %d)", ErrBadCampaign, r)
	}
	probe.Total = spec.AmountMax
	if _, r := e.validateSend(&probe); r != proto.ResultOK {
		return GeneratorInfo{}, fmt.Errorf("%w: amount_max breaks the send limits (result %d)", ErrBadCampaign, r)
	}
	g := &generator{stop: make(chan struct{})}
	e.gens.mu.Lock()
	running := 0
	for _, o := range e.gens.list {
		if !o.done.Load() {
			running++
		}
	}
	if running >= e.lim.MaxCampaigns {
		e.gens.mu.Unlock()
		return GeneratorInfo{}, fmt.Errorf("%w: %d generators are running, the most allowed", ErrTooManyCampaigns, running)
	}
	g.info = GeneratorInfo{ID: uint32(len(e.gens.list) + 1), GeneratorSpec: spec}
	e.gens.list = append(e.gens.list, g)
	e.gens.mu.Unlock()
	e.gens.wg.Add(1)
	go e.runGenerator(g)
	return g.snapshot(), nil
}

func (g *generator) snapshot() GeneratorInfo {
	i := g.info
	i.Sent, i.Failed, i.Amount, i.Done = g.sent.Load(), g.failed.Load(), g.amount.Load(), g.done.Load()
	return i
}

// Generators lists the generators.
func (e *Engine) Generators() []GeneratorInfo {
	e.gens.mu.Lock()
	defer e.gens.mu.Unlock()
	out := make([]GeneratorInfo, 0, len(e.gens.list))
	for _, g := range e.gens.list {
		out = append(out, g.snapshot())
	}
	return out
}

// StopGenerators stops every generator and waits until they stopped.
func (e *Engine) StopGenerators() {
	e.gens.mu.Lock()
	for _, g := range e.gens.list {
		if !g.done.Load() {
			select {
			case <-g.stop:
			default:
				close(g.stop)
			}
		}
	}
	e.gens.mu.Unlock()
	e.gens.wg.Wait()
}

func (e *Engine) runGenerator(g *generator) {
	defer e.gens.wg.Done()
	defer g.done.Store(true)
	sp := g.info.GeneratorSpec
	rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(g.info.ID)))
	t := time.NewTicker(pace.Tick(float64(sp.Rate)))
	defer t.Stop()
	// Unlike a campaign's, the generator's backlog is kept whole (MaxLag
	// 0): after a stall it catches up, so Count packets take Count/Rate
	// seconds (the runner sizes Count to its phases).
	p := pace.New(int(sp.Rate), 0, e.clock.Now())
	account := func(amount uint32, r uint32) {
		if r == proto.ResultOK {
			g.sent.Add(1)
			g.amount.Add(uint64(amount))
		} else {
			g.failed.Add(1)
		}
	}
	var made uint32
	for made < sp.Count {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		n := min(p.Due(e.clock.Now()), int(sp.Count-made))
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
			_, r, later := e.Send(SendSpec{Sender: SystemUser, Total: amount, Shares: sp.Shares, Key: key, Recipients: to},
				func(_, r uint32) { account(amount, r) })
			if !later {
				account(amount, r)
			}
		}
	}
}
