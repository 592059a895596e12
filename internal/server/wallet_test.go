package server

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"hongbao/internal/client"
	"hongbao/internal/proto"
)

// TestZeroBalanceSendIsRefused: a logged-in user with nothing sends; the
// send is refused with result 32 and writes nothing, and the audit holds.
func TestZeroBalanceSendIsRefused(t *testing.T) {
	s := startLedgerServer(t, "", nil)
	c := login(t, s, 5)
	for k := range uint64(3) {
		if r, id := sendResult(t, c, 20000, 1, k+1, 6); r != proto.ResultInsufficientFunds || id != 0 {
			t.Fatalf("send from a zero balance: result %d packet %d, want %d", r, id, proto.ResultInsufficientFunds)
		}
	}
	if err := s.led.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := s.led.Stats().Records; n != 0 {
		t.Fatalf("refused sends wrote %d records", n)
	}
	if b := s.money.Balance(5); b != 0 {
		t.Fatalf("balance %d after refused sends", b)
	}
	if g := s.Stats().Groups; g.InsufficientFunds != 3 || g.Sent != 0 {
		t.Fatalf("group stats %+v", g)
	}
	if d := scrape(t, s)["hongbao_group_sends_refused_total"]; d == nil || !strings.Contains(fmt.Sprint(d), "3") {
		t.Fatalf("hongbao_group_sends_refused_total %+v", d)
	}
	audit(t, s)
}

