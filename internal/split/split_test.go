package split_test

import (
	"errors"
	"math/bits"
	"math/rand/v2"
	"testing"

	"hongbao/internal/split"
)

// check asserts the double-mean properties of one split of amount into n
// shares: exactly n shares summing to amount, each at least 1, and each but
// the last at most twice the mean of what remained when it was drawn
// (share_i * shares_left_i <= 2 * remaining_i, in 128-bit arithmetic so that
// no amount overflows the check).
func check(t testing.TB, amount, n uint64, out []uint64) {
	t.Helper()
	if uint64(len(out)) != n {
		t.Fatalf("split(%d, %d): %d shares", amount, n, len(out))
	}
	remaining := amount
	for i, s := range out {
		left := n - uint64(i)
		if s < 1 {
			t.Fatalf("split(%d, %d): share %d is %d", amount, n, i, s)
		}
		if s > remaining {
			t.Fatalf("split(%d, %d): share %d is %d, only %d remained", amount, n, i, s, remaining)
		}
		if left > 1 {
			hi, lo := bits.Mul64(s, left)
			twoHi, twoLo := remaining>>63, remaining<<1
			if hi > twoHi || hi == twoHi && lo > twoLo {
				t.Fatalf("split(%d, %d): share %d is %d, above 2 x %d/%d", amount, n, i, s, remaining, left)
			}
			if remaining-s < left-1 {
				t.Fatalf("split(%d, %d): share %d leaves %d for %d shares", amount, n, i, remaining-s, left-1)
			}
		}
		remaining -= s
	}
	if remaining != 0 {
		t.Fatalf("split(%d, %d): shares sum to %d less than the amount", amount, n, remaining)
	}
}

func TestAllProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	try := func(amount, n uint64) {
		out, err := split.All(r, amount, n)
		if err != nil {
			t.Fatalf("All(%d, %d): %v", amount, n, err)
		}
		check(t, amount, n, out)
	}
	// Every amount 1..2000 cents with every share count it allows up to 100.
	for amount := uint64(1); amount <= 2000; amount++ {
		for n := uint64(1); n <= min(100, amount); n++ {
			try(amount, n)
		}
	}
	// A few thousand random amounts up to 1,000,000 cents, every share count.
	for range 2000 {
		amount := 1 + r.Uint64N(1_000_000)
		for n := uint64(1); n <= min(100, amount); n++ {
			try(amount, n)
		}
	}
	// The edges: the top of the range, one cent per share.
	for n := uint64(1); n <= 100; n++ {
		try(1_000_000, n)
		try(n, n)
	}
}

// TestNextCoversRange: the shares are not stuck at one value; over many
// draws of 100 cents among 10 they reach both 1 and the 2 x mean bound.
func TestNextCoversRange(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	lo, hi := uint64(1<<63), uint64(0)
	for range 10000 {
		s := split.Next(r, 100, 10)
		lo, hi = min(lo, s), max(hi, s)
	}
	if lo != 1 || hi != 20 {
		t.Fatalf("Next(100, 10) ranged over [%d, %d], want [1, 20]", lo, hi)
	}
	if s := split.Next(r, 77, 1); s != 77 {
		t.Fatalf("last share = %d, want all 77", s)
	}
}

func TestTooFewCents(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	tests := []struct{ amount, n uint64 }{
		{0, 0}, {5, 0}, {0, 1}, {1, 2}, {99, 100}, {1 << 63, 0},
	}
	for _, tc := range tests {
		out, err := split.All(r, tc.amount, tc.n)
		if !errors.Is(err, split.ErrTooFewCents) || out != nil {
			t.Errorf("All(%d, %d) = %v, %v; want ErrTooFewCents", tc.amount, tc.n, out, err)
		}
	}
}

func FuzzAll(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint64(100), uint16(10))
	f.Add(uint64(0), uint64(0), uint64(1), uint16(1))
	f.Add(uint64(7), uint64(9), uint64(1_000_000), uint16(100))
	f.Add(uint64(7), uint64(9), uint64(99), uint16(100))
	f.Add(uint64(3), uint64(3), uint64(5), uint16(0))
	f.Add(uint64(3), uint64(3), uint64(1<<40), uint16(3))
	f.Fuzz(func(t *testing.T, s1, s2, amount uint64, shares uint16) {
		n := uint64(shares % 1001) // keep the slice small
		out, err := split.All(rand.New(rand.NewPCG(s1, s2)), amount, n)
		if n == 0 || amount < n {
			if !errors.Is(err, split.ErrTooFewCents) || out != nil {
				t.Fatalf("All(%d, %d) = %v, %v; want ErrTooFewCents", amount, n, out, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("All(%d, %d): %v", amount, n, err)
		}
		check(t, amount, n, out)
	})
}
