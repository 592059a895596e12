package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"hongbao/internal/proto"
)

var testSecret = []byte("test-secret")

// syncBuffer is a log sink safe for the reporter goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newClient(t *testing.T, o Options) *Client {
	t.Helper()
	if o.Secret == nil && !o.Classic {
		o.Secret = testSecret
	}
	if o.Loops == 0 {
		o.Loops = 2
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func run(t *testing.T, c *Client, ctx context.Context) *Summary {
	t.Helper()
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
	}
	s, err := c.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkBalance checks that every request sent was either answered in time
// or counted as a timeout.
func checkBalance(t *testing.T, s *Summary) {
	t.Helper()
	if s.Sent != s.Answered+s.Timeouts {
		t.Errorf("sent %d != answered %d + timeouts %d", s.Sent, s.Answered, s.Timeouts)
	}
	if r := s.Got + s.None + s.AllTaken + s.Overloaded; r > s.Answered+s.Late {
		t.Errorf("%d results for %d answers (%d late)", r, s.Answered, s.Late)
	}
}

// Two processes' worth of clients, each owning half the users, together
// send the global rate without talking to each other; logins carry valid
// tokens; every shake is answered and its latency recorded.
func TestRunRateAndLatency(t *testing.T) {
	t.Parallel()
	const users, qps = 300, 300
	srv := startServer(t, func(s *fakeServer) { s.secret = testSecret })
	var logs [2]syncBuffer
	clients := []*Client{
		newClient(t, Options{Addr: srv.addr(), Total: users, From: 1, To: 150, QPS: qps,
			Duration: 3 * time.Second, Timeout: 2 * time.Second, Log: &logs[0]}),
		newClient(t, Options{Addr: srv.addr(), Total: users, From: 151, To: 300, QPS: qps,
			Duration: 3 * time.Second, Timeout: 2 * time.Second, Log: &logs[1]}),
	}
	var sums [2]*Summary
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { sums[i] = run(t, c, nil) })
	}
	wg.Wait()

	var sent, got, amount uint64
	for i, s := range sums {
		if s.Users != 150 || s.Connected != 150 {
			t.Errorf("client %d: users %d connected %d, want 150", i, s.Users, s.Connected)
		}
		if s.Errors != 0 || s.Timeouts != 0 || s.Disconnects != 0 {
			t.Errorf("client %d: errors %d timeouts %d disconnects %d", i, s.Errors, s.Timeouts, s.Disconnects)
		}
		if s.Answered != s.Sent || s.Sent == 0 {
			t.Errorf("client %d: sent %d answered %d", i, s.Sent, s.Answered)
		}
		checkBalance(t, s)
		if s.Amount != 5*s.Got || s.Got+s.None != s.Answered {
			t.Errorf("client %d: got %d none %d amount %d answered %d", i, s.Got, s.None, s.Amount, s.Answered)
		}
		if s.LatencyUS.P50 <= 0 || s.LatencyUS.P99 < s.LatencyUS.P50 || s.LatencyUS.Max < s.LatencyUS.P99 {
			t.Errorf("client %d: latency %+v", i, s.LatencyUS)
		}
		if s.AchievedQPS < 0.75*qps/2 || s.AchievedQPS > 1.25*qps/2 {
			t.Errorf("client %d: achieved %.1f/s, want about %d", i, s.AchievedQPS, qps/2)
		}
		if len(s.Seconds) < 3 {
			t.Errorf("client %d: %d seconds recorded", i, len(s.Seconds))
		}
		var secSent uint64
		for _, sec := range s.Seconds {
			secSent += sec.Sent
		}
		if secSent != s.Sent {
			t.Errorf("client %d: seconds sum to %d sent, total %d", i, secSent, s.Sent)
		}
		sent += s.Sent
		got += s.Got
		amount += s.Amount
		log := logs[i].String()
		if !strings.Contains(log, " conns=150 ") || !strings.Contains(log, " p99=") {
			t.Errorf("client %d: log lacks per-second lines:\n%s", i, log)
		}
	}

	srv.mu.Lock()
	if srv.shakes != int(sent) || srv.got != int(got) || amount != 5*got {
		t.Errorf("server saw %d shakes %d got; clients sent %d got %d", srv.shakes, srv.got, sent, got)
	}
	if srv.badTokens != 0 || len(srv.logins) != users || srv.loginCmds[proto.CmdTokenLogin] != users {
		t.Errorf("logins: %d users, %d token logins, %d bad", len(srv.logins), srv.loginCmds[proto.CmdTokenLogin], srv.badTokens)
	}
	srv.mu.Unlock()
	rates := srv.rates()
	if len(rates) == 0 {
		t.Fatal("no full second of load seen by the server")
	}
	for _, r := range rates {
		if r < qps*8/10 || r > qps*12/10 {
			t.Errorf("server saw %d shakes in a full second, want about %d (all: %v)", r, qps, rates)
		}
	}
}

