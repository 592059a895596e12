package money

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"hongbao/internal/ledger"
)

// AuditReport is the result of checking the ledger.
type AuditReport struct {
	Records   uint64            `json:"records"`
	ByKind    map[string]uint64 `json:"by_kind"`
	Packets   int               `json:"packets"`
	Campaigns int               `json:"campaigns"`
	Users     int               `json:"users"`
	Granted   uint64            `json:"granted_amount"`
	// Money in and out: top-ups and withdrawals, cents.
	TopUps     uint64   `json:"topup_amount"`
	Withdrawn  uint64   `json:"withdrawn_amount"`
	Violations []string `json:"violations"`
	OK         bool     `json:"ok"`
}

// ErrNoLedger is returned by Audit on an engine without a ledger.
var ErrNoLedger = errors.New("server runs without a ledger")

// Audit checks the ledger of a running engine: it takes a consistent
// snapshot of the live state (every packet shard and balance shard locked
// for the moment of copying, with a mark queued to the ledger at that
// point), waits until the mark is durable, replays the file up to the mark,
// checks its invariants, and checks that the live state agrees with it:
// every packet's remaining amount, shares and who opened what, and every
// balance.
func (e *Engine) Audit() (AuditReport, error) {
	if e.led == nil {
		return AuditReport{}, ErrNoLedger
	}
	type livePacket struct {
		remaining uint64
		left      uint32
		expiry    int64
		opened    map[uint32]uint32
	}
	g := &e.groups
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
	for i := range e.bals {
		e.bals[i].mu.Lock()
	}
	// Read under the locks: every record before the mark was stamped before
	// this, so a packet the replay closed as expired has expiry <= nowMs.
	nowMs := e.clock.Now().UnixMilli()
	for i := range g.shards {
		for id, p := range g.shards[i].packets {
			packets[id] = livePacket{p.remaining, p.left, p.expiry, maps.Clone(p.opened)}
		}
	}
	for i := range e.bals {
		maps.Copy(balances, e.bals[i].m)
	}
	e.led.Mark(func(off int64, err error) { ch <- mark{off, err} })
	for i := range e.bals {
		e.bals[i].mu.Unlock()
	}
	for i := range g.shards {
		g.shards[i].mu.Unlock()
	}
	m := <-ch
	if m.err != nil {
		return AuditReport{}, m.err
	}
	st, err := e.led.ReplayTo(m.off)
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
		if u != SystemUser && b < 0 {
			diff = append(diff, fmt.Sprintf("user %d: balance %d below zero in the server", u, b))
		}
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
		Users: len(st.Balances), Granted: st.GrantedTotal, TopUps: st.TopUps, Withdrawn: st.Withdrawn, Violations: st.Violations()}
	for k, n := range st.ByKind {
		rep.ByKind[k.String()] = n
	}
	if rep.Violations == nil {
		rep.Violations = []string{}
	}
	rep.OK = len(rep.Violations) == 0
	return rep
}

// MergeAudits sums the audit reports of several nodes (each node has its
// own ledger; the whole deployment is clean when every node is). A
// violation is prefixed with the name of the node it was found on.
func MergeAudits(names []string, reps []AuditReport) AuditReport {
	out := AuditReport{ByKind: map[string]uint64{}, Violations: []string{}, OK: true}
	for i, r := range reps {
		out.Records += r.Records
		for k, v := range r.ByKind {
			out.ByKind[k] += v
		}
		out.Packets += r.Packets
		out.Campaigns += r.Campaigns
		out.Users += r.Users
		out.Granted += r.Granted
		out.TopUps += r.TopUps
		out.Withdrawn += r.Withdrawn
		for _, v := range r.Violations {
			out.Violations = append(out.Violations, fmt.Sprintf("%s: %s", names[i], v))
		}
		out.OK = out.OK && r.OK
	}
	if len(reps) == 1 {
		out.ByKind = maps.Clone(reps[0].ByKind)
	}
	return out
}
