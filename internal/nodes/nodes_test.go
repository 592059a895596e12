package nodes

import (
	"errors"
	"testing"
)

// Every user lands on exactly one node: the ranges tile 1..N in order, Of
// agrees with Range for every user, and sizes differ by at most one.
func TestEveryUserOnExactlyOneNode(t *testing.T) {
	for n := uint32(1); n <= 300; n++ {
		for m := 1; m <= int(n) && m <= 40; m++ {
			mp, err := New(n, m)
			if err != nil {
				t.Fatal(err)
			}
			next := uint32(1)
			minS, maxS := int(n), 0
			for k := 0; k < m; k++ {
				f, to := mp.Range(k)
				if f != next || to < f {
					t.Fatalf("N=%d M=%d node %d: range %d..%d, want start %d", n, m, k, f, to, next)
				}
				for u := f; u <= to; u++ {
					if got := mp.Of(u); got != k {
						t.Fatalf("N=%d M=%d: Of(%d)=%d, Range says %d", n, m, u, got, k)
					}
				}
				minS, maxS = min(minS, mp.Size(k)), max(maxS, mp.Size(k))
				next = to + 1
			}
			if next != n+1 || maxS-minS > 1 {
				t.Fatalf("N=%d M=%d: ends at %d, sizes %d..%d", n, m, next-1, minS, maxS)
			}
		}
	}
}

func TestLargeMap(t *testing.T) {
	mp, err := New(1_000_000, 52)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := mp.Range(0); f != 1 {
		t.Fatal(f)
	}
	if _, to := mp.Range(51); to != 1_000_000 {
		t.Fatal(to)
	}
	for _, u := range []uint32{1, 19230, 19231, 19232, 500_000, 999_999, 1_000_000} {
		k := mp.Of(u)
		if f, to := mp.Range(k); u < f || u > to {
			t.Fatalf("user %d: node %d owns %d..%d", u, k, f, to)
		}
	}
	if mp.Size(0) > 19231 {
		t.Fatal(mp.Size(0))
	}
	big, _ := New(^uint32(0), 1000)
	if big.Of(^uint32(0)) != 999 {
		t.Fatal(big.Of(^uint32(0)))
	}
}

func TestBadMap(t *testing.T) {
	for _, c := range []struct {
		n uint32
		m int
	}{{0, 1}, {1, 0}, {3, 4}} {
		if _, err := New(c.n, c.m); !errors.Is(err, ErrMap) {
			t.Fatalf("%v: %v", c, err)
		}
	}
}
