package server

import (
	"sync"
	"testing"

	"hongbao/internal/proto"
)

// TestDurablePipelinedShakes: connections keep windows of shakes in flight
// while most get a packet (a durable grant each): every shake is answered.
func TestDurablePipelinedShakes(t *testing.T) {
	s := startLedgerServer(t, "", func(o *Options) { o.Budget = 1 << 30 })
	if _, err := s.StartCampaign(CampaignSpec{Count: 1 << 30, Rate: 100000, Min: 1, Max: 9}); err != nil {
		t.Fatal(err)
	}
	const conns, window, rounds = 8, 16, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for i := 0; i < conns; i++ {
		c := login(t, s, uint32(i+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				for j := 0; j < window; j++ {
					if err := c.SendShake(); err != nil {
						t.Error(err)
						return
					}
				}
				for j := 0; j < window; j++ {
					res, err := c.ReadShake()
					if err != nil {
						t.Errorf("round %d answer %d: %v", r, j, err)
						return
					}
					if res.Result == proto.ResultGot {
						mu.Lock()
						got++
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if got == 0 {
		t.Fatal("no shake got a packet")
	}
	audit(t, s)
}
