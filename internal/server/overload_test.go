package server

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/proto"
)

// TestOverloadAdmission floods a server whose budget is 200 shakes/s with
// pipelined shakes from several connections: the excess is answered
// "overloaded" at once, no second admits more than the budget, every
// request is answered, and the admin API stays responsive.
func TestOverloadAdmission(t *testing.T) {
	const (
		budget = 200
		conns  = 4
		per    = 500 // shakes per connection, all written at once
	)
	s := startServer(t, func(o *Options) { o.Budget = budget; o.Loops = 1 })

	type answer struct {
		sec    uint64
		result uint32
	}
	answers := make([][]answer, conns)
	errs := make([]error, conns)
	cs := make([]*client.Conn, conns)
	for i := range cs {
		cs[i] = login(t, s, uint32(i+1))
	}

	// Keep asking for /healthz while the flood runs.
	stop := make(chan struct{})
	healthDone := make(chan int)
	go func() {
		n := 0
		cl := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-stop:
				healthDone <- n
				return
			default:
			}
			resp, err := cl.Get("http://" + s.AdminAddr() + "/healthz")
			if err != nil || resp.StatusCode != http.StatusOK {
				healthDone <- -1
				return
			}
			resp.Body.Close()
			n++
		}
	}()

	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for range per {
				buf = proto.AppendShake(buf, now64(), c.User)
			}
			if errs[i] = c.Send(buf); errs[i] != nil {
				return
			}
			for range per {
				f, err := c.Read()
				if err != nil {
					errs[i] = err
					return
				}
				if f.Cmd != proto.CmdShakeResp || f.Field(0) != c.User {
					t.Errorf("conn %d: unexpected frame %+v", i, f.Header)
					return
				}
				answers[i] = append(answers[i], answer{f.Time, f.Field(1)})
			}
		}()
	}
	wg.Wait()
	close(stop)
	if n := <-healthDone; n < 1 {
		t.Errorf("/healthz failed during the flood (%d)", n)
	}

	admitted := map[uint64]int{}
	overloaded := 0
	for i := range cs {
		if errs[i] != nil {
			t.Fatalf("conn %d: %v", i, errs[i])
		}
		if len(answers[i]) != per {
			t.Fatalf("conn %d: %d answers to %d shakes", i, len(answers[i]), per)
		}
		for _, a := range answers[i] {
			switch a.result {
			case proto.ResultOverloaded:
				overloaded++
			case proto.ResultNone:
				admitted[a.sec]++
			default:
				t.Fatalf("conn %d: result %d", i, a.result)
			}
		}
	}
	for sec, n := range admitted {
		if n > budget {
			t.Errorf("second %d admitted %d shakes, budget %d", sec, n, budget)
		}
	}
	if min := conns*per - budget*len(admitted); overloaded < min || overloaded == 0 {
		t.Errorf("%d overloaded answers over %d seconds, want at least %d", overloaded, len(admitted), min)
	}
	t.Logf("%d shakes: admitted per second %v, %d overloaded", conns*per, admitted, overloaded)

	st := s.Stats()
	if st.Totals.Shakes != conns*per || st.Totals.Overloaded != uint64(overloaded) {
		t.Errorf("server counted %d shakes, %d overloaded; clients saw %d, %d", st.Totals.Shakes, st.Totals.Overloaded, conns*per, overloaded)
	}
	// Still serving: health and a fresh shake (admitted or overloaded, but answered).
	if code, _ := httpDo(t, s, "GET", "/healthz", ""); code != http.StatusOK {
		t.Fatalf("/healthz after the flood: %d", code)
	}
	if r, err := cs[0].Shake(); err != nil || (r.Result != proto.ResultNone && r.Result != proto.ResultOverloaded) {
		t.Fatalf("shake after the flood: %+v %v", r, err)
	}
}