// A server that rejects the login with an error frame and closes: the
// reason is counted, the user retries with backoff, nothing is sent.
func TestClosedByServer(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(s *fakeServer) { s.refuse = proto.ReasonBadToken })
	c := newClient(t, Options{Addr: srv.addr(), Total: 10, QPS: 10, Duration: time.Second})
	s := run(t, c, nil)
	reason := proto.ReasonBadToken.String()
	if s.ClosedByServer[reason] < 10 {
		t.Errorf("closed_by_server = %v, want >= 10 for %q", s.ClosedByServer, reason)
	}
	if s.Connected != 0 || s.Sent != 0 || s.SkippedOffline == 0 {
		t.Errorf("connected %d sent %d skipped %d", s.Connected, s.Sent, s.SkippedOffline)
	}
	if s.Disconnects < 10 || s.Errors < 10 {
		t.Errorf("disconnects %d errors %d, want >= 10", s.Disconnects, s.Errors)
	}
	srv.mu.Lock()
	attempts := srv.loginCmds[proto.CmdTokenLogin]
	srv.mu.Unlock()
	// 100 ms doubling with jitter: a few attempts each in about a second.
	if attempts < 20 || attempts > 10*8 {
		t.Errorf("%d login attempts by 10 users in ~1s", attempts)
	}
	b, err := json.Marshal(s)
	if err != nil || !bytes.Contains(b, []byte(`"closed_by_server":{"token signature invalid":`)) {
		t.Errorf("summary JSON: %s (%v)", b, err)
	}
}

// A dropped connection comes back: the user reconnects after its backoff
// and goes on shaking; the request lost with the connection is a timeout.
func TestReconnect(t *testing.T) {
	t.Parallel()
	const users = 20
	srv := startServer(t, func(s *fakeServer) { s.dropFirst = true })
	// Q > N: each user has two slots a second.
	c := newClient(t, Options{Addr: srv.addr(), Total: users, QPS: 2 * users, Duration: 2 * time.Second})
	s := run(t, c, nil)
	if s.Disconnects < users || s.Reconnects < users {
		t.Errorf("disconnects %d reconnects %d, want >= %d", s.Disconnects, s.Reconnects, users)
	}
	if s.Timeouts < users || s.Answered == 0 {
		t.Errorf("timeouts %d answered %d", s.Timeouts, s.Answered)
	}
	checkBalance(t, s)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for id := uint32(1); id <= users; id++ {
		if srv.logins[id] < 2 {
			t.Errorf("user %d logged in %d times", id, srv.logins[id])
		}
	}
}

