package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"hongbao/internal/bench"
)

// The floor comparison at a small size, as CI runs it: the repository's
// copy of floor.c built with cc, two rounds of the floor and a classic
// hongbao server under the same classic load client, at a rate that
// gives the floor a few of the kernel's 10 ms CPU ticks in its 2 s window
// (at 1,000/s it may spend less than one). A smoke test: both
// figures and their ratio are there and plausible; no timing is asserted.
func TestBenchFloorPrintsRatio(t *testing.T) {
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler (cc) on the PATH to build bench/floor.c: install gcc to run this test")
	}
	out, stderr, code := run(t, nil, "bench", "--floor", "../../bench/floor.c", "--rounds", "2",
		"--conns", "500", "--qps", "5000", "--duration", "4s", "--warmup", "1s", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("bench --floor exit %d\nstderr:\n%s", code, stderr)
	}
	var rep bench.FloorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench --floor output is not its JSON report: %v\n%s", err, out)
	}
	if len(rep.Rounds) != 4 {
		t.Fatalf("%d rounds, want 4 (2 of each server): %+v", len(rep.Rounds), rep.Rounds)
	}
	seen := map[string]int{}
	for _, r := range rep.Rounds {
		seen[r.Server]++
		if r.Answered == 0 || r.AchievedQPS <= 0 || r.CPUusPerReq <= 0 || r.Errors != 0 {
			t.Errorf("implausible round: %+v", r)
		}
	}
	if seen["floor"] != 2 || seen["hongbao"] != 2 {
		t.Errorf("rounds by server %v, want 2 each", seen)
	}
	if rep.FloorUS <= 0 || rep.HongbaoUS <= 0 || rep.Ratio <= 0 || rep.PairedRatio <= 0 {
		t.Errorf("missing figures: floor %v us, hongbao %v us, ratio %v, paired %v", rep.FloorUS, rep.HongbaoUS, rep.Ratio, rep.PairedRatio)
	}
}

func TestBenchFloorBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "--floor", "x.c", "--rounds", "0"}, 2, "--rounds must be at least 1"},
		{[]string{"bench", "--floor", "x.c", "--find-max"}, 2, "--floor does not go with"},
		{[]string{"bench", "--floor", dir + "/nosuch", "--dir", dir}, 1, "no such file"},
	}
	if _, err := exec.LookPath("cc"); err == nil {
		// A window with nearly no work: no figure rather than a ratio of 0.
		cases = append(cases, struct {
			args []string
			code int
			want string
		}{[]string{"bench", "--floor", "../../bench/floor.c", "--conns", "10", "--qps", "1", "--duration", "2500ms",
			"--warmup", "1ms", "--rounds", "1", "--dir", dir}, 1, "too little work in the window"})
	}
	for _, c := range cases {
		if _, stderr, code := run(t, nil, c.args...); code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, stderr, c.want)
		}
	}
}
