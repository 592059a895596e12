package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hongbao/internal/bench"
	"hongbao/internal/harness"
)

// bin is the hongbao binary built once for these tests: the commands are
// tested as a user runs them, as processes.
var bin string

func TestMain(m *testing.M) {
	if os.Getenv(holdEnv) != "" {
		os.Exit(holdMain()) // a holder process of TestAcceptSurvivesTheOpenFileLimit
	}
	dir, err := os.MkdirTemp("", "hongbao-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "hongbao")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		panic("building hongbao: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runEnvWithin(t, 2*time.Minute, env, args...)
}

// runEnvWithin runs the binary with env added to the environment, killed
// after d (then it reports exit -1).
func runEnvWithin(t *testing.T, d time.Duration, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestBadFlagsExit2WithReason(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{}, nil, "Usage"},
		{[]string{"nosuch"}, nil, `unknown command "nosuch"`},
		{[]string{"server", "--bogus"}, nil, "flag provided but not defined: -bogus"},
		{[]string{"server", "--budget", "x"}, nil, "invalid value"},
		{[]string{"server", "--sets", "0", "--secret", "s"}, nil, "--sets and --budget must be at least 1"},
		{[]string{"server"}, nil, "token secret is required"},
		{[]string{"server", "--secret", "s"}, []string{"HONGBAO_BUDGET=lots"}, "HONGBAO_BUDGET"},
		{[]string{"load", "--qps", "-5", "--secret", "s"}, nil, "qps"},
		{[]string{"load"}, nil, "token secret is required"},
		{[]string{"load", "--secret", "s", "--sources", "nope"}, nil, "--sources"},
		{[]string{"demo", "--users", "0"}, nil, "--users must be at least 1"},
		{[]string{"demo", "extra"}, nil, `unexpected argument "extra"`},
		{[]string{"bench", "--duration", "1s"}, nil, "--duration must exceed --warmup"},
		{[]string{"bench", "--steps", "1,x"}, nil, `"x" is not a positive rate`},
		{[]string{"token", "--user", "5"}, nil, "the secret is required"},
		{[]string{"token", "--user", "5", "--ttl", "876000h"}, []string{"HONGBAO_SECRET=s"}, "above the maximum token lifetime"},
		{[]string{"token", "--user", "5", "--ttl", "2h", "--max-token-ttl", "1h"}, []string{"HONGBAO_SECRET=s"}, "above the maximum token lifetime"},
		{[]string{"token", "--user", "5", "--secret-file", "/nonexistent/secret"}, nil, "--secret-file"},
		{[]string{"token", "--user", "5", "--secret", "s", "--secret-file", "f"}, nil, "give the secret once"},
		{[]string{"server", "--admin", "0.0.0.0:0", "--admin-auth=false", "--ledger=false"}, []string{"HONGBAO_SECRET=s"}, "only when the admin listener binds a loopback address"},
		{[]string{"server", "--admin", ":0", "--admin-auth=false", "--ledger=false"}, []string{"HONGBAO_SECRET=s"}, "only when the admin listener binds a loopback address"},
		{[]string{"load", "--admin", "0.0.0.0:0", "--admin-auth=false"}, []string{"HONGBAO_SECRET=s"}, "only when the admin listener binds a loopback address"},
		{[]string{"server", "--max-token-ttl", "0"}, []string{"HONGBAO_SECRET=s"}, "--max-token-ttl must be positive"},
		{[]string{"server", "--admin-token-file", "/nonexistent/token", "--ledger=false"}, []string{"HONGBAO_SECRET=s"}, "admin token"},
		{[]string{"server", "--ledger=false"}, []string{"HONGBAO_SECRET=s", "HONGBAO_ADMIN_TOKEN=short"}, "HONGBAO_ADMIN_TOKEN: admin token shorter than 16"},
		{[]string{"token", "--secret", "s"}, nil, "--user must be in"},
		{[]string{"audit"}, nil, "give exactly one of --data-dir and --admin"},
		{[]string{"audit", "--data-dir", "x", "--admin", "y"}, nil, "give exactly one of --data-dir and --admin"},
		{[]string{"bench-ledger", "--concurrency", "0"}, nil, "must be positive"},
		{[]string{"server", "--secret", "s", "--data-dir", ""}, nil, "--data-dir must not be empty"},
		{[]string{"server", "--secret", "s", "--max-recipients", "5000"}, nil, "--max-recipients must be in"},
		{[]string{"plot"}, nil, "FILE is required"},
		{[]string{"plot", "f.ndjson", "--bogus"}, nil, "flag provided but not defined"},
		{[]string{"monitor", "--keep", "0"}, nil, "--keep must be positive"},
		{[]string{"server", "--secret", "s", "--monitor"}, nil, "flag needs an argument"},
		{[]string{"server", "--secret", "s", "--login-timeout", "-1s"}, nil, "--login-timeout must be 0 (off) or between 1s and"},
		{[]string{"server", "--secret", "s", "--frame-timeout", "500ms"}, nil, "--frame-timeout must be 0 (off) or between 1s and"},
		{[]string{"server", "--secret", "s"}, []string{"HONGBAO_IDLE_TIMEOUT=48h"}, "--idle-timeout must be 0 (off) or between 1s and"},
		{[]string{"server", "--secret", "s", "--idle-timeout", "soon"}, nil, "invalid value"},
		{[]string{"load", "--secret", "s", "--ping-idle", "10ms"}, nil, "--ping-idle must be 0 (never) or between 1s and 1h"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			_, stderr, code := run(t, c.env, c.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q does not say %q", stderr, c.want)
			}
		})
	}
}

