package schedule

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestPosIDInverse(t *testing.T) {
	for _, n := range []uint32{1, 2, 12, 13, 14, 25, 26, 27, 100, 1000, 1001, 9999} {
		p, err := New(n)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]bool, n)
		for id := uint32(1); id <= n; id++ {
			pos := p.Pos(id)
			if pos >= n {
				t.Fatalf("n=%d: Pos(%d)=%d out of range", n, id, pos)
			}
			if seen[pos] {
				t.Fatalf("n=%d: position %d given twice", n, pos)
			}
			seen[pos] = true
			if got := p.ID(pos); got != id {
				t.Fatalf("n=%d: ID(Pos(%d))=%d", n, id, got)
			}
		}
		// The permutation groups indexes by residue class, in class order,
		// and keeps index order inside a class.
		prev := p.ID(0) - 1
		for pos := uint32(1); pos < n; pos++ {
			i := p.ID(pos) - 1
			if i%Classes == prev%Classes && i != prev+Classes {
				t.Fatalf("n=%d: pos %d: index %d follows %d in the same class", n, pos, i, prev)
			}
			if i%Classes < prev%Classes {
				t.Fatalf("n=%d: pos %d: class %d after class %d", n, pos, i%Classes, prev%Classes)
			}
			prev = i
		}
	}
}

func TestPermutationKnownValues(t *testing.T) {
	// N=27: class sizes 3,2,2,...: class 0 is indexes 0,13,26.
	p, _ := New(27)
	for _, c := range []struct{ id, pos uint32 }{
		{1, 0}, {14, 1}, {27, 2}, {2, 3}, {15, 4}, {3, 5}, {13, 25}, {26, 26},
	} {
		if got := p.Pos(c.id); got != c.pos {
			t.Errorf("Pos(%d) = %d, want %d", c.id, got, c.pos)
		}
	}
}

func TestNewAndShareErrors(t *testing.T) {
	if _, err := New(0); !errors.Is(err, ErrRange) {
		t.Fatalf("New(0): %v", err)
	}
	p, _ := New(10)
	for _, r := range [][2]uint32{{0, 5}, {6, 5}, {1, 11}} {
		if _, err := p.Share(r[0], r[1]); !errors.Is(err, ErrRange) {
			t.Errorf("Share(%d,%d): %v, want ErrRange", r[0], r[1], err)
		}
	}
}

func TestDue(t *testing.T) {
	for _, q := range []int{1, 3, 7, 999, 1000, 1001, 2500, 30000, 1_000_000, 3_000_000} {
		prev := 0
		for e := -time.Millisecond; e <= time.Second+time.Millisecond; e += 997 * time.Microsecond {
			got := Due(q, e)
			// Brute-force definition: slots with SlotOffset(j) <= e.
			want := 0
			if e >= 0 {
				// Binary search the largest j with SlotOffset(j) <= e.
				lo, hi := 0, q
				for lo < hi {
					m := (lo + hi) / 2
					if SlotOffset(m, q) <= e {
						lo = m + 1
					} else {
						hi = m
					}
				}
				want = lo
			}
			if got != want {
				t.Fatalf("q=%d: Due(%v)=%d, want %d", q, e, got, want)
			}
			if got < prev {
				t.Fatalf("q=%d: Due not monotone at %v", q, e)
			}
			prev = got
		}
		if Due(q, 0) != 1 || Due(q, time.Second) != q {
			t.Fatalf("q=%d: Due(0)=%d Due(1s)=%d", q, Due(q, 0), Due(q, time.Second))
		}
	}
	if Due(0, time.Second) != 0 {
		t.Fatal("Due with q=0 must be 0")
	}
}

func TestStart(t *testing.T) {
	p, _ := New(1000)
	for _, c := range []struct {
		sec  int64
		q    int
		want uint32
	}{
		{0, 100, 0}, {1, 100, 100}, {9, 100, 900}, {10, 100, 0}, {3, 2500, 500},
		{1_700_000_001, 333, uint32(1_700_000_001 * 333 % 1000)},
	} {
		if got := p.Start(c.sec, c.q); got != c.want {
			t.Errorf("Start(%d,%d)=%d want %d", c.sec, c.q, got, c.want)
		}
	}
	// Large N: no overflow in the reduction.
	big, _ := New(4_000_000_000)
	s := int64(1_700_000_123)
	q := 3_999_999_999
	want := uint64(s) % 4_000_000_000 * uint64(q) % 4_000_000_000
	if got := big.Start(s, q); uint64(got) != want {
		t.Fatalf("big Start=%d want %d", got, want)
	}
}

