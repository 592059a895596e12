package server

import (
	"math"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

// TestCampaignPacing: a campaign at 200/s issues about 200 packets in a
// second, spread over it rather than in a burst.
func TestCampaignPacing(t *testing.T) {
	const rate = 200
	s := startServer(t, nil)
	start := time.Now()
	info, err := s.StartCampaign(CampaignSpec{Count: 100_000, Rate: rate, Min: 1, Max: 1})
	if err != nil {
		t.Fatal(err)
	}
	issued := func() uint32 { return s.Campaigns()[0].Issued }

	// Sample until a quarter second has passed.
	var early uint32
	var earlyAt time.Duration
	wait.For(t, 2*time.Second, "a quarter second", func() bool {
		earlyAt, early = time.Since(start), issued()
		return earlyAt >= 250*time.Millisecond
	})
	if early >= 100 {
		t.Fatalf("%d packets issued after %v: a burst, not paced at %d/s", early, earlyAt, rate)
	}
	if early == 0 {
		t.Fatalf("nothing issued after %v", earlyAt)
	}

	wait.For(t, 3*time.Second, "a second", func() bool { return time.Since(start) >= time.Second })
	final, err := s.StopCampaign(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	want := rate * elapsed.Seconds()
	if d := math.Abs(float64(final.Issued) - want); d > 0.2*want {
		t.Fatalf("%d packets issued in %v at %d/s, want %.0f ±20%%", final.Issued, elapsed, rate, want)
	}
	t.Logf("issued %d after %v, %d after %v", early, earlyAt, final.Issued, elapsed)
	// Nobody shook: the stop released every packet issued.
	if w := s.Stats().Waiting; w != 0 || final.Released != final.Issued || final.AmountReleased != final.AmountIssued {
		t.Fatalf("%d packets waiting after the stop, %d of %d issued released (%d of %d cents)", w, final.Released, final.Issued, final.AmountReleased, final.AmountIssued)
	}
}

// TestCampaignFollowsOnlineUsers: packets go only to SETs with users
// online, in proportion to how many: with two users in set 1, one in set 2
// and nobody in the other six sets, 90 packets split 60/30.
func TestCampaignFollowsOnlineUsers(t *testing.T) {
	s := startServer(t, nil) // 8 sets: user u is in set u % 8
	a1 := login(t, s, 1)     // set 1
	login(t, s, 9)           // set 1
	b := login(t, s, 2)      // set 2
	if n := s.Stats().LoggedIn; n != 3 {
		t.Fatalf("%d logged in", n)
	}
	if _, err := s.StartCampaign(CampaignSpec{Count: 90, Rate: 2000, Min: 1, Max: 1}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 3*time.Second, "campaign issued", func() bool { return s.Campaigns()[0].State == StateDone })
	if w := s.Stats().Waiting; w != 90 {
		t.Fatalf("%d packets waiting, want 90", w)
	}
	drain := func(c *client.Conn) int {
		n := 0
		for {
			r, err := c.Shake()
			if err != nil {
				t.Fatal(err)
			}
			if r.Result != proto.ResultGot {
				return n
			}
			n++
		}
	}
	inSet1 := drain(a1)
	if w := s.Stats().Waiting; w != 90-inSet1 {
		t.Fatalf("%d waiting after set 1 took %d", w, inSet1)
	}
	inSet2 := drain(b)
	if inSet1+inSet2 != 90 {
		t.Fatalf("sets 1 and 2 held %d + %d packets of 90: the rest went to sets nobody is in", inSet1, inSet2)
	}
	if inSet1 < 59 || inSet1 > 61 {
		t.Fatalf("set 1 (2 users) got %d packets, set 2 (1 user) %d; want 60/30", inSet1, inSet2)
	}
	if r, err := b.Shake(); err != nil || r.Result != proto.ResultAllTaken {
		t.Fatalf("after all taken: %+v %v", r, err)
	}
}

// TestCampaignNobodyOnline: with nobody online packets are still issued,
// spread evenly, and a user who logs in later finds those of its set.
func TestCampaignNobodyOnline(t *testing.T) {
	s := startServer(t, nil)
	if _, err := s.StartCampaign(CampaignSpec{Count: 80, Rate: 2000, Min: 3, Max: 3}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 3*time.Second, "campaign issued", func() bool { return s.Campaigns()[0].State == StateDone })
	c := login(t, s, 5)
	var got int
	for {
		r, err := c.Shake()
		if err != nil {
			t.Fatal(err)
		}
		if r.Result != proto.ResultGot {
			break
		}
		if r.Amount != 3 {
			t.Fatalf("amount %d, want 3", r.Amount)
		}
		got++
	}
	if got != 10 {
		t.Fatalf("user 5's set held %d of 80 packets over 8 sets, want 10", got)
	}
}

// TestCampaignLowRate: a campaign slower than one packet per maxLag (a
// node's share of 200/s over 52 nodes is about 4/s) still issues at its
// rate; it used to re-anchor on every packet and issue none.
func TestCampaignLowRate(t *testing.T) {
	s := startServer(t, nil)
	if _, err := s.StartCampaign(CampaignSpec{Count: 1000, Rate: 4, Min: 1, Max: 1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1600 * time.Millisecond)
	if n := s.Campaigns()[0].Issued; n < 5 || n > 7 {
		t.Fatalf("%d packets issued in 1.6 s at 4/s, want 6", n)
	}
}

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
			cs := newCampaigns(make([]set, 4), &Options{MaxWaiting: c.maxWaiting, MaxCampaigns: 1, MaxCampaignRate: rate, MaxCampaignCount: 10_000, Now: func() time.Time { return t0 }})
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
