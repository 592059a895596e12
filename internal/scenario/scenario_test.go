package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hongbao/internal/harness"
	"hongbao/internal/nodes"
	"hongbao/internal/server"
)

// bin is the hongbao binary the tests' children run.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hongbao-scenario-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "hongbao")
	if out, err := exec.Command("go", "build", "-o", bin, "hongbao/cmd/hongbao").CombinedOutput(); err != nil {
		panic("building hongbao: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// nodeSpecs lays users out over m nodes of dir.
func nodeSpecs(t *testing.T, dir string, users, m int) []NodeSpec {
	t.Helper()
	mp, err := nodes.New(uint32(users), m)
	if err != nil {
		t.Fatal(err)
	}
	specs := make([]NodeSpec, m)
	for k := range specs {
		f, to := mp.Range(k)
		name := fmt.Sprintf("n%d", k)
		specs[k] = NodeSpec{Name: name, Dir: filepath.Join(dir, name), From: f, To: to,
			ServerSpec: harness.ServerSpec{Users: users, Extra: []string{"--node", strconv.Itoa(k), "--nodes", strconv.Itoa(m)}}}
	}
	return specs
}

// events records what Progress was told, phase by phase.
type events struct {
	mu    sync.Mutex
	kinds map[string][]EventKind
}

func (r *events) add(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kinds == nil {
		r.kinds = map[string][]EventKind{}
	}
	r.kinds[ev.Name] = append(r.kinds[ev.Name], ev.Kind)
}

// A whole scenario over real children: two nodes, one client that sends
// every user to its node; every phase kind leaves its result, Settle reads
// the final state and Stop leaves no child behind.
func TestPhasesOverRealChildren(t *testing.T) {
	const users = 400
	dir := t.TempDir()
	cl := NewCluster(bin, harness.NewSecret())
	cl.Pids = filepath.Join(dir, "pids.txt")
	e := New(cl, users)
	var evs events
	e.Progress = evs.add
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cl.Stop(time.Second, time.Second)
		}
	})
	err := e.Run(context.Background(),
		Nodes{Specs: nodeSpecs(t, dir, users, 2)},
		Clients{Specs: []ClientSpec{{Dir: dir, AllNodes: true, LoadSpec: harness.LoadSpec{Users: users, Name: "c0"}}}},
		Connect{Poll: 50 * time.Millisecond, Timeout: time.Minute},
		Hold{For: 300 * time.Millisecond, Poll: 100 * time.Millisecond},
		Packets{Campaign: &server.CampaignSpec{Count: 300, Rate: 30, Min: 1, Max: 10}, Generator: &server.GeneratorSpec{Count: 20, Rate: 20}},
		Rate{QPS: 200, For: 1500 * time.Millisecond, Poll: 500 * time.Millisecond},
		Mark{Name: "end"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if c := e.Last("connect"); c.Online != users || c.Connected <= 0 {
		t.Fatalf("connect: %+v", c)
	}
	if h := e.Last("hold"); h.MinOnline != users {
		t.Fatalf("hold: fewest online %d, want %d", h.MinOnline, users)
	}
	camps := e.Last("packets").Campaigns
	if len(camps) != 2 || camps[0].Info.Rate+camps[1].Info.Rate != 30 || camps[0].Info.Count+camps[1].Info.Count != 300 {
		t.Fatalf("campaigns: %+v, want the rate and count split over both nodes", camps)
	}
	for _, n := range cl.Nodes() {
		gs, err := n.Admin.Generators()
		if err != nil || len(gs) != 1 || gs[0].From != n.From || gs[0].To != n.To || gs[0].Rate != 10 {
			t.Fatalf("%s (users %d-%d): generators %+v, %v; want one of rate 10 to its own users", n.Name, n.From, n.To, gs, err)
		}
	}
	if q, err := cl.Clients()[0].Admin.QPS(); err != nil || q != 200 {
		t.Fatalf("the client's rate after the Rate phase: %d, %v", q, err)
	}
	snap := e.Last("end").Snapshot
	if len(snap.Procs) != 3 || snap.Procs["c0"].CPU <= 0 || snap.Procs["n1"].RSS <= 0 || len(snap.Stats) != 2 || snap.Stats[0].Totals.Shakes == 0 {
		t.Fatalf("snapshot %+v", snap)
	}
	for _, name := range []string{"nodes", "clients", "connect", "hold", "packets", "rate 200", "end"} {
		k := evs.kinds[name]
		if len(k) < 2 || k[0] != Began || k[len(k)-1] != Ended {
			t.Fatalf("events of %s: %v, want Began ... Ended", name, k)
		}
	}
	if k := evs.kinds["hold"]; len(k) < 4 || k[1] != Polled {
		t.Fatalf("hold polled %v, want one poll every 100 ms of 300", k)
	}

	fin := e.Settle(Settle{Audit: true})
	if q, err := cl.Clients()[0].Admin.QPS(); err != nil || q != 0 {
		t.Fatalf("the client's rate after Settle: %d, %v", q, err)
	}
	if fin.Read != 2 || fin.StatsErr != nil || len(fin.Campaigns) != 2 || len(fin.Audits) != 2 || len(fin.AuditErrs) != 0 {
		t.Fatalf("final %+v", fin)
	}
	for k, a := range fin.Audits {
		if !a.OK || fin.AuditNames[k] != fmt.Sprintf("n%d", k) {
			t.Fatalf("audit of %s: %+v", fin.AuditNames[k], a)
		}
	}
	for _, c := range fin.Campaigns {
		if c.State == "" || c.Issued == 0 {
			t.Fatalf("stopped campaign %+v", c)
		}
	}
	pids := readPids(t, cl.Pids)
	s := cl.Stop(5*time.Second, 5*time.Second)
	stopped = true
	if len(s.Clients) != 1 || s.Clients[0].Summary == nil || s.Clients[0].Summary.Sent == 0 || s.NodeErr != nil || s.Killed != 0 {
		t.Fatalf("stopped %+v (summary %+v)", s, s.Clients[0].Summary)
	}
	if len(pids) != 3 {
		t.Fatalf("pids %v, want the 3 children", pids)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("child %d still exists: %v", pid, err)
		}
	}
}

