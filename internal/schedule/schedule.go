// Package schedule is the classic load client's rate scheme, shared by every
// client process without any coordination between them.
//
// Every process knows the total user count N and the global rate Q. User ids
// 1..N are first spread by a fixed permutation that groups the user indexes
// (id-1) by index mod 13: the position of index i is the offset of its
// residue class plus i/13. In Unix second s, the global window of Q slots
// starts at position (s*Q) mod N; slot j (0 <= j < Q) belongs to the user at
// position (start+j) mod N and is due at s + j/Q seconds, so the slots are
// spread evenly over the second instead of bursting at its start. With clocks
// in sync, all processes together send exactly Q requests in every second.
// Q may exceed N: positions then wrap and each user gets floor(Q/N) or
// ceil(Q/N) slots per second.
//
// A process that simulates users [from, to] owns 13 contiguous position
// intervals (one per residue class), so it can enumerate only its own slots
// of any slot range by intersecting intervals, never scanning all Q slots.
// Everything here is pure arithmetic and does not allocate.
package schedule

import (
	"errors"
	"fmt"
	"time"
)

// Classes is the number of residue classes of the spreading permutation. It
// is the classic client's constant; changing it breaks compatibility with
// processes that use it.
const Classes = 13

// ErrRange reports an invalid user count or user range.
var ErrRange = errors.New("schedule: invalid range")

// Plan is the spreading permutation for N users. It is immutable and safe for
// concurrent use.
type Plan struct {
	n uint32
	// off[r] is the first position of residue class r; off[Classes] = n.
	off [Classes + 1]uint32
}

// New returns the plan for n users (ids 1..n).
func New(n uint32) (*Plan, error) {
	if n == 0 {
		return nil, fmt.Errorf("%w: zero users", ErrRange)
	}
	p := &Plan{n: n}
	for r := uint32(0); r < Classes; r++ {
		p.off[r+1] = p.off[r] + classSize(n, r)
	}
	return p, nil
}

// classSize is the number of indexes i in [0, n) with i mod 13 == r.
func classSize(n, r uint32) uint32 {
	if r >= n {
		return 0
	}
	return (n-r-1)/Classes + 1
}

// N is the number of users.
func (p *Plan) N() uint32 { return p.n }

// Pos returns the position of user id (1 <= id <= N) in the permutation.
func (p *Plan) Pos(id uint32) uint32 {
	i := id - 1
	return p.off[i%Classes] + i/Classes
}

// ID returns the user at position pos (0 <= pos < N); it inverts Pos.
func (p *Plan) ID(pos uint32) uint32 {
	r := p.class(pos)
	return Classes*(pos-p.off[r]) + r + 1
}

// class returns the residue class whose positions contain pos.
func (p *Plan) class(pos uint32) uint32 {
	r := uint32(0)
	for r+1 < Classes && p.off[r+1] <= pos {
		r++
	}
	return r
}

// Start is the position of slot 0 in second sec at rate q: (sec*q) mod N.
func (p *Plan) Start(sec int64, q int) uint32 {
	if q <= 0 {
		return 0
	}
	n := int64(p.n)
	// Reduce first: both factors are then below 2^32, so their product
	// fits in a uint64 and the result equals (sec*q) mod N exactly.
	a := uint64((sec%n + n) % n)
	b := uint64(int64(q) % n)
	return uint32(a * b % uint64(n))
}

// SlotOffset is when slot j of a second at rate q is due, from the start of
// that second: j/q seconds, rounded down to the nanosecond.
func SlotOffset(j, q int) time.Duration {
	return time.Duration(uint64(j) * uint64(time.Second) / uint64(q))
}

// Due returns how many slots of a second at rate q are due once elapsed time
// has passed since the start of that second: the slots j with
// SlotOffset(j, q) <= elapsed. A 1 ms ticker sends slots [Due(prev), Due(now)).
func Due(q int, elapsed time.Duration) int {
	if q <= 0 || elapsed < 0 {
		return 0
	}
	if elapsed >= time.Second {
		return q
	}
	// floor(j*1e9/q) <= e  <=>  j*1e9 < (e+1)*q  <=>  j <= ((e+1)*q - 1)/1e9.
	n := (uint64(elapsed+1)*uint64(q)-1)/uint64(time.Second) + 1
	if n > uint64(q) {
		return q
	}
	return int(n)
}

