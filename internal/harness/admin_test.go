package harness

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"hongbao/internal/load"
	"hongbao/internal/server"
	"hongbao/internal/testutil/servertest"
	"hongbao/internal/wait"
)

const testToken = "harness-admin-token-0123456789"

var testSecret = []byte("harness-test-secret")

// startServer runs a real server in this process, with a ledger, on
// loopback ports; it stops with the test.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	return servertest.Start(t, server.Options{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", AdminToken: testToken, Secret: testSecret,
		Sets: 4, Users: 100, DataDir: t.TempDir()})
}

// Every server endpoint the orchestrators use, through its typed method,
// against a real server's admin listener.
func TestServerAdminTyped(t *testing.T) {
	s := startServer(t)
	a := NewServerAdmin(s.AdminAddr(), testToken)
	if err := a.Healthz(); err != nil {
		t.Fatalf("healthz: %v", err)
	}
	c, err := a.StartCampaign(server.CampaignSpec{Count: 50, Rate: 10, Min: 1, Max: 5})
	if err != nil || c.ID == 0 || c.Count != 50 {
		t.Fatalf("start campaign: %+v, %v", c, err)
	}
	cs, err := a.Campaigns()
	if err != nil || len(cs) != 1 || cs[0].ID != c.ID {
		t.Fatalf("campaigns: %+v, %v", cs, err)
	}
	st, err := a.ServerStats()
	if err != nil || len(st.Campaigns) != 1 {
		t.Fatalf("stats: %+v, %v", st, err)
	}
	stopped, err := a.StopCampaign(c.ID)
	if err != nil || stopped.ID != c.ID {
		t.Fatalf("stop campaign: %+v, %v", stopped, err)
	}
	if _, err := a.StopCampaign(c.ID + 100); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("stopping an unknown campaign: %v, want a 404", err)
	}
	g, err := a.StartGenerator(server.GeneratorSpec{Count: 5, Rate: 5, From: 1, To: 10})
	if err != nil || g.ID == 0 {
		t.Fatalf("start generator: %+v, %v", g, err)
	}
	gs, err := a.Generators()
	if err != nil || len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("generators: %+v, %v", gs, err)
	}
	if _, err := a.StartGenerator(server.GeneratorSpec{Count: 5, Rate: 5, From: 10, To: 1}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a bad generator: %v, want a 400 with the reason", err)
	}
	rep, err := a.Audit()
	if err != nil || !rep.OK {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
	if b, err := a.Balance(7); err != nil || b != 0 {
		t.Fatalf("balance of a user who got nothing: %d, %v", b, err)
	}
	m, err := a.Metrics()
	if err != nil || !bytes.Contains(m, []byte("hongbao_")) {
		t.Fatalf("metrics: %v\n%.200s", err, m)
	}
	if err := a.PauseMonitor(true); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("pausing the samples of a server without --monitor: %v, want a 404", err)
	}
	// The token is sent: without it the guarded endpoints refuse.
	bad := NewServerAdmin(s.AdminAddr(), "")
	if _, err := bad.Audit(); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("audit without the token: %v, want a 401", err)
	}
}

// The load client's endpoints through LoadAdmin: a rate set is the rate
// read back, by /qps and by /api/stats.
func TestLoadAdminTyped(t *testing.T) {
	s := startServer(t)
	c, err := load.New(load.Options{Addr: s.Addr(), Total: 20, Secret: testSecret, Admin: "127.0.0.1:0", AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _, _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	a := NewLoadAdmin(c.AdminAddr(), testToken)
	wait.For(t, 10*time.Second, "the load client's admin listener", func() bool { return a.Healthz() == nil })
	if err := a.SetQPS(7); err != nil {
		t.Fatal(err)
	}
	if q, err := a.QPS(); err != nil || q != 7 {
		t.Fatalf("qps: %d, %v", q, err)
	}
	wait.For(t, 10*time.Second, "every user logged in", func() bool {
		st, err := a.LoadStats()
		return err == nil && st.QPS == 7 && st.Users == 20 && st.Conns == 20
	})
	if err := a.SetQPS(-1); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a negative rate: %v, want a 400", err)
	}
	if err := NewLoadAdmin(c.AdminAddr(), "").SetQPS(1); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a rate without the token: %v, want a 401", err)
	}
}
