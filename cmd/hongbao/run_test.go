package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hongbao/internal/runner"
)

func readSummary(t *testing.T, dir string) runner.Summary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s runner.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// The pre-flight refuses more users than the limits allow, says what to
// change, and starts nothing (no report directory, no child).
func TestRunRefusesImpossibleRequest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "report")
	_, stderr, code := run(t, nil, "run", "--users", "5000000", "--nodes", "1", "--dir", dir)
	if code != 1 || !strings.Contains(stderr, "run refused") || !strings.Contains(stderr, "5000000 users need at least") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("report directory exists: %v", err)
	}
	_, stderr, code = run(t, nil, "run", "--users", "5000000", "--dir", dir)
	if code != 1 || !strings.Contains(stderr, "GiB of memory") || !strings.Contains(stderr, "ask for --users") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if _, stderr, code := run(t, nil, "run", "--phase2", "0s"); code != 2 || !strings.Contains(stderr, "--phase2") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

// A small multi-node run on loopback with ONE client process covering the
// users of three nodes: every user goes to the node that owns it (a node
// refuses the others, which would count as errors), shakes and group opens
// reach every node, the monitor's sums equal the nodes' own counters, and
// the audit over all nodes passes, live and offline.
func TestRunMultiNodeSumsAndAudit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "report")
	stdout, stderr, code := run(t, nil, "run", "--users", "3000", "--nodes", "3", "--clients", "1", "--hold", "1s",
		"--phase2", "3s", "--phase3", "3s", "--qps2", "1000", "--qps3", "2000", "--campaign-rate", "30", "--group-rate", "30", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	s := readSummary(t, dir)
	if s.Plan.Nodes != 3 || s.Plan.Clients != 1 || len(s.Nodes) != 3 {
		t.Fatalf("plan %+v, nodes %+v", s.Plan, s.Nodes)
	}
	var shakes, opens uint64
	for _, n := range s.Nodes {
		size := uint64(n.To - n.From + 1)
		if n.Logins != size || n.LoggedIn != int64(size) || n.Errors != 0 || n.Shakes == 0 || n.GroupOpens == 0 {
			t.Fatalf("node %+v: want %d logins, no errors, shakes and opens", n, size)
		}
		shakes, opens = shakes+n.Shakes, opens+n.GroupOpens
	}
	if !s.Sums.Equal || s.Sums.MonitorShakes != shakes || s.Sums.MonitorLogins != 3000 {
		t.Fatalf("monitor sums %+v, nodes' shakes %d", s.Sums, shakes)
	}
	if !s.Audit.OK || s.Audit.Report == nil || s.Audit.Report.Packets == 0 {
		t.Fatalf("audit %+v", s.Audit)
	}
	p := s.Packets
	if p.GroupOpened != opens || p.ShakeReceived != p.ShakeGranted || p.ShakeReceivedCts != p.ShakeGrantedCents || p.ShakeGranted == 0 {
		t.Fatalf("packets %+v, nodes' opens %d", p, opens)
	}
	var dirs []string
	for k := 0; k < 3; k++ {
		dirs = append(dirs, filepath.Join(dir, "nodes", "node-"+strconv.Itoa(k), "ledger"))
	}
	out, stderr, code := run(t, nil, "audit", "--data-dir", strings.Join(dirs, ","))
	if code != 0 || !strings.Contains(out, "ok: no violations") {
		t.Fatalf("offline audit over all nodes: exit %d\n%s\n%s", code, out, stderr)
	}
}

