// Package pace spaces events at a steady rate: the pacer of the shake
// campaigns, the group-packet generators and the load client's connection
// ramp. (The load client's shakes follow internal/schedule, a rate shared
// over processes without coordination; that is not a pacer of one process.)
//
// A Pacer is pure arithmetic on the times it is given, so a test drives it
// with any clock. Counting from its origin, event k (k = 1, 2, ...) is due
// k/rate seconds later, rounded down to the nanosecond: n events take n/rate
// seconds, and the count due is computed from the elapsed time, so how often
// the caller looks only sets the granularity, never the rate.
//
// After a stall (a slow caller, a paused process, a consumer that could not
// take events) the backlog is bounded by MaxLag: events due more than MaxLag
// before now are forgotten, so at most MaxLag's worth of events, plus the
// one just due, comes out at once. A MaxLag of zero keeps the whole backlog.
package pace

import (
	"math"
	"math/bits"
	"time"
)

// Pacer releases events at Rate per second. The zero value, and a Pacer of
// rate 0, does not pace: every event is due at once.
type Pacer struct {
	rate   uint64        // events per second
	maxLag time.Duration // backlog kept after a stall; 0: all
	origin time.Time     // event k is due at origin + offset(k)
	taken  uint64        // events taken since origin
}

// New returns a pacer of rate events per second whose first event is due
// one interval (1/rate) after now, keeping at most maxLag of backlog.
func New(rate int, maxLag time.Duration, now time.Time) Pacer {
	return Pacer{rate: uint64(max(rate, 0)), maxLag: max(maxLag, 0), origin: now}
}

// Immediate is New with the first event due at now.
func Immediate(rate int, maxLag time.Duration, now time.Time) Pacer {
	p := New(rate, maxLag, now)
	if p.rate > 0 {
		p.origin = now.Add(-offset(1, p.rate))
	}
	return p
}

// offset is when event k is due after the origin: k/rate seconds, rounded
// down to the nanosecond (as schedule.SlotOffset).
func offset(k, rate uint64) time.Duration {
	hi, lo := bits.Mul64(k, uint64(time.Second))
	if hi >= rate {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, rate)
	return time.Duration(min(q, math.MaxInt64))
}

// dueBy is how many events are due elapsed after the origin: the k >= 1
// with offset(k) <= elapsed, that is k*1e9 < (elapsed+1)*rate.
func dueBy(elapsed time.Duration, rate uint64) uint64 {
	if elapsed < 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(elapsed)+1, rate)
	lo, borrow := bits.Sub64(lo, 1, 0)
	hi -= borrow
	if hi >= uint64(time.Second) {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, uint64(time.Second))
	return q
}

// Due returns how many events are due at now and not yet taken. Past a
// stall it first forgets the backlog older than MaxLag.
func (p *Pacer) Due(now time.Time) int {
	if p.rate == 0 {
		return math.MaxInt
	}
	if p.maxLag > 0 {
		// The next event was due before now - MaxLag: restart the count so
		// that it is due at now - MaxLag exactly.
		if floor := now.Add(-p.maxLag); p.Next().Before(floor) {
			p.origin, p.taken = floor.Add(-offset(1, p.rate)), 0
		}
	}
	due := dueBy(now.Sub(p.origin), p.rate)
	if due <= p.taken {
		return 0
	}
	return int(min(due-p.taken, math.MaxInt))
}

// Take records n events as done.
func (p *Pacer) Take(n int) {
	if p.rate == 0 || n <= 0 {
		return
	}
	p.taken += uint64(n)
	// Keep the origin within a second of the events: offset(k) and
	// offset(k-rate) are exactly a second apart, so nothing shifts, and the
	// arithmetic stays on small numbers.
	if s := p.taken / p.rate; s > 0 {
		p.origin = p.origin.Add(time.Duration(s) * time.Second)
		p.taken -= s * p.rate
	}
}

// Next is when the next event is due (the zero Time for a pacer of rate 0:
// always).
func (p *Pacer) Next() time.Time {
	if p.rate == 0 {
		return time.Time{}
	}
	return p.origin.Add(offset(p.taken+1, p.rate))
}

// The tick of a caller that looks every so often, as the campaign issuer and
// the generators do: half the interval between events, within [MinTick,
// MaxTick]. The count due comes from elapsed time, so the tick only sets the
// granularity. One of fifty nodes issuing 4 packets a second wakes ten times
// a second, not 200: on a box running a hundred processes, wake-ups are what
// costs (a timer every 100 ms cost an idle Go process about 50 context
// switches a second).
const (
	MinTick = 5 * time.Millisecond
	MaxTick = 100 * time.Millisecond
)

// Tick is the period at which to look for events due at rate per second; a
// second when nothing is paced.
func Tick(rate float64) time.Duration {
	if rate <= 0 {
		return time.Second
	}
	return min(max(time.Duration(float64(time.Second)/(2*rate)), MinTick), MaxTick)
}