// split divides users 1..n into k contiguous shares of near-equal size.
func split(t *testing.T, p *Plan, k int) []Share {
	t.Helper()
	n := p.N()
	out := make([]Share, 0, k)
	for i := range k {
		from := uint32(uint64(n)*uint64(i)/uint64(k)) + 1
		to := uint32(uint64(n) * uint64(i+1) / uint64(k))
		if from > to {
			continue
		}
		s, err := p.Share(from, to)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestScheme(t *testing.T) {
	cases := []struct {
		n         uint32
		q         int
		instances int
	}{
		{n: 1, q: 1, instances: 1},
		{n: 1, q: 5, instances: 1},
		{n: 13, q: 7, instances: 2},
		{n: 100, q: 30, instances: 3},
		{n: 100, q: 100, instances: 4},
		{n: 1000, q: 2500, instances: 3},
		{n: 1000, q: 1000, instances: 7},
		{n: 997, q: 300, instances: 5}, // N prime, not a multiple of 13
		{n: 1001, q: 3003, instances: 13},
		{n: 12, q: 40, instances: 5},
		{n: 5000, q: 1, instances: 2},
		{n: 20000, q: 18000, instances: 1},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("N%d_Q%d_I%d", c.n, c.q, c.instances), func(t *testing.T) {
			p, err := New(c.n)
			if err != nil {
				t.Fatal(err)
			}
			shares := split(t, p, c.instances)
			maxPer := (c.q + int(c.n) - 1) / int(c.n)
			minPer := c.q / int(c.n)
			s0 := int64(1_700_000_000)
			for sec := s0; sec < s0+4; sec++ {
				slots := make([]int, c.q)
				perUser := make([]int, c.n+1)
				start := p.Start(sec, c.q)
				total := 0
				for i := range shares {
					sh := &shares[i]
					from, to := sh.Users()
					got := sh.Each(sec, c.q, 0, c.q, func(id uint32, j int) {
						if id < from || id > to {
							t.Fatalf("share %d..%d enumerated foreign user %d", from, to, id)
						}
						if j < 0 || j >= c.q {
							t.Fatalf("slot %d out of range", j)
						}
						if want := (start + uint32(j)) % c.n; p.Pos(id) != uint32(want) {
							t.Fatalf("slot %d: user %d at pos %d, want pos %d", j, id, p.Pos(id), want)
						}
						slots[j]++
						perUser[id]++
						total++
					})
					if cnt := sh.Count(sec, c.q, 0, c.q); cnt != got {
						t.Fatalf("Count=%d, Each called %d", cnt, got)
					}
				}
				if total != c.q {
					t.Fatalf("sec %d: %d slots enumerated, want %d", sec, total, c.q)
				}
				for j, k := range slots {
					if k != 1 {
						t.Fatalf("sec %d: slot %d enumerated %d times", sec, j, k)
					}
				}
				for id := uint32(1); id <= c.n; id++ {
					if perUser[id] > maxPer || perUser[id] < minPer {
						t.Fatalf("sec %d: user %d got %d slots, want %d..%d", sec, id, perUser[id], minPer, maxPer)
					}
				}
				// A 1 ms ticker enumerating [Due(prev), Due(now)) must give the
				// same set, each slot once.
				sub := make([]int, c.q)
				for i := range shares {
					j0 := 0
					for ms := time.Duration(0); ms <= time.Second; ms += time.Millisecond {
						j1 := Due(c.q, ms)
						shares[i].Each(sec, c.q, j0, j1, func(id uint32, j int) {
							if j < j0 || j >= j1 {
								t.Fatalf("slot %d outside [%d,%d)", j, j0, j1)
							}
							if SlotOffset(j, c.q) > ms {
								t.Fatalf("slot %d due at %v enumerated at %v", j, SlotOffset(j, c.q), ms)
							}
							sub[j]++
						})
						j0 = j1
					}
				}
				for j, k := range sub {
					if k != 1 {
						t.Fatalf("sec %d: 1ms ranges: slot %d enumerated %d times", sec, j, k)
					}
				}
			}
		})
	}
}

func TestEachClampsRange(t *testing.T) {
	p, _ := New(50)
	s, _ := p.Share(1, 50)
	n := s.Each(1, 20, -5, 100, func(uint32, int) {})
	if n != 20 {
		t.Fatalf("clamped range gave %d slots, want 20", n)
	}
	if s.Each(1, 0, 0, 10, func(uint32, int) { t.Fatal("called at q=0") }) != 0 {
		t.Fatal("q=0 must give no slots")
	}
	var zero Share
	if zero.Each(1, 10, 0, 10, func(uint32, int) {}) != 0 {
		t.Fatal("zero Share must give no slots")
	}
}

func TestEachDoesNotAllocate(t *testing.T) {
	p, _ := New(1_000_000)
	s, _ := p.Share(400_001, 420_000)
	var sum uint64
	allocs := testing.AllocsPerRun(100, func() {
		s.Each(1_700_000_000, 30000, 1000, 1030, func(id uint32, j int) { sum += uint64(id) + uint64(j) })
	})
	if allocs != 0 {
		t.Fatalf("Each allocates %.1f times per call", allocs)
	}
}

// BenchmarkTick measures one 1 ms tick of a process owning 20,000 of
// 1,000,000 users at 60,000 requests/s (about 60 slots per tick, 1.2 of them
// its own).
func BenchmarkTick(b *testing.B) {
	p, _ := New(1_000_000)
	s, _ := p.Share(400_001, 420_000)
	const q = 60000
	var sink uint64
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ms := time.Duration(i%1000) * time.Millisecond
		j0, j1 := Due(q, ms), Due(q, ms+time.Millisecond)
		s.Each(1_700_000_000+int64(i/1000), q, j0, j1, func(id uint32, j int) { sink += uint64(id) })
		i++
	}
	_ = sink
}