// TestTopUpAndWithdrawOverHTTP: a top-up answers once durable; the same
// key credits once and answers the first result, also after a restart; a
// withdrawal beyond the balance is refused with 409; bad requests are 400;
// no admin token is 401.
func TestTopUpAndWithdrawOverHTTP(t *testing.T) {
	dir := t.TempDir()
	s := startLedgerServer(t, dir, nil)
	var tr Transfer
	if code := httpJSON(t, s, "POST", "/api/topup", `{"user":9,"cents":700,"key":"pay-1"}`, &tr); code != http.StatusOK || tr != (Transfer{User: 9, Cents: 700, Balance: 700}) {
		t.Fatalf("top-up: %d %+v", code, tr)
	}
	tr = Transfer{}
	if code := httpJSON(t, s, "POST", "/api/topup", `{"user":9,"cents":700,"key":"pay-1"}`, &tr); code != http.StatusOK || !tr.Repeat || tr.Balance != 700 {
		t.Fatalf("repeated top-up: %d %+v", code, tr)
	}
	var e struct{ Error string }
	for _, c := range []struct {
		path, body string
		code       int
	}{
		{"/api/topup", `{"user":9,"cents":800,"key":"pay-1"}`, http.StatusConflict},
		{"/api/withdraw", `{"user":9,"cents":701,"key":"out-1"}`, http.StatusConflict},
		{"/api/topup", `{"user":0,"cents":1,"key":"k"}`, http.StatusBadRequest},
		{"/api/topup", `{"user":9,"cents":0,"key":"k"}`, http.StatusBadRequest},
		{"/api/topup", `{"user":9,"cents":-5,"key":"k"}`, http.StatusBadRequest},
		{"/api/topup", `{"user":9,"cents":5}`, http.StatusBadRequest},
		{"/api/withdraw", `{"user":9,"cents":5,"key":"k","x":1}`, http.StatusBadRequest},
		{"/api/topup", `not json`, http.StatusBadRequest},
	} {
		e.Error = ""
		if code := httpJSON(t, s, "POST", c.path, c.body, &e); code != c.code || e.Error == "" {
			t.Fatalf("POST %s %s: %d %q, want %d", c.path, c.body, code, e.Error, c.code)
		}
	}
	if code := httpJSON(t, s, "POST", "/api/withdraw", `{"user":9,"cents":701,"key":"out-2"}`, &e); !strings.Contains(e.Error, "insufficient funds") {
		t.Fatalf("short withdrawal: %d %q, want it to say insufficient funds", code, e.Error)
	}
	req, _ := http.NewRequest("POST", "http://"+s.AdminAddr()+"/api/topup", strings.NewReader(`{"user":9,"cents":1,"key":"x"}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("top-up without the admin token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	tr = Transfer{}
	if code := httpJSON(t, s, "POST", "/api/withdraw", `{"user":9,"cents":200,"key":"out-1"}`, &tr); code != http.StatusOK || tr.Balance != 500 {
		t.Fatalf("withdrawal: %d %+v", code, tr)
	}
	stopServer(t, s)

	s = startLedgerServer(t, dir, nil)
	tr = Transfer{}
	if code := httpJSON(t, s, "POST", "/api/topup", `{"user":9,"cents":700,"key":"pay-1"}`, &tr); code != http.StatusOK || !tr.Repeat || tr.Balance != 700 {
		t.Fatalf("top-up repeated after a restart: %d %+v", code, tr)
	}
	tr = Transfer{}
	if code := httpJSON(t, s, "POST", "/api/withdraw", `{"user":9,"cents":200,"key":"out-1"}`, &tr); code != http.StatusOK || !tr.Repeat {
		t.Fatalf("withdrawal repeated after a restart: %d %+v", code, tr)
	}
	if b := s.money.Balance(9); b != 500 {
		t.Fatalf("balance %d after a restart, want 500", b)
	}
	rep := audit(t, s)
	if rep.ByKind["topup"] != 1 || rep.ByKind["withdraw"] != 1 {
		t.Fatalf("records %v, want one top-up and one withdrawal", rep.ByKind)
	}
}

// TestRacingSendersNeverGoNegative: one funded user pipelines 2,000 sends
// on its connection (a second login of the user replaces the first, so
// many goroutines racing on one balance are money's TestRacingSpenders);
// then 1,000 users, each with a balance and a connection of its own, send
// to each other all at once. No balance goes below zero, the sends
// accepted are what the balances cover, and the audit (conservation
// included) is clean.
func TestRacingSendersNeverGoNegative(t *testing.T) {
	s := startLedgerServer(t, "", func(o *Options) {
		o.MaxLivePerSender, o.MaxSenderRate, o.MaxLivePackets = 1<<20, 1<<30, 1<<20
	})
	// One balance of 5,000 cents; 2,000 pipelined sends of 100.
	fund(t, s, 1, 5000)
	c := login(t, s, 1)
	var b []byte
	const n = 2000
	for k := range n {
		b = proto.AppendSend(b, 1, 100, 1, uint64(k+1), []uint32{2})
	}
	if err := c.Send(b); err != nil {
		t.Fatal(err)
	}
	got := map[uint32]int{}
	for range n {
		f, err := c.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Cmd == proto.CmdSendResp {
			got[f.Field(0)]++
		}
	}
	t.Logf("one user with 5,000 cents, %d pipelined sends of 100: %v (result: count)", n, got)
	if got[proto.ResultOK] != 50 || got[proto.ResultInsufficientFunds] != n-50 || s.money.Balance(1) != 0 {
		t.Fatalf("results %v, balance %d: want 50 sent, the rest refused, 0 left", got, s.money.Balance(1))
	}

	// 1,000 users with 1,000 cents each send 300 cents to three others,
	// five times, all at once.
	const users = 1000
	conns := make([]*client.Conn, users)
	for i := range conns {
		u := uint32(100 + i)
		fund(t, s, u, 1000)
		conns[i] = login(t, s, u)
	}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range conns {
		wg.Go(func() {
			<-start
			u := uint32(100 + i)
			var b []byte
			for k := range 5 {
				to := []uint32{100 + (u-100+1)%users, 100 + (u-100+7)%users, 100 + (u-100+31)%users}
				b = proto.AppendSend(b, 1, 300, 3, uint64(k+1), to)
			}
			if err := c.Send(b); err != nil {
				t.Error(err)
				return
			}
			for n := 0; n < 5; {
				f, err := c.Read()
				if err != nil {
					t.Error(err)
					return
				}
				if f.Cmd != proto.CmdSendResp {
					continue // pushes of the others' packets
				}
				n++
				switch f.Field(0) {
				case proto.ResultOK:
					ok.Add(1)
				case proto.ResultInsufficientFunds:
					refused.Add(1)
				default:
					t.Errorf("send: result %d", f.Field(0))
				}
			}
		})
	}
	close(start)
	wg.Wait()
	neg := 0
	for u := uint32(100); u < 100+users; u++ {
		if s.money.Balance(u) < 0 {
			neg++
		}
	}
	rep := audit(t, s)
	t.Logf("%d users racing, 5 sends of 300 from 1,000 cents each: %d sent, %d refused, %d balances below zero; audit of %d records ok",
		users, ok.Load(), refused.Load(), neg, rep.Records)
	// Each user can cover three sends of its own; what it receives while
	// sending may cover a fourth or fifth.
	if neg != 0 || ok.Load()+refused.Load() != 5*users || ok.Load() < 3*users {
		t.Fatalf("%d sent, %d refused, %d balances below zero", ok.Load(), refused.Load(), neg)
	}
}
