package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

// TestGracefulShutdown: clients pipeline shakes against a running campaign
// and the server is shut down mid-stream. Every client is told
// ReasonShutdown once, after its last answer, and then the stream ends;
// what the clients were granted is exactly what the server counted: no
// answered request lost, none counted that was not answered. With the
// ledger, granted shakes are answered once durable, so at the shutdown
// some answers are still waiting for it: they come before the goodbye.
func TestGracefulShutdown(t *testing.T) {
	for _, ledger := range []bool{false, true} {
		t.Run(fmt.Sprintf("ledger=%v", ledger), func(t *testing.T) { testGracefulShutdown(t, ledger) })
	}
}

func testGracefulShutdown(t *testing.T, ledger bool) {
	const (
		conns    = 4
		inflight = 32 // pipelining depth per connection
	)
	s := startServer(t, func(o *Options) {
		if ledger {
			o.DataDir = t.TempDir()
		}
	})
	if _, err := s.StartCampaign(CampaignSpec{Count: 1_000_000, Rate: 20_000, Min: 1, Max: 100}); err != nil {
		t.Fatal(err)
	}

	type result struct {
		answers, got, amount uint64
		reason               proto.Reason
		afterBye             int   // frames read after the error frame
		end                  error // how the stream ended
	}
	results := make([]result, conns)
	var answered atomic.Uint64
	var wg sync.WaitGroup
	for i := range conns {
		c := login(t, s, uint32(i+1))
		slots := make(chan struct{}, inflight)
		done := make(chan struct{})
		wg.Add(2)
		go func() { // writer: keeps up to inflight shakes outstanding
			defer wg.Done()
			frame := proto.AppendShake(nil, now64(), c.User)
			for {
				select {
				case slots <- struct{}{}:
				case <-done:
					return
				}
				if err := c.Send(frame); err != nil {
					return // the server closed: expected once shutdown starts
				}
			}
		}()
		go func() { // reader: counts answers until the stream ends
			defer wg.Done()
			defer close(done)
			r := &results[i]
			for {
				f, err := c.Read()
				var se *client.ServerError
				switch {
				case errors.As(err, &se):
					if r.reason != 0 {
						r.afterBye++
					}
					r.reason = se.Reason
					continue
				case err != nil:
					r.end = err
					return
				}
				if r.reason != 0 {
					r.afterBye++
				}
				if f.Cmd != proto.CmdShakeResp {
					continue
				}
				r.answers++
				answered.Add(1)
				if f.Field(1) == proto.ResultGot {
					r.got++
					r.amount += uint64(f.Field(3))
				}
				select {
				case <-slots:
				default:
				}
			}
		}()
	}

	wait.For(t, 5*time.Second, "shakes flowing", func() bool { return answered.Load() >= 2000 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("clients still connected 5 s after Shutdown returned")
	}

	var got, amount, total uint64
	for i, r := range results {
		// A client that is still writing when the server closes may see the
		// close as a reset instead of a FIN: TCP resets a connection closed
		// with unread input. Everything sent before it is still read first.
		if r.reason != proto.ReasonShutdown || r.afterBye != 0 || (r.end != io.EOF && !isReset(r.end)) {
			t.Errorf("client %d: reason %q, %d frames after it, ended with %v; want ReasonShutdown then EOF",
				i, r.reason, r.afterBye, r.end)
		}
		got += r.got
		amount += r.amount
		total += r.answers
		t.Logf("client %d: %d answers, %d got, %d cents, ended with %v", i, r.answers, r.got, r.amount, r.end)
	}
	st := s.Stats()
	if st.Totals.Got != got || st.Totals.GrantedAmount != amount {
		t.Errorf("server counted %d got / %d cents; clients received %d / %d", st.Totals.Got, st.Totals.GrantedAmount, got, amount)
	}
	if st.Totals.Shakes != total {
		t.Errorf("server answered %d shakes; clients received %d", st.Totals.Shakes, total)
	}
	if got == 0 {
		t.Error("no packet granted before the shutdown: the test exercised nothing")
	}
	if st.Connections != 0 {
		t.Errorf("%d connections left after Shutdown", st.Connections)
	}
	// A connection attempted now is refused or closed at once.
	if c, err := client.Dial(s.Addr()); err == nil {
		defer c.Close()
		if f, err := c.Read(); err == nil {
			t.Errorf("a connection after Shutdown was served: %+v", f.Header)
		}
	}
}