func TestHelpListsGroupsAndExample(t *testing.T) {
	for _, sub := range []string{"server", "load", "demo", "bench", "token", "monitor", "plot", "audit", "bench-ledger"} {
		out, _, code := run(t, nil, sub, "--help")
		if code != 0 || !strings.Contains(out, "Example:") || !strings.Contains(out, "HONGBAO_") {
			t.Errorf("%s --help: exit %d, output:\n%s", sub, code, out)
		}
	}
}

func TestDemoRefusesUsersBeyondOpenFiles(t *testing.T) {
	_, stderr, code := run(t, nil, "demo", "--users", "50000")
	if code == 0 || !strings.Contains(stderr, "open files") || !strings.Contains(stderr, "ulimit -n") {
		t.Fatalf("exit %d, stderr %q: want a refusal naming the open-file limit and the fix", code, stderr)
	}
}

func TestDemoClientAndServerAgree(t *testing.T) {
	dir := t.TempDir()
	out, stderr, code := run(t, nil, "demo", "--users", "600", "--qps", "600", "--duration", "3s",
		"--packet-rate", "300", "--packets", "600", "--dir", dir)
	if code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, want := range []string{"campaign 1: 600 packets", "client and server agree", "packets got",
		"dashboard: http://127.0.0.1:", "series: ", "report: "} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The demo recorded its series; 'hongbao plot' renders it again.
	plots := filepath.Join(t.TempDir(), "plots")
	pout, perr, code := run(t, nil, "plot", filepath.Join(dir, "series.ndjson"), "--out", plots)
	if code != 0 {
		t.Fatalf("plot exit %d: %s", code, perr)
	}
	rep, err := os.ReadFile(filepath.Join(plots, "report.html"))
	if err != nil || !strings.Contains(pout, filepath.Join(plots, "report.html")) {
		t.Fatalf("plot did not write report.html (%v); output:\n%s", err, pout)
	}
	for _, c := range []string{"rate", "packets", "connections", "latency"} {
		if !strings.Contains(string(rep), `"id":"`+c+`"`) {
			t.Errorf("report.html lacks the %s chart", c)
		}
	}
}

func TestBenchPrintsJSON(t *testing.T) {
	out, stderr, code := run(t, nil, "bench", "--conns", "300", "--qps", "600", "--duration", "4s", "--warmup", "1s", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("bench exit %d\nstderr:\n%s", code, stderr)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench output is not its JSON report: %v\n%s", err, out)
	}
	r := rep.Run
	if r.ConnectionsHeld != 300 || r.AchievedQPS < 500 || r.ServerCPUusPerReq <= 0 || r.ServerRSSPerConn <= 0 ||
		r.ClientRSSPerConn <= 0 || r.LatencyUS.P99 <= 0 || r.Answered == 0 {
		t.Fatalf("implausible bench result: %+v", r)
	}
}

func TestBenchMonitorCostPrintsRatio(t *testing.T) {
	out, stderr, code := run(t, nil, "bench", "--monitor-cost", "1", "--conns", "300", "--qps", "600", "--step-time", "2s", "--warmup", "1s", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("bench exit %d\nstderr:\n%s", code, stderr)
	}
	var rep bench.CostReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not a cost report: %v\n%s", err, out)
	}
	if len(rep.Windows) != 2 || rep.Ratio <= 0 || !rep.Windows[1].Monitored || rep.Samples == 0 || rep.Windows[1].Scrapes == 0 ||
		rep.Windows[0].AchievedQPS < 500 {
		t.Fatalf("implausible cost report: %+v", rep)
	}
}

func TestServerSIGTERMExitsZero(t *testing.T) {
	addr, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := harness.StartEnv("server", bin, []string{"server", "--listen", addr, "--admin", admin, "--data-dir", t.TempDir()}, []string{"HONGBAO_SECRET=s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.NewAdmin(admin).WaitHealthy(p, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("server after SIGTERM: %v", err)
	}
}
