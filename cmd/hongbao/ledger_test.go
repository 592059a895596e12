package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/bench"
	"hongbao/internal/client"
	"hongbao/internal/harness"
	"hongbao/internal/ledger"
	"hongbao/internal/proto"
	"hongbao/internal/server"
)

// ack is an open the client saw answered with money.
type ack struct {
	packet, user, amount uint32
}

func loginAll(t *testing.T, addr, secret string, users []uint32) []*client.Conn {
	t.Helper()
	sg, err := auth.NewSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*client.Conn, len(users))
	for i, u := range users {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.LoginToken(u, sg.Mint(u, time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns
}

// TestCrashKeepsEveryAcknowledgedOpen SIGKILLs the server during a stream
// of opens, restarts it on the same directory, and checks that every open
// the clients saw answered is in the ledger with the same amount, that the
// restarted server answers it the same, and that the audit passes.
func TestCrashKeepsEveryAcknowledgedOpen(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "ledger")
	secret := "crash-secret"
	spec := harness.ServerSpec{Secret: secret, Extra: []string{"--data-dir", data}}
	srv, err := harness.StartServer(bin, dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	users := make([]uint32, n)
	for i := range users {
		users[i] = uint32(i + 1)
	}
	conns := loginAll(t, srv.Addr, secret, users)
	var gen server.GeneratorInfo
	if err := srv.Admin.Post("/api/generators", server.GeneratorSpec{Count: 1 << 20, Rate: 2000, From: 1, To: n}, &gen); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		acks []ack
		wg   sync.WaitGroup
	)
	for i, c := range conns {
		wg.Add(1)
		go func(u uint32, c *client.Conn) {
			defer wg.Done()
			for {
				p, err := c.ReadPush()
				if err != nil {
					return // the server is gone
				}
				r, err := c.Open(p.Packet)
				if err != nil {
					return
				}
				if r.Result == proto.ResultOK {
					mu.Lock()
					acks = append(acks, ack{p.Packet, u, r.Amount})
					mu.Unlock()
				}
			}
		}(users[i], c)
	}
	// Let the stream run, then crash in the middle of it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		k := len(acks)
		mu.Unlock()
		if k >= 2000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Kill()
	wg.Wait()
	if len(acks) < 100 {
		t.Fatalf("only %d opens acknowledged before the crash", len(acks))
	}

	out, stderr, code := run(t, nil, "audit", "--data-dir", data)
	if code != 0 {
		t.Fatalf("audit after the crash: exit %d\n%s%s", code, out, stderr)
	}
	st, err := ledger.Replay(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		p := st.Packets[a.packet]
		if p == nil {
			t.Fatalf("acknowledged open %+v: packet not in the ledger", a)
		}
		if got, ok := p.Opened[a.user]; !ok || got != uint64(a.amount) {
			t.Fatalf("acknowledged open %+v: ledger has %d (%v)", a, got, ok)
		}
	}

	// Restart on the same directory: the same answers, and a clean audit.
	srv2, err := harness.StartServer(bin, dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Stop(10 * time.Second)
	conns2 := loginAll(t, srv2.Addr, secret, users)
	for i, a := range acks {
		if i%97 != 0 {
			continue
		}
		r, err := conns2[a.user-1].Open(a.packet)
		if err != nil {
			t.Fatal(err)
		}
		if r.Result != proto.ResultAlreadyOpened || r.Amount != a.amount {
			t.Fatalf("after restart, open %+v answers %+v", a, r)
		}
	}
	out, stderr, code = run(t, []string{"HONGBAO_ADMIN_TOKEN=" + srv2.Admin.Token}, "audit", "--admin", srv2.Admin.Addr())
	if code != 0 {
		t.Fatalf("audit of the restarted server: exit %d\n%s%s", code, out, stderr)
	}
	t.Logf("%d opens acknowledged before SIGKILL; %d records recovered", len(acks), st.Records)
}

// TestSeedFlowEndToEnd: the seed's flow: the generator sends group packets
// at R/s to three random users, the load client opens every push; the sum
// the clients received equals the sum the server granted, and the audit passes.
func TestSeedFlowEndToEnd(t *testing.T) {
	dir := t.TempDir()
	secret := harness.NewSecret()
	srv, err := harness.StartServer(bin, dir, harness.ServerSpec{Secret: secret, Users: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(10 * time.Second)
	const users, rate, genSeconds, loadSeconds = 300, 200, 25, 30
	ld, err := harness.StartLoad(bin, dir, harness.LoadSpec{Addr: srv.Addr, Users: users, QPS: 300, Duration: loadSeconds * time.Second, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := srv.Admin.ServerStats()
		if err == nil && st.LoggedIn == users {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("load client did not log in its %d users: %+v %v", users, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var out map[string]any
	if err := srv.Admin.Get(fmt.Sprintf("/fahongbao?qps=%d&sum=%d&min=1&max=%d", rate, rate*genSeconds, users), &out); err != nil {
		t.Fatal(err)
	}
	sum, err := ld.Summary()
	if err != nil {
		t.Fatal(err)
	}
	st, err := srv.Admin.ServerStats()
	if err != nil {
		t.Fatal(err)
	}
	g := st.Groups
	if g.Sent != rate*genSeconds || g.GrantedAmount != g.FundedAmount || g.Grants != 3*g.Sent {
		t.Fatalf("server: %+v: want %d packets, every share granted", g, rate*genSeconds)
	}
	if sum.OpenedAmount != g.GrantedAmount || sum.Pushes != 3*g.Sent {
		t.Fatalf("clients received %d cents from %d pushes, server granted %d in %d packets", sum.OpenedAmount, sum.Pushes, g.GrantedAmount, g.Sent)
	}
	o, e, code := run(t, []string{"HONGBAO_ADMIN_TOKEN=" + srv.Admin.Token}, "audit", "--admin", srv.Admin.Addr())
	if code != 0 {
		t.Fatalf("audit: exit %d\n%s%s", code, o, e)
	}
	t.Logf("%d packets, %d cents granted and received; %s", g.Sent, g.GrantedAmount, strings.TrimSpace(o))
}

func TestAuditFindsViolationsAndExits1(t *testing.T) {
	dir := t.TempDir()
	l, _, err := ledger.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	recs := []ledger.Record{
		{Kind: ledger.KindFunded, Packet: 1, User: 9, Amount: 100, Shares: 2, Balance: -100, Recipients: []uint32{1, 2}},
		{Kind: ledger.KindGrant, Packet: 1, User: 1, Amount: 60, Remaining: 40, SharesLeft: 1, Balance: 60},
		{Kind: ledger.KindGrant, Packet: 1, User: 1, Amount: 50, Remaining: 0, SharesLeft: 0, Balance: 110},
	}
	for i := range recs {
		l.Append(&recs[i], nil)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out, _, code := run(t, nil, "audit", "--data-dir", dir)
	if code != 1 || !strings.Contains(out, "user 1 opened packet 1 twice") || !strings.Contains(out, "funded 100 differs") {
		t.Fatalf("audit of a bad ledger: exit %d, output:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, ledger.FileName)); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := run(t, nil, "audit", "--data-dir", filepath.Join(dir, "nope"))
	if code != 1 || !strings.Contains(stderr, "no ledger") {
		t.Fatalf("audit of a missing ledger: exit %d %s", code, stderr)
	}
}

func TestBenchLedgerPrintsJSON(t *testing.T) {
	out, stderr, code := run(t, nil, "bench-ledger", "--duration", "1s", "--concurrency", "64", "--conns", "8", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("bench-ledger exit %d\nstderr:\n%s", code, stderr)
	}
	var rep bench.LedgerReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench-ledger output is not its JSON report: %v\n%s", err, out)
	}
	if rep.Grants.PerSecond <= 0 || rep.Grants.P99CommitUS <= 0 || rep.ShakeOff.ShakesPerS <= 0 || rep.ShakeOn.GotPerS <= 0 ||
		rep.ShakeOnOff <= 0 || rep.ShakeOn.AuditOK == nil || !*rep.ShakeOn.AuditOK {
		t.Fatalf("implausible report: %+v", rep)
	}
}
