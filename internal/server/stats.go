package server

import (
	"sync"

	"hongbao/internal/ledger"
	"sync/atomic"
	"time"
)

// counters are bumped by one event loop each (no contention); readers sum
// them across loops.
type counters struct {
	conns, opened, closed           atomic.Int64
	requests, shakes                atomic.Uint64
	got, none, allTaken, overloaded atomic.Uint64
	logins, errors, grantedAmount   atomic.Uint64
	pings                           atomic.Uint64
	_                               [64]byte
}

// Totals are cumulative counts since the server started.
type Totals struct {
	Requests      uint64 `json:"requests"`
	Shakes        uint64 `json:"shakes"`
	Got           uint64 `json:"got"`
	None          uint64 `json:"none"`
	AllTaken      uint64 `json:"all_taken"`
	Overloaded    uint64 `json:"overloaded"`
	Logins        uint64 `json:"logins"`
	Errors        uint64 `json:"errors"`
	GrantedAmount uint64 `json:"granted_amount"`
	Accepted      uint64 `json:"accepted"`
	Closed        uint64 `json:"closed"`
}

func (t Totals) sub(o Totals) Totals {
	return Totals{
		Requests: t.Requests - o.Requests, Shakes: t.Shakes - o.Shakes, Got: t.Got - o.Got,
		None: t.None - o.None, AllTaken: t.AllTaken - o.AllTaken, Overloaded: t.Overloaded - o.Overloaded,
		Logins: t.Logins - o.Logins, Errors: t.Errors - o.Errors, GrantedAmount: t.GrantedAmount - o.GrantedAmount,
		Accepted: t.Accepted - o.Accepted, Closed: t.Closed - o.Closed,
	}
}

// Stats is what the admin API's /api/stats returns.
type Stats struct {
	Time        int64          `json:"time"`
	Connections int64          `json:"connections"`
	LoggedIn    int64          `json:"logged_in"`
	Waiting     int            `json:"waiting_packets"`
	Totals      Totals         `json:"totals"`
	Rates       Totals         `json:"rates"` // over the last full second
	Campaigns   []CampaignInfo `json:"campaigns"`
	Groups      GroupStats     `json:"group_packets"`
	Ledger      *ledger.Stats  `json:"ledger,omitempty"`
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
}

func (s *Server) totals() (t Totals, conns int64) {
	for _, l := range s.loops {
		c := &l.counters
		conns += c.conns.Load()
		t.Requests += c.requests.Load()
		t.Shakes += c.shakes.Load()
		t.Got += c.got.Load()
		t.None += c.none.Load()
		t.AllTaken += c.allTaken.Load()
		t.Overloaded += c.overloaded.Load()
		t.Logins += c.logins.Load()
		t.Errors += c.errors.Load()
		t.GrantedAmount += c.grantedAmount.Load()
		t.Accepted += uint64(c.opened.Load())
		t.Closed += uint64(c.closed.Load())
	}
	return t, conns
}

// rater keeps the totals at the last two second boundaries.
type rater struct {
	mu         sync.Mutex
	prev, last Totals
	lastTime   time.Time
}

func (r *rater) tick(now time.Time, t Totals) {
	r.mu.Lock()
	r.prev, r.last, r.lastTime = r.last, t, now
	r.mu.Unlock()
}

func (r *rater) rates() Totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last.sub(r.prev)
}

// Stats returns a snapshot of the server's counters and campaigns.
func (s *Server) Stats() Stats {
	t, conns := s.totals()
	var online int64
	waiting := 0
	for i := range s.sets {
		online += s.sets[i].online.Load()
		waiting += s.sets[i].waiting()
	}
	g := s.groups
	st := Stats{
		Time: s.opts.Now().Unix(), Connections: conns, LoggedIn: online, Waiting: waiting,
		Totals: t, Rates: s.rater.rates(), Campaigns: s.camps.infos(),
		Groups: GroupStats{Sent: g.sent.Load(), FundedAmount: g.fundedAmount.Load(), Opens: g.opens.Load(), Grants: g.grants.Load(),
			GrantedAmount: g.grantedAmount.Load(), Refunds: g.refunds.Load(), Refunded: g.refunded.Load()},
	}
	if s.led != nil {
		ls := s.led.Stats()
		st.Ledger = &ls
	}
	return st
}
