package money

import (
	"testing"
	"time"
)

// fixedClock is a clock stopped at one instant.
type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }
func (c fixedClock) Second() uint64 { return uint64(time.Time(c).Unix()) }

// TestCampaignIssuerClock drives the issuer with a fake clock: paced within
// the second, never a burst of more than maxLag's worth (plus the packet
// just due) after a stall or after MaxWaiting held it back.
func TestCampaignIssuerClock(t *testing.T) {
	const rate = 200 // a packet every 5 ms; maxLag holds 10
	type step struct {
		to    time.Duration // look every 5 ms up to here
		stall bool          // look only at to
		free  bool          // first, empty the SETs (everything taken)
		total uint32        // packets issued by then
	}
	cases := []struct {
		name       string
		maxWaiting int
		steps      []step
	}{
		{"paced", 1000, []step{{250 * time.Millisecond, false, false, 50}, {time.Second, false, false, 200}}},
		{"a stall", 1000, []step{{time.Second, false, false, 200}, {5 * time.Second, true, false, 211},
			{5*time.Second + 5*time.Millisecond, false, false, 212}}},
		{"held back by MaxWaiting", 20, []step{{time.Second, false, false, 20}, {time.Second, false, true, 31},
			{time.Second + 5*time.Millisecond, false, false, 32}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Unix(1_800_000_000, 0)
			e := New(Config{Sets: 4, Clock: fixedClock(t0),
				Limits: Limits{MaxWaiting: c.maxWaiting, MaxCampaigns: 1, MaxCampaignRate: rate, MaxCampaignCount: 10_000}})
			cs := &e.camps
			if _, err := cs.start(CampaignSpec{Count: 10_000, Rate: rate, Min: 1, Max: 1}, t0); err != nil {
				t.Fatal(err)
			}
			at := time.Duration(0)
			for i, s := range c.steps {
				if s.free {
					cs.waiting.Store(0)
				}
				for ; at < s.to && !s.stall; at += 5 * time.Millisecond {
					cs.issue(t0.Add(at))
				}
				at = s.to
				cs.issue(t0.Add(at))
				if got := cs.infos()[0].Issued; got != s.total {
					t.Fatalf("step %d (%v): %d issued, want %d", i, s.to, got, s.total)
				}
			}
		})
	}
}
