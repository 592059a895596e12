package server

import (
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

func TestShakeCampaignEveryPacketOnce(t *testing.T) {
	s := startServer(t, nil)
	const users = 20
	conns := make([]*client.Conn, 0, users)
	for u := uint32(1); u <= users; u++ {
		conns = append(conns, login(t, s, u))
	}
	info, err := s.StartCampaign(CampaignSpec{Count: 100, Rate: 1000, Budget: 10000})
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, 3*time.Second, "campaign issued", func() bool { return s.Campaigns()[0].State == StateDone })
	seen := map[uint32]bool{}
	var sum uint64
	for round := 0; len(seen) < 100 && round < 200; round++ {
		for _, c := range conns {
			r, err := c.Shake()
			if err != nil {
				t.Fatal(err)
			}
			if r.Result == proto.ResultGot {
				if seen[r.Packet] {
					t.Fatalf("packet %d granted twice", r.Packet)
				}
				seen[r.Packet] = true
				sum += uint64(r.Amount)
			}
		}
	}
	if len(seen) != 100 || sum != 10000 {
		t.Fatalf("got %d packets summing %d, want 100 summing 10000 (campaign %d)", len(seen), sum, info.ID)
	}
	r, err := conns[0].Shake()
	if err != nil || r.Result != proto.ResultAllTaken {
		t.Fatalf("after the last packet: %+v %v, want all taken", r, err)
	}
	st := s.Stats()
	if st.Totals.Got != 100 || st.Totals.GrantedAmount != 10000 {
		t.Fatalf("server totals %+v", st.Totals)
	}
}