// BenchmarkSecond enumerates a whole second for a process that owns all
// users with Q > N (each user several slots).
func BenchmarkSecond(b *testing.B) {
	p, _ := New(20000)
	s, _ := p.Share(1, 20000)
	const q = 50000
	var sink uint64
	b.ReportAllocs()
	sec := int64(1_700_000_000)
	for b.Loop() {
		s.Each(sec, q, 0, q, func(id uint32, j int) { sink += uint64(id) })
		sec++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*q), "ns/slot")
	_ = sink
}

// TestNextMatchesEach checks Next against the slots Each enumerates: for
// every owned slot j, Next(j0) for j0 just after the previous owned slot is
// j, and after the last one there is none.
func TestNextMatchesEach(t *testing.T) {
	for _, tc := range []struct {
		n        uint32
		from, to uint32
		q        int
	}{
		{1000, 1, 1000, 300},
		{1000, 400, 480, 300},
		{1000, 1, 77, 2500}, // Q > N: positions wrap
		{1_000_000, 500_001, 519_230, 5000},
		{1_000_000, 1, 19_230, 60_000},
		{37, 5, 5, 10},
	} {
		p, err := New(tc.n)
		if err != nil {
			t.Fatal(err)
		}
		sh, err := p.Share(tc.from, tc.to)
		if err != nil {
			t.Fatal(err)
		}
		for sec := int64(1_700_000_000); sec < 1_700_000_000+20; sec++ {
			var owned []int
			sh.Each(sec, tc.q, 0, tc.q, func(_ uint32, j int) { owned = append(owned, j) })
			slices.Sort(owned)
			prev := 0
			for _, j := range owned {
				if got, ok := sh.Next(sec, tc.q, prev); !ok || got != j {
					t.Fatalf("%+v sec %d: Next(%d) = %d, %v; want %d", tc, sec, prev, got, ok, j)
				}
				prev = j + 1
			}
			if got, ok := sh.Next(sec, tc.q, prev); ok {
				t.Fatalf("%+v sec %d: Next(%d) = %d after the last owned slot", tc, sec, prev, got)
			}
		}
	}
}
