package server

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hongbao/internal/ledger"
	"hongbao/internal/money"
	"hongbao/internal/proto"
)

// counters are bumped by one event loop each (no contention); readers sum
// them across loops. Requests are counted by command (commands) and
// connections closed by reason (disconnects): fixed arrays indexed by
// commandIndex and disconnectIndex, on the loop's own cache lines.
type counters struct {
	conns, opened, closed           atomic.Int64
	shakes                          atomic.Uint64
	got, none, allTaken, overloaded atomic.Uint64
	logins, errors, grantedAmount   atomic.Uint64
	outboxDropped                   atomic.Uint64 // frames post could not queue
	commands                        [numCommands]atomic.Uint64
	disconnects                     [numDisconnects]atomic.Uint64
	_                               [64]byte
}

// Request commands counted apart, in the order of sample.ServerCommands.
const (
	cmdLogin = iota
	cmdShake
	cmdClassicOpen
	cmdTokenLogin
	cmdPing
	cmdPong
	cmdSend
	cmdOpen
	cmdList
	cmdOther
	numCommands
)

// commandIndex maps a request's command to its counter.
func commandIndex(c proto.Cmd) int {
	switch c {
	case proto.CmdShake:
		return cmdShake
	case proto.CmdLogin:
		return cmdLogin
	case proto.CmdClassicOpen:
		return cmdClassicOpen
	case proto.CmdTokenLogin:
		return cmdTokenLogin
	case proto.CmdPing:
		return cmdPing
	case proto.CmdPong:
		return cmdPong
	case proto.CmdSend:
		return cmdSend
	case proto.CmdOpen:
		return cmdOpen
	case proto.CmdList:
		return cmdList
	}
	return cmdOther
}

// Disconnect counters, in the order of sample.DisconnectReasons: protocol
// reason r (1 ..) at r-1, then the closes that carry no reason.
const (
	discHangup     = int(proto.NumReasons) - 1 // the client closed (EOF, reset)
	discIOError    = discHangup + 1            // another read or write error
	discStopped    = discHangup + 2            // the event loops stopped
	numDisconnects = discHangup + 3
)

// disconnectIndex classifies a close: by the reason the server gave (why,
// 0 for none), else by gnet's error.
func disconnectIndex(why proto.Reason, err error) int {
	switch {
	case why != proto.ReasonNone && why < proto.NumReasons:
		return int(why) - 1
	case err == nil:
		return discStopped
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return discHangup
	}
	return discIOError
}

// Totals are cumulative counts since the server started.
type Totals struct {
	Requests      uint64 `json:"requests"` // the sum of Commands
	Shakes        uint64 `json:"shakes"`
	Got           uint64 `json:"got"`
	None          uint64 `json:"none"`
	AllTaken      uint64 `json:"all_taken"`
	Overloaded    uint64 `json:"overloaded"`
	Logins        uint64 `json:"logins"`
	Errors        uint64 `json:"errors"`
	GrantedAmount uint64 `json:"granted_amount"`
	Accepted      uint64 `json:"accepted"`
	Closed        uint64 `json:"closed"` // the sum of Disconnects
	// Shed counts connections closed at once because the server was full
	// (Disconnects' over_limit: --max-conns or the open-file limit).
	Shed uint64 `json:"shed"`
	// Commands counts requests by command (sample.ServerCommands order);
	// Disconnects counts closed connections by reason
	// (sample.DisconnectReasons order).
	Commands    [numCommands]uint64    `json:"-"`
	Disconnects [numDisconnects]uint64 `json:"-"`
}

func (t Totals) sub(o Totals) Totals {
	d := Totals{
		Requests: t.Requests - o.Requests, Shakes: t.Shakes - o.Shakes, Got: t.Got - o.Got,
		None: t.None - o.None, AllTaken: t.AllTaken - o.AllTaken, Overloaded: t.Overloaded - o.Overloaded,
		Logins: t.Logins - o.Logins, Errors: t.Errors - o.Errors, GrantedAmount: t.GrantedAmount - o.GrantedAmount,
		Accepted: t.Accepted - o.Accepted, Closed: t.Closed - o.Closed, Shed: t.Shed - o.Shed,
	}
	for i := range d.Commands {
		d.Commands[i] = t.Commands[i] - o.Commands[i]
	}
	for i := range d.Disconnects {
		d.Disconnects[i] = t.Disconnects[i] - o.Disconnects[i]
	}
	return d
}

// Stats is what the admin API's /api/stats returns.
type Stats struct {
	Time        int64          `json:"time"`
	Connections int64          `json:"connections"`
	MaxConns    int            `json:"max_conns"` // connections beyond it are shed
	LoggedIn    int64          `json:"logged_in"`
	Waiting     int            `json:"waiting_packets"`
	Totals      Totals         `json:"totals"`
	Rates       Totals         `json:"rates"` // over the last full second
	Campaigns   []CampaignInfo `json:"campaigns"`
	Groups      GroupStats     `json:"group_packets"`
	Ledger      *ledger.Stats  `json:"ledger,omitempty"`
}

// GroupStats count group packets (the money engine's counters).
type GroupStats money.GroupStats

func (g GroupStats) sub(o GroupStats) GroupStats {
	return GroupStats{Sent: g.Sent - o.Sent, FundedAmount: g.FundedAmount - o.FundedAmount, Opens: g.Opens - o.Opens,
		Grants: g.Grants - o.Grants, GrantedAmount: g.GrantedAmount - o.GrantedAmount, Refunds: g.Refunds - o.Refunds,
		Refunded: g.Refunded - o.Refunded, Pushes: g.Pushes - o.Pushes, TooMany: g.TooMany - o.TooMany,
		RateLimited: g.RateLimited - o.RateLimited, Live: g.Live}
}

// groupStats reads the group-packet counters.
func (s *Server) groupStats() GroupStats { return GroupStats(s.money.GroupStats()) }

func (s *Server) totals() (t Totals, conns int64) {
	for _, l := range s.loops {
		c := &l.counters
		conns += c.conns.Load()
		for i := range c.commands {
			n := c.commands[i].Load()
			t.Commands[i] += n
			t.Requests += n
		}
		for i := range c.disconnects {
			t.Disconnects[i] += c.disconnects[i].Load()
		}
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
	t.Shed = t.Disconnects[disconnectIndex(proto.ReasonOverLimit, nil)]
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

// occupancy sums the SETs: users logged in, and packets waiting to be taken.
func (s *Server) occupancy() (online int64, waiting int) {
	for i := range s.sets {
		online += s.sets[i].online.Load()
	}
	return online, s.money.Waiting()
}

// Stats returns a snapshot of the server's counters and campaigns.
func (s *Server) Stats() Stats {
	t, conns := s.totals()
	online, waiting := s.occupancy()
	st := Stats{
		Time: s.opts.Now().Unix(), Connections: conns, MaxConns: s.opts.MaxConns, LoggedIn: online, Waiting: waiting,
		Totals: t, Rates: s.rater.rates(), Campaigns: s.money.Campaigns(),
		Groups: s.groupStats(),
	}
	if s.led != nil {
		ls := s.led.Stats()
		st.Ledger = &ls
	}
	return st
}