// Classic mode logs in with the bare user id, opens pushed packets with
// userid 0 and answers pings.
func TestClassicPushAndPing(t *testing.T) {
	t.Parallel()
	const users = 20
	srv := startServer(t, func(s *fakeServer) { s.push = true })
	c := newClient(t, Options{Addr: srv.addr(), Total: users, QPS: users, Duration: time.Second, Classic: true})
	s := run(t, c, nil)
	if s.Pushes != users || s.Opens != users || s.OpenedAmount != 17*users {
		t.Errorf("pushes %d opens %d opened %d", s.Pushes, s.Opens, s.OpenedAmount)
	}
	if s.Errors != 0 || s.Answered == 0 {
		t.Errorf("errors %d answered %d", s.Errors, s.Answered)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.loginCmds[proto.CmdLogin] != users || srv.loginCmds[proto.CmdTokenLogin] != 0 {
		t.Errorf("login commands %v, want only %d bare logins", srv.loginCmds, users)
	}
	for id := uint32(1); id <= users; id++ {
		who, ok := srv.opens[1000+id]
		if !ok || who != 0 {
			t.Errorf("packet %d: opened=%v with userid %d, want userid 0", 1000+id, ok, who)
		}
		if srv.pongs[7000+id] != 1 {
			t.Errorf("user %d: %d pongs", id, srv.pongs[7000+id])
		}
	}
}

// Not classic: the open names the user itself.
func TestTokenPushOpensWithOwnID(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(s *fakeServer) { s.push = true })
	c := newClient(t, Options{Addr: srv.addr(), Total: 3, QPS: 0, Duration: 300 * time.Millisecond})
	s := run(t, c, nil)
	if s.Opens != 3 {
		t.Errorf("opens %d", s.Opens)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for id := uint32(1); id <= 3; id++ {
		if who := srv.opens[1000+id]; who != id {
			t.Errorf("packet %d opened with userid %d, want %d", 1000+id, who, id)
		}
	}
}

// Answers slower than Timeout are timeouts, not hidden; when they do come
// they count as late.
func TestTimeoutsAndLate(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(s *fakeServer) { s.answerDelay = 500 * time.Millisecond })
	c := newClient(t, Options{Addr: srv.addr(), Total: 10, QPS: 10, Duration: 1500 * time.Millisecond,
		Timeout: 150 * time.Millisecond})
	s := run(t, c, nil)
	if s.Sent == 0 || s.Answered != 0 || s.Timeouts != s.Sent {
		t.Errorf("sent %d answered %d timeouts %d: every request should time out", s.Sent, s.Answered, s.Timeouts)
	}
	if s.Late == 0 || s.Got+s.None != s.Late {
		t.Errorf("late %d, results %d", s.Late, s.Got+s.None)
	}
	checkBalance(t, s)
}

// The admin endpoints: health, stats, and a live rate change that takes
// effect at the next second.
func TestAdminSetQPS(t *testing.T) {
	t.Parallel()
	const users = 200
	srv := startServer(t, nil)
	const adminToken = "load-test-admin-token"
	c := newClient(t, Options{Addr: srv.addr(), Total: users, QPS: 50, Duration: 3 * time.Second,
		Admin: "127.0.0.1:0", AdminToken: adminToken})
	if c.AdminAddr() == "" {
		t.Fatal("no admin address")
	}
	base := "http://" + c.AdminAddr()
	done := make(chan *Summary)
	go func() { done <- run(t, c, nil) }()

	getAs := func(token, method, path string) (int, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(method, path string) (int, string) { return getAs(adminToken, method, path) }
	for c.Stats().Phase != phaseLoad {
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get("GET", "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz: %d %q", code, body)
	}
	// Changing the rate, even reading it, and pprof need the token;
	// health and stats do not.
	for _, tok := range []string{"", "wrong-admin-token-0123"} {
		for _, r := range [][2]string{{"POST", "/qps?qps=1"}, {"GET", "/qps?qps=1"}, {"GET", "/qps"}, {"GET", "/debug/pprof/cmdline"}} {
			if code, _ := getAs(tok, r[0], r[1]); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", r[0], r[1], tok, code)
			}
		}
	}
	if code, _ := getAs("", "GET", "/api/stats"); code != 200 {
		t.Errorf("GET /api/stats without a token: %d, want 200", code)
	}
	if c.QPS() != 50 {
		t.Fatalf("refused requests changed the rate to %d", c.QPS())
	}
	if code, _ := get("POST", "/qps?qps=-3"); code != http.StatusBadRequest {
		t.Errorf("bad qps accepted: %d", code)
	}
	if code, body := get("POST", "/qps?qps=200"); code != 200 || strings.TrimSpace(body) != "qps=200" {
		t.Errorf("set qps: %d %q", code, body)
	}
	if code, body := get("GET", "/qps"); code != 200 || strings.TrimSpace(body) != "qps=200" {
		t.Errorf("get qps: %d %q", code, body)
	}
	code, body := get("GET", "/api/stats")
	var snap Snapshot
	if err := json.Unmarshal([]byte(body), &snap); code != 200 || err != nil {
		t.Fatalf("stats: %d %v %q", code, err, body)
	}
	if snap.Users != users || snap.Conns != users || snap.QPS != 200 || snap.Phase != phaseLoad {
		t.Errorf("stats: %+v", snap)
	}
	s := <-done
	checkBalance(t, s)
	rates := srv.rates()
	if len(rates) == 0 || rates[len(rates)-1] < 160 || rates[len(rates)-1] > 240 {
		t.Errorf("rates after the change %v, want the last full second about 200", rates)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("admin server still up after Run")
	}
}

