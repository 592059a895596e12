package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/client"
	"hongbao/internal/harness"
	"hongbao/internal/procstat"
	"hongbao/internal/proto"
	"hongbao/internal/server"
)

// TestSoakMemoryIsFlat (opt-in: HONGBAO_SOAK=10m) runs a server with a
// 5 s --packet-ttl under a steady stream of group sends (2,000/s from 20
// users, and the generator at 200/s) for the given time, and checks that
// its RSS at the end is within 10% of its RSS after the first minute:
// whatever a packet leaves in memory is given back when it expires.
func TestSoakMemoryIsFlat(t *testing.T) {
	v := os.Getenv("HONGBAO_SOAK")
	if v == "" {
		t.Skip("set HONGBAO_SOAK=10m (a duration of at least 2m) to run the soak")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 2*time.Minute {
		t.Fatalf("HONGBAO_SOAK=%q: want a duration of at least 2m", v)
	}
	const (
		senders = 20
		rate    = 2000 // sends/s over all senders
	)
	dir := t.TempDir()
	secret := "soak-secret"
	srv, err := harness.StartServer(bin, dir, harness.ServerSpec{Secret: secret, Extra: []string{"--packet-ttl", "5s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(10 * time.Second)
	sg, err := auth.NewSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	var (
		answered, refused atomic.Int64
		stop              = make(chan struct{})
		wg                sync.WaitGroup
	)
	start := time.Now()
	for i := range senders {
		u := uint32(i + 1)
		topUp(t, srv.Admin, u, 300*rate/senders*uint64(d.Seconds()+60))
		c, err := client.Dial(srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.LoginToken(u, sg.Mint(u, time.Now().Add(d+time.Hour))); err != nil {
			t.Fatal(err)
		}
		c.Timeout = time.Minute
		wg.Add(1)
		go func() { // answers and refunds
			defer wg.Done()
			for {
				f, err := c.Read()
				if err != nil {
					return
				}
				if f.Cmd == proto.CmdSendResp {
					answered.Add(1)
					if f.Field(0) != proto.ResultOK {
						refused.Add(1)
					}
				}
			}
		}()
		wg.Add(1)
		go func() { // sends at rate/senders per second
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(u), 1))
			var buf []byte
			for n := 0; ; n++ {
				at := start.Add(time.Duration(n) * time.Second * senders / rate)
				select {
				case <-stop:
					return
				case <-time.After(time.Until(at)):
				}
				to := []uint32{1000 + rng.Uint32N(1000), 2000 + rng.Uint32N(1000), 3000 + rng.Uint32N(1000)}
				buf = proto.AppendSend(buf[:0], uint64(time.Now().Unix()), 300, 3, uint64(n+1), to)
				if c.Send(buf) != nil {
					return
				}
			}
		}()
	}
	if err := srv.Admin.Post("/api/generators", server.GeneratorSpec{Count: uint32(d.Seconds()+60) * 200, Rate: 200, From: 1000, To: 9000}, nil); err != nil {
		t.Fatal(err)
	}
	rss := func() int64 {
		s, err := procstat.Read(srv.Pid())
		if err != nil {
			t.Fatal(err)
		}
		return s.RSS
	}
	var atMinute int64
	for el := 10 * time.Second; el <= d; el += 10 * time.Second {
		time.Sleep(time.Until(start.Add(el)))
		r := rss()
		var st server.Stats
		_ = srv.Admin.Get("/api/stats", &st)
		fmt.Printf("soak t=%4.0fs rss=%6.1f MB live=%d sent=%d refunds=%d answered=%d refused=%d\n",
			el.Seconds(), float64(r)/1e6, st.Groups.Live, st.Groups.Sent, st.Groups.Refunds, answered.Load(), refused.Load())
		if el == time.Minute {
			atMinute = r
		}
	}
	end := rss()
	close(stop)
	t.Logf("RSS after 1 minute %.1f MB, after %v %.1f MB (%+.1f%%)", float64(atMinute)/1e6, d, float64(end)/1e6, 100*float64(end-atMinute)/float64(atMinute))
	if refused.Load() > 0 {
		t.Errorf("%d sends refused under the limits", refused.Load())
	}
	if float64(end) > 1.10*float64(atMinute) {
		t.Errorf("RSS grew from %d B after a minute to %d B after %v: more than 10%%", atMinute, end, d)
	}
}