func readPids(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			pid, _ := strconv.Atoi(f[0])
			pids = append(pids, pid)
		}
	}
	return pids
}

// A node that dies ends the phase in progress with its name, pid and
// why; so does the next Run.
func TestNodeDeathEndsTheScenario(t *testing.T) {
	cl := NewCluster(bin, harness.NewSecret())
	e := New(cl, 10)
	t.Cleanup(func() { cl.Stop(time.Second, time.Second) })
	if err := e.Run(context.Background(), Nodes{Specs: nodeSpecs(t, t.TempDir(), 10, 1)}); err != nil {
		t.Fatal(err)
	}
	n := cl.Nodes()[0]
	done := make(chan error, 1)
	go func() { done <- e.Run(context.Background(), Hold{For: time.Minute, Poll: 100 * time.Millisecond}) }()
	if err := syscall.Kill(n.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the hold went on after its node died")
	}
	want := fmt.Sprintf("node n0 (pid %d) exited: ", n.Pid())
	if !errors.Is(err, harness.ErrChildDied) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("err %v, want %q", err, want)
	}
	if err := e.Run(context.Background(), Hold{For: time.Minute}); !errors.Is(err, harness.ErrChildDied) {
		t.Fatalf("the next run: %v", err)
	}
	if s := cl.Stop(time.Second, time.Second); s.NodeErr == nil {
		t.Fatal("stopping a killed node: no error")
	}
}

