package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The box of box.md: 20,000 open files per process, 24 GiB.
var box = System{Files: 20000, MemAvail: 23 << 30, MemTotal: 24 << 30, FileMax: 1 << 40, NrOpen: 1 << 20,
	Somaxconn: 4096, PortLo: 32768, PortHi: 60999, CPUs: 2}

func TestPlanMillionOnThisBox(t *testing.T) {
	p, err := MakePlan(1_000_000, 0, 0, box.Files)
	if err != nil {
		t.Fatal(err)
	}
	if p.Nodes != 52 || p.Clients != 52 || p.PerProcess != 19500 {
		t.Fatalf("plan %+v", p)
	}
	// Clients cover the nodes' ranges exactly: one destination each.
	for i, rg := range p.ClientRanges {
		f, to := p.Map.Range(i)
		if rg != [2]uint32{f, to} || to-f+1 > uint32(p.PerProcess) {
			t.Fatalf("client %d: %v, node %d..%d", i, rg, f, to)
		}
	}
	if _, err := Check(p, box); err != nil {
		t.Fatal(err)
	}
	if got := MaxUsersFor(box.Files, box.MemAvail); got != MaxUsers {
		t.Fatalf("default users on this box: %d", got)
	}
	// With a raised limit, one server process.
	if p, err := MakePlan(1_000_000, 0, 0, 1_100_000); err != nil || p.Nodes != 1 {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestPlanRefusesTooFewProcesses(t *testing.T) {
	_, err := MakePlan(100_000, 2, 0, box.Files)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "need at least 6 server processes") {
		t.Fatalf("%v", err)
	}
	if _, err := MakePlan(10, 0, 0, 300); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "ulimit -n") {
		t.Fatalf("%v", err)
	}
}

func TestCheckRefusesWhatCannotWork(t *testing.T) {
	p, err := MakePlan(3_000_000, 0, 0, box.Files)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Check(p, box)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "GiB of memory") || !strings.Contains(err.Error(), "--users") {
		t.Fatalf("%v", err)
	}
	small := box
	small.FileMax, small.PortLo, small.PortHi = 1000, 60000, 60100
	p, _ = MakePlan(20000, 0, 0, box.Files)
	_, err = Check(p, small)
	for _, want := range []string{"fs.file-max", "ip_local_port_range"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("want %q in %v", want, err)
		}
	}
	low := box
	low.Somaxconn = 128
	adv, err := Check(p, low)
	if err != nil || len(adv) == 0 || !strings.Contains(strings.Join(adv, "\n"), "sysctl -w net.core.somaxconn=65535") {
		t.Fatalf("%v %v", adv, err)
	}
}

// A refused run starts nothing and writes nothing.
func TestRunRefusedStartsNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "report")
	sys := box
	sys.MemAvail = 1 << 30
	_, err := Run(context.Background(), Options{Bin: "/nonexistent", Dir: dir, Users: 1_000_000, System: &sys})
	if !errors.Is(err, ErrRefused) {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("report directory created: %v", err)
	}
}

func TestSnmpField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snmp")
	body := "Ip: Forwarding InReceives\nIp: 1 42\nTcp: RtoAlgorithm ActiveOpens RetransSegs\nTcp: 1 7 635589\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prefix, name string
		want         uint64
	}{
		{"Tcp:", "RetransSegs", 635589},
		{"Ip:", "InReceives", 42},
		{"Tcp:", "Missing", 0},
		{"Udp:", "RetransSegs", 0},
	} {
		if got := snmpField(path, tc.prefix, tc.name); got != tc.want {
			t.Errorf("snmpField(%s %s) = %d, want %d", tc.prefix, tc.name, got, tc.want)
		}
	}
	k := ReadKernelNet() // the real counters: readable here, and never going back
	if later := ReadKernelNet().Sub(k); later.BacklogDrops > 1<<40 || later.Retransmits > 1<<40 {
		t.Errorf("counters went backwards: %+v", later)
	}
}

func TestBacklogAdvice(t *testing.T) {
	sys := box
	sys.Backlog = 1000
	p, err := MakePlan(200_000, 0, 0, sys.Files)
	if err != nil {
		t.Fatal(err)
	}
	adv, err := Check(p, sys)
	if err != nil || !strings.Contains(strings.Join(adv, "\n"), "sysctl -w net.core.netdev_max_backlog=65536") {
		t.Fatalf("advice %q, err %v: want the netdev_max_backlog command", adv, err)
	}
}

// TestChildGoMaxProcs: one P per child when the processes outnumber the
// cores, Go's default otherwise, and never over the user's own GOMAXPROCS.
func TestChildGoMaxProcs(t *testing.T) {
	million, err := MakePlan(1_000_000, 0, 0, box.Files)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := MakePlan(10_000, 0, 0, box.Files)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		plan Plan
		cpus int
		env  string
		want int
	}{
		{"104 processes on 2 cores", million, 2, "", 1},
		{"104 processes on 128 cores", million, 128, "", 0},
		{"a node and a client on 2 cores", pair, 2, "", 0},
		{"the user's GOMAXPROCS stands", million, 2, "2", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ChildGoMaxProcs(tc.plan, tc.cpus, tc.env)
			if got != tc.want {
				t.Fatalf("ChildGoMaxProcs = %d, want %d", got, tc.want)
			}
			tc.plan.GoMaxProcs = got
			env := tc.plan.childEnv()
			if (got == 0) != (len(env) == 0) || (got == 1 && env[0] != "GOMAXPROCS=1") {
				t.Fatalf("child environment %q for GOMAXPROCS %d", env, got)
			}
		})
	}
}
