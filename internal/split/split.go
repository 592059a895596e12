// Package split cuts an amount into random shares by the "double mean" rule
// used by red-packet services: each share is uniform in
// [1, 2 x remaining/remaining shares] (in cents), and the last share takes
// what is left. Every share is at least 1 cent and the shares sum exactly to
// the amount.
package split

import (
	"errors"
	"math/rand/v2"
)

// ErrTooFewCents is returned when the amount cannot give every share a cent.
var ErrTooFewCents = errors.New("split: fewer cents than shares")

// Next returns the next share of remaining cents among shares shares.
// It needs remaining >= shares >= 1.
func Next(r *rand.Rand, remaining, shares uint64) uint64 {
	if shares <= 1 {
		return remaining
	}
	// Upper bound 2*mean, but leave at least a cent for each later share.
	hi := 2 * remaining / shares
	if max := remaining - (shares - 1); hi > max {
		hi = max
	}
	if hi < 1 {
		hi = 1
	}
	return 1 + r.Uint64N(hi)
}

// All splits amount into n shares.
func All(r *rand.Rand, amount, n uint64) ([]uint64, error) {
	if n == 0 || amount < n {
		return nil, ErrTooFewCents
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = Next(r, amount, n-uint64(i))
		amount -= out[i]
	}
	return out, nil
}