// Cancelling ctx ends the run early and still yields a summary.
func TestCancel(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	for _, d := range []time.Duration{0, time.Minute} {
		c := newClient(t, Options{Addr: srv.addr(), Total: 10, QPS: 10, Duration: d})
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		start := time.Now()
		s := run(t, c, ctx)
		cancel()
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("duration %v: Run took %v after cancel", d, el)
		}
		if s.Connected != 10 || s.Interrupted != (d > 0) {
			t.Errorf("duration %v: connected %d interrupted %v", d, s.Connected, s.Interrupted)
		}
		if _, err := c.Run(context.Background()); !errors.Is(err, ErrReused) {
			t.Errorf("second Run: %v", err)
		}
	}
}

// Nothing listens: users fail their first attempt, the ramp ends anyway,
// and the failures are counted.
func TestServerDown(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	addr := srv.addr()
	srv.stop()
	c := newClient(t, Options{Addr: addr, Total: 5, QPS: 5, Duration: 300 * time.Millisecond})
	s := run(t, c, nil)
	if s.Connected != 0 || s.DialErrors < 5 || s.Errors < s.DialErrors {
		t.Errorf("connected %d dial errors %d errors %d", s.Connected, s.DialErrors, s.Errors)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no users":    {Addr: "127.0.0.1:1", Secret: testSecret},
		"bad range":   {Addr: "127.0.0.1:1", Total: 10, From: 5, To: 11, Secret: testSecret},
		"from > to":   {Addr: "127.0.0.1:1", Total: 10, From: 6, To: 5, Secret: testSecret},
		"no secret":   {Addr: "127.0.0.1:1", Total: 10},
		"neg qps":     {Addr: "127.0.0.1:1", Total: 10, QPS: -1, Secret: testSecret},
		"bad address": {Addr: "nowhere", Total: 10, Secret: testSecret},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := New(Options{Addr: "127.0.0.1:1", Total: 1_000_000_000, Classic: true}); !errors.Is(err, ErrFDLimit) {
		t.Errorf("a billion users in one process: %v, want ErrFDLimit", err)
	}
}

// The last tick's batches are still queued on the loops when the scheduler
// stops; the drain must wait for them and their answers, not count them as
// timeouts.
func TestDrainWaitsForLastTick(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	c := newClient(t, Options{Addr: srv.addr(), Total: 500, QPS: 2000, Duration: time.Second})
	s := run(t, c, nil)
	if s.Timeouts != 0 || s.Answered != s.Sent || s.Sent < 1500 {
		t.Errorf("sent %d answered %d timeouts %d", s.Sent, s.Answered, s.Timeouts)
	}
}