// A client with a Duration ends by itself: that is no death. UntilExit
// waits for it, Collect takes its summary, and the next Connect of a
// client that exits at once fails (or, soft, ends the scenario quietly).
func TestClientsThatEndByThemselves(t *testing.T) {
	const users = 50
	dir := t.TempDir()
	cl := NewCluster(bin, harness.NewSecret())
	e := New(cl, users)
	t.Cleanup(func() { cl.Stop(time.Second, time.Second) })
	finite := func(name string, extra ...string) Clients {
		return Clients{Specs: []ClientSpec{{Dir: dir, LoadSpec: harness.LoadSpec{Users: users, QPS: 100, Duration: time.Second, Name: name, Extra: extra}}}}
	}
	start := time.Now()
	err := e.Run(context.Background(),
		Nodes{Specs: nodeSpecs(t, dir, users, 1)},
		finite("c1"),
		Connect{Poll: 50 * time.Millisecond, Timeout: time.Minute},
		UntilExit{Poll: 100 * time.Millisecond},
		Collect{},
	)
	if err != nil {
		t.Fatal(err)
	}
	sums := e.Last("collect").Summaries
	if len(sums) != 1 || sums[0].Sent == 0 || sums[0].Connected != users || len(cl.Clients()) != 0 {
		t.Fatalf("summaries %+v, running clients %d", sums, len(cl.Clients()))
	}
	t.Logf("connect, a second of load and the summary took %v", time.Since(start))

	// --from beyond --to: the client refuses to start and exits at once.
	bad := finite("c2", "--from", "9", "--to", "1")
	err = e.Run(context.Background(), bad, Connect{Poll: 50 * time.Millisecond, Timeout: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "c2 exited while connecting") {
		t.Fatalf("connecting a client that exited: %v", err)
	}
	cl.StopClients(time.Second)
	start = time.Now()
	err = e.Run(context.Background(), bad, Connect{Poll: 50 * time.Millisecond, Timeout: time.Minute, Soft: true}, Hold{For: time.Minute})
	if err != nil || time.Since(start) > 30*time.Second || e.Last("hold") != nil {
		t.Fatalf("soft connect of a client that exited: %v after %v; the hold after it ran: %v", err, time.Since(start), e.Last("hold") != nil)
	}
}

// Connect gives up after its timeout: with an error, or (soft) by going
// on to the next phase.
func TestConnectTimeout(t *testing.T) {
	cl := NewCluster(bin, harness.NewSecret())
	e := New(cl, 10)
	t.Cleanup(func() { cl.Stop(time.Second, time.Second) })
	if err := e.Run(context.Background(), Nodes{Specs: nodeSpecs(t, t.TempDir(), 10, 1)}); err != nil {
		t.Fatal(err)
	}
	err := e.Run(context.Background(), Connect{Name: "ramp", Poll: 50 * time.Millisecond, Timeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "ramp: only 0 of 10 users online after 200ms") {
		t.Fatalf("connect without clients: %v", err)
	}
	err = e.Run(context.Background(), Connect{Poll: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, Soft: true}, Mark{})
	if err != nil || e.Last("mark") == nil || e.Last("connect").Connected != 0 {
		t.Fatalf("soft connect: %v, mark %v", err, e.Last("mark"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Run(ctx, Hold{For: time.Minute}); !errors.Is(err, context.Canceled) {
		t.Fatalf("an interrupted hold: %v", err)
	}
}

// A node that does not answer its stats stands in with its last answer
// for the grace, then is named.
func TestPollerGrace(t *testing.T) {
	now := time.Unix(1000, 0)
	p := poller{grace: 30 * time.Second, now: func() time.Time { return now }}
	fail := false
	get := func(k int) (server.Stats, error) {
		if k == 1 && fail {
			return server.Stats{}, errors.New("timeout")
		}
		return server.Stats{LoggedIn: int64(10 * (k + 1))}, nil
	}
	if st, err := p.read(2, get); err != nil || st[1].LoggedIn != 20 {
		t.Fatalf("%+v, %v", st, err)
	}
	fail = true
	for _, d := range []time.Duration{0, 29 * time.Second} {
		now = now.Add(d)
		if st, err := p.read(2, get); err != nil || st[1].LoggedIn != 20 {
			t.Fatalf("after %v of silence: %+v, %v; want the last answer and no error", d, st, err)
		}
	}
	now = now.Add(time.Second)
	st, err := p.read(2, get)
	if err == nil || !strings.Contains(err.Error(), "(node-1)") || !strings.Contains(err.Error(), "timeout") || st[1].LoggedIn != 20 || st[0].LoggedIn != 10 {
		t.Fatalf("after the grace: %+v, %v", st, err)
	}
	fail = false
	if _, err := p.read(2, get); err != nil {
		t.Fatalf("answering again: %v", err)
	}
}