// interval is a half-open position interval [lo, hi) of one residue class.
type interval struct{ lo, hi uint32 }

// Share is the part of a plan owned by one process: users [From, To]. It is
// immutable and safe for concurrent use.
type Share struct {
	plan     *Plan
	from, to uint32
	iv       [Classes]interval
}

// Share returns the part of the plan owned by users [from, to] inclusive.
func (p *Plan) Share(from, to uint32) (Share, error) {
	if from < 1 || from > to || to > p.n {
		return Share{}, fmt.Errorf("%w: users %d..%d of %d", ErrRange, from, to, p.n)
	}
	s := Share{plan: p, from: from, to: to}
	a, b := from-1, to-1 // owned indexes, inclusive
	for r := uint32(0); r < Classes; r++ {
		var klo, khi uint32 // owned k = i/13 of class r: [klo, khi)
		if a > r {
			klo = (a - r + Classes - 1) / Classes
		}
		if b >= r {
			khi = (b-r)/Classes + 1
		}
		if khi < klo {
			khi = klo
		}
		s.iv[r] = interval{p.off[r] + klo, p.off[r] + khi}
	}
	return s, nil
}

// Plan returns the plan the share belongs to.
func (s *Share) Plan() *Plan { return s.plan }

// Users returns the owned user range.
func (s *Share) Users() (from, to uint32) { return s.from, s.to }

// chunks calls visit for slots [j0, j1) of second sec at rate q in chunks
// whose positions do not wrap: slots [j, j+l) are at positions [p, p+l).
// The chunks come in slot order; chunks stops when visit returns false.
func (s *Share) chunks(sec int64, q, j0, j1 int, visit func(j, p, l int) bool) {
	if q <= 0 || s.plan == nil {
		return
	}
	n := int(s.plan.n)
	start := int(s.plan.Start(sec, q))
	for j := max(j0, 0); j < min(j1, q); {
		p := (start + j) % n
		l := min(min(j1, q)-j, n-p)
		if !visit(j, p, l) {
			return
		}
		j += l
	}
}

// owned is the part [lo, hi) of positions [p, p+l) in residue class r
// that this share owns; lo >= hi when none.
func (s *Share) owned(r, p, l int) (lo, hi int) {
	return max(int(s.iv[r].lo), p), min(int(s.iv[r].hi), p+l)
}

// Each calls fn(id, j) for every slot j in [j0, j1) of second sec at rate q
// whose user this share owns, and returns how many it called. The calls come
// grouped by residue class, not in slot order. Each does not allocate as
// long as fn does not; a nil fn only counts.
func (s *Share) Each(sec int64, q, j0, j1 int, fn func(id uint32, j int)) int {
	count := 0
	s.chunks(sec, q, j0, j1, func(j, p, l int) bool {
		for r := range s.iv {
			lo, hi := s.owned(r, p, l)
			if lo >= hi {
				continue
			}
			// Users of class r at positions lo..hi-1: index 13*(pos-off)+r.
			if fn != nil {
				off := int(s.plan.off[r])
				for pos := lo; pos < hi; pos++ {
					fn(uint32(Classes*(pos-off)+r+1), j+pos-p)
				}
			}
			count += hi - lo
		}
		return true
	})
	return count
}

// Next returns the first slot j >= j0 of second sec at rate q whose user
// this share owns, and false when there is none left in that second. A
// process with a small share uses it to sleep until it has something to
// send: with users spread by residue class, a window of Q positions covers
// a process's users in bursts, and most seconds have none of its slots.
func (s *Share) Next(sec int64, q, j0 int) (int, bool) {
	best := -1
	s.chunks(sec, q, j0, q, func(j, p, l int) bool {
		for r := range s.iv {
			if lo, hi := s.owned(r, p, l); lo < hi && (best < 0 || j+lo-p < best) {
				best = j + lo - p
			}
		}
		return best < 0 // the first chunk with an owned slot holds the answer
	})
	return best, best >= 0
}

// Count returns how many slots of [j0, j1) in second sec at rate q this share
// owns, without enumerating them.
func (s *Share) Count(sec int64, q, j0, j1 int) int { return s.Each(sec, q, j0, j1, nil) }