// The scaled-down run of CI: 20,000 users over 4 nodes and 4 client
// processes, short phases; the report has every field the full run has.
func TestRunScaledDownReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "report")
	const users = 20000
	stdout, stderr, code := run(t, nil, "run", "--users", strconv.Itoa(users), "--nodes", "4", "--hold", "1s",
		"--phase2", "5s", "--phase3", "5s", "--qps2", "3000", "--qps3", "6000", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	s := readSummary(t, dir)
	t.Logf("\n%s", stdout[strings.Index(stdout, "hongbao run:"):])
	if s.Interrupted || s.Error != "" || s.Plan.Nodes != 4 || s.Plan.Clients != 4 {
		t.Fatalf("summary %+v", s)
	}
	if s.Connect.Established != users || s.Connect.Seconds <= 0 || s.Connect.MinHeld != users || !s.Connect.HeldToEnd {
		t.Fatalf("connect %+v", s.Connect)
	}
	if len(s.Phases) != 2 {
		t.Fatalf("phases %+v", s.Phases)
	}
	for _, ph := range s.Phases {
		q := float64(ph.TargetQPS)
		if ph.Seconds < 2 || ph.AchievedQPS < 0.97*q || ph.AchievedQPS > 1.03*q || ph.P50ms <= 0 || ph.P99ms < ph.P50ms ||
			ph.P999ms < ph.P99ms || ph.Errors != 0 || ph.ServerErrs != 0 {
			t.Fatalf("phase %+v", ph)
		}
	}
	if !s.Audit.OK || !s.Sums.Equal || s.Packets.ShakeIssued == 0 || s.Packets.GroupSent == 0 ||
		s.Packets.ShakeReceived != s.Packets.ShakeGranted || s.Packets.GroupOpened != s.Packets.GroupOpens {
		t.Fatalf("audit %+v sums %+v packets %+v", s.Audit, s.Sums, s.Packets)
	}
	if len(s.Processes) != 9 || s.Total.CPUSeconds <= 0 || s.Total.PeakRSS <= 0 || s.MachineMemUsed == 0 || len(s.Targets) < 10 {
		t.Fatalf("processes %+v total %+v targets %d", s.Processes, s.Total, len(s.Targets))
	}
	for _, f := range []string{"series.ndjson", "report.html", "summary.md"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if rep, _ := os.ReadFile(filepath.Join(dir, "report.html")); !strings.Contains(string(rep), `"id":"rate"`) || !strings.Contains(string(rep), `"id":"latency"`) {
		t.Fatal("report.html lacks the rate and latency charts")
	}
}

// SIGINT during a run: every child exits, nothing is left running, the
// partial report is written.
func TestRunSIGINTStopsEveryChild(t *testing.T) {
	r := startRunToPhase2(t, 4000)
	pids := readPids(t, r.dir)
	if len(pids) != 4 {
		t.Fatalf("want 4 children, pids.txt has %v\n%s", pids, strings.Join(r.lines, "\n"))
	}
	start := time.Now()
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "SIGINT")
	t.Logf("stopped in %v", time.Since(start))
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("child %d still exists after the run: %v", pid, err)
		}
	}
	s := readSummary(t, r.dir)
	if !s.Interrupted || len(s.Phases) != 1 || s.Connect.Established != 4000 {
		t.Fatalf("partial summary %+v", s)
	}
	if !strings.Contains(r.stderr.String(), "interrupted") {
		t.Fatalf("stderr: %s", r.stderr.String())
	}
}

// A run whose stdout is closed (`hongbao run | head`) is not killed by
// SIGPIPE: it stops as on SIGINT, every child exits and the partial report
// is written (and --tune's sysctls would be put back).
func TestRunStopsCleanlyWhenStdoutCloses(t *testing.T) {
	r := startRunToPhase2(t, 2000)
	pids := readPids(t, r.dir)
	if err := r.out.Close(); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "closing its stdout")
	if ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signaled() {
		t.Fatalf("run ended by a signal: %v\n%s", r.cmd.ProcessState, r.stderr.String())
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("child %d still exists after the run: %v", pid, err)
		}
	}
	if s := readSummary(t, r.dir); !s.Interrupted || s.Connect.Established != 2000 {
		t.Fatalf("partial summary %+v", s)
	}
	if !strings.Contains(r.stderr.String(), "interrupted") {
		t.Fatalf("stderr: %s", r.stderr.String())
	}
}

// runProc is a `hongbao run` of two nodes started by a test and followed
// until its phase 2 began.
type runProc struct {
	cmd    *exec.Cmd
	out    io.ReadCloser // the run's stdout
	dir    string
	lines  []string // stdout up to "phase 2"
	stderr *strings.Builder
	done   chan error
}

func startRunToPhase2(t *testing.T, users int) *runProc {
	t.Helper()
	r := &runProc{dir: filepath.Join(t.TempDir(), "report"), stderr: &strings.Builder{}, done: make(chan error, 1)}
	r.cmd = exec.Command(bin, "run", "--users", strconv.Itoa(users), "--nodes", "2", "--hold", "1s", "--phase2", "2m",
		"--qps2", "500", "--qps3", "1000", "--dir", r.dir)
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.out = out
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Kill() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		r.lines = append(r.lines, sc.Text())
		if strings.HasPrefix(sc.Text(), "phase 2 ") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
		r.done <- r.cmd.Wait()
	}()
	return r
}

// wait waits for the run to end after what, failing after a minute.
func (r *runProc) wait(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("run still going 60 s after %s", what)
	}
	return nil
}

func readPids(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pids.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			pid, _ := strconv.Atoi(f[0])
			pids = append(pids, pid)
		}
	}
	return pids
}

// A child that dies stops the run with its name and why; the others are
// stopped and the partial report is written.
func TestRunChildDeathStopsTheRun(t *testing.T) {
	r := startRunToPhase2(t, 2000)
	dir, stderr := r.dir, r.stderr
	pids := readPids(t, dir)
	b, _ := os.ReadFile(filepath.Join(dir, "pids.txt"))
	if !strings.Contains(string(b), strconv.Itoa(pids[0])+" node-") {
		t.Fatalf("pids.txt: %s", b)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := r.wait(t, "a node died")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v", err)
	}
	want := "node node-" + strings.Fields(string(b))[1][len("node-"):] + " (pid " + strconv.Itoa(pids[0]) + ") exited: "
	if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "signal: killed") {
		t.Fatalf("stderr lacks %q:\n%s", want, stderr.String())
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("child %d still exists: %v", pid, err)
		}
	}
	if s := readSummary(t, dir); !strings.Contains(s.Error, "exited") {
		t.Fatalf("summary error %q", s.Error)
	}
}
