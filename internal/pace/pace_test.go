package pace

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

// step is one look at the pacer: at t0+at, want due events; then take
// (-1: all that are due).
type step struct {
	at   time.Duration
	due  int
	take int
}

func TestPacer(t *testing.T) {
	cases := []struct {
		name      string
		rate      int
		maxLag    time.Duration
		immediate bool
		steps     []step
	}{
		{"first event one interval after the start", 200, 50 * time.Millisecond, false, []step{
			{0, 0, -1}, {ms(4.999), 0, -1}, {ms(5), 1, -1}, {ms(9.999), 0, -1}, {ms(10), 1, -1},
		}},
		{"immediate: first event at once", 200, 10 * time.Millisecond, true, []step{
			{0, 1, -1}, {ms(1), 0, -1}, {ms(5), 1, -1}, {ms(5), 0, -1},
		}},
		{"count comes from elapsed time, not from the looks", 1000, 0, false, []step{
			{ms(0.5), 0, -1}, {ms(3.7), 3, -1}, {ms(3.9), 0, -1}, {ms(1000), 997, -1}, {ms(1000.9), 0, -1},
		}},
		{"a stall keeps MaxLag of backlog plus the event just due", 200, 50 * time.Millisecond, false, []step{
			{ms(5), 1, -1}, {ms(2000), 11, -1}, {ms(2004.9), 0, -1}, {ms(2005), 1, -1},
		}},
		{"a backlog within MaxLag is kept whole", 200, 50 * time.Millisecond, false, []step{
			{ms(5), 1, -1}, {ms(45), 8, -1}, {ms(50), 1, -1},
		}},
		{"events not taken age out past MaxLag", 100, 50 * time.Millisecond, false, []step{
			{ms(30), 3, 0}, {ms(60), 6, 0}, {ms(100), 6, 2}, {ms(100), 4, 0}, {ms(1000), 6, -1}, {ms(1010), 1, -1},
		}},
		{"MaxLag 0 keeps the whole backlog", 200, 0, false, []step{
			{ms(5), 1, -1}, {ms(2000), 399, -1}, {ms(2005), 1, -1},
		}},
		{"a rate slower than MaxLag: the event just due still comes", 4, 50 * time.Millisecond, false, []step{
			{ms(249), 0, -1}, {ms(250), 1, -1}, {ms(499), 0, -1}, {ms(1600), 1, -1}, {ms(1799), 0, -1}, {ms(1800), 1, -1},
		}},
		{"taking fewer than due leaves the rest due", 1000, 0, false, []step{
			{ms(10), 10, 4}, {ms(10), 6, 6}, {ms(10), 0, 0},
		}},
		{"rate 3: thirds of a second rounded down to the ns", 3, 0, false, []step{
			{333333332, 0, -1}, {333333333, 1, -1}, {666666666, 1, -1}, {ms(1000), 1, -1}, {ms(1000) + 333333333, 1, -1},
		}},
		{"100 days unwatched, MaxLag 0: all due, no overflow", 60000, 0, false, []step{
			{100 * 24 * time.Hour, 60000 * 100 * 86400, -1}, {100*24*time.Hour + 1, 0, -1},
		}},
		{"rate 0 does not pace", 0, 0, false, []step{
			{0, math.MaxInt, 5}, {ms(1), math.MaxInt, 0},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := New(c.rate, c.maxLag, t0)
			if c.immediate {
				p = Immediate(c.rate, c.maxLag, t0)
			}
			for i, s := range c.steps {
				got := p.Due(t0.Add(s.at))
				if got != s.due {
					t.Fatalf("step %d at %v: %d due, want %d", i, s.at, got, s.due)
				}
				n := s.take
				if n < 0 {
					n = got
				}
				p.Take(n)
			}
		})
	}
}

// TestPacerRateOverLongRuns: looked at every 3 ms for a simulated minute, a
// pacer of each rate has released, at every look, exactly the events due by
// then (k/rate <= elapsed), rate*60 in the minute.
func TestPacerRateOverLongRuns(t *testing.T) {
	for _, rate := range []int{1, 3, 4, 7, 200, 999, 20000, 60000} {
		p := New(rate, 50*time.Millisecond, t0)
		total := 0
		for at := time.Duration(0); at <= time.Minute; at += 3 * time.Millisecond {
			n := p.Due(t0.Add(at))
			if want := int((uint64(at+1)*uint64(rate) - 1) / uint64(time.Second)); total+n != want {
				t.Fatalf("rate %d at %v: %d released, %d due", rate, at, total+n, want)
			}
			total += n
			p.Take(n)
		}
		if n := p.Due(t0.Add(time.Minute)); total+n != rate*60 {
			t.Errorf("rate %d: %d events in a minute, want %d", rate, total+n, rate*60)
		}
	}
}

func TestNext(t *testing.T) {
	p := New(200, 50*time.Millisecond, t0)
	if got := p.Next(); !got.Equal(t0.Add(5 * time.Millisecond)) {
		t.Fatalf("next %v", got.Sub(t0))
	}
	p.Take(p.Due(t0.Add(12 * time.Millisecond)))
	if got := p.Next(); !got.Equal(t0.Add(15 * time.Millisecond)) {
		t.Fatalf("next after two %v", got.Sub(t0))
	}
	// After a stall the next is due MaxLag ago.
	p.Due(t0.Add(10 * time.Second))
	if got := p.Next(); !got.Equal(t0.Add(10*time.Second - 50*time.Millisecond)) {
		t.Fatalf("next after a stall %v", got.Sub(t0))
	}
	if q := Immediate(200, 0, t0); !q.Next().Equal(t0) {
		t.Fatal("immediate: first event not at the start")
	}
}

func TestTick(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want time.Duration
	}{
		{0, time.Second}, {-1, time.Second}, {1, MaxTick}, {4, MaxTick}, {10, 50 * time.Millisecond},
		{50, 10 * time.Millisecond}, {100, MinTick}, {200, MinTick}, {60000, MinTick},
	} {
		if got := Tick(c.rate); got != c.want {
			t.Errorf("Tick(%v) = %v, want %v", c.rate, got, c.want)
		}
	}
}
