package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"hongbao/internal/harness"
	"hongbao/internal/limits"
	"hongbao/internal/procstat"
)

// ErrNoCompiler is returned when the floor is given as C source and no C
// compiler (cc) is on the PATH.
var ErrNoCompiler = errors.New("bench: no C compiler (cc) to build the floor")

// ErrWindowTooSmall is returned when a window of the floor comparison
// holds too little work to measure.
var ErrWindowTooSmall = errors.New("bench: too little work in the window to measure")

// FloorRound is one measured window of one server in the floor comparison.
type FloorRound struct {
	Round       int     `json:"round"`
	Server      string  `json:"server"` // "floor" or "hongbao"
	Seconds     float64 `json:"seconds"`
	Answered    uint64  `json:"answered"` // answers the client counted in the window
	AchievedQPS float64 `json:"achieved_qps"`
	CPUusPerReq float64 `json:"server_cpu_us_per_req"`
	Cores       float64 `json:"server_cores"`
	P99us       float64 `json:"p99_us"` // the client's p99 over its whole run
	Timeouts    uint64  `json:"timeouts"`
	Errors      uint64  `json:"errors"`
}

// FloorReport compares `hongbao server` with the floor (a minimal C epoll
// server answering classic frames) under the same classic load client.
type FloorReport struct {
	Conns  int          `json:"conns"`
	QPS    int          `json:"qps"`
	Floor  string       `json:"floor"` // the binary measured
	Rounds []FloorRound `json:"rounds"`
	// The medians over rounds of each server's CPU per request, and their
	// ratio hongbao/floor (1.0: no more than the kernel's own floor).
	FloorUS   float64 `json:"floor_cpu_us_per_req"`
	HongbaoUS float64 `json:"hongbao_cpu_us_per_req"`
	Ratio     float64 `json:"ratio"`
	// PairedRatio is the median over rounds of hongbao/floor in the round.
	PairedRatio float64 `json:"paired_ratio"`
}

// BuildFloor returns a runnable floor: path itself if it is not C source,
// else path compiled with `cc -O2` into dir.
func BuildFloor(ctx context.Context, path, dir string) (string, error) {
	if !strings.HasSuffix(path, ".c") {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("bench: the floor: %w", err)
		}
		return filepath.Abs(path)
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoCompiler, err)
	}
	out := filepath.Join(dir, "floor")
	if b, err := exec.CommandContext(ctx, cc, "-O2", "-o", out, path).CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: cc -O2 %s: %w\n%s", path, err, b)
	}
	return out, nil
}

// Floor runs the floor (binary floor) and `hongbao server` in turn, each
// under a fresh `hongbao load --classic` of o.Conns users at o.QPS for
// o.Duration, alternating (floor, hongbao, floor, hongbao, ...), so that a
// drift of the shared box weighs on both alike. A server's CPU is read from /proc (the
// floor has no admin API) over the window from o.Warmup after every user
// is online to a second before the client ends; requests are the answers
// the client counted in that window, for both servers alike. Neither
// server issues packets: both answer every shake "none".
func Floor(ctx context.Context, o Options, floor string, rounds int) (*FloorReport, error) {
	o.defaults()
	if rounds < 1 {
		return nil, fmt.Errorf("bench: rounds %d must be at least 1", rounds)
	}
	if o.Warmup+time.Second >= o.Duration {
		return nil, fmt.Errorf("bench: duration %v must exceed warmup %v by more than a second", o.Duration, o.Warmup)
	}
	if err := limits.NeedFiles(o.Conns, "each of server and client"); err != nil {
		return nil, err
	}
	rep := &FloorReport{Conns: o.Conns, QPS: o.QPS, Floor: floor}
	var per [2][]float64 // floor, hongbao
	fmt.Fprintf(o.Log, "floor: %d connections, %d shakes/s, %d rounds of floor and hongbao, %v each\n", o.Conns, o.QPS, rounds, o.Duration)
	for r := 1; r <= rounds; r++ {
		for _, which := range []string{"floor", "hongbao"} {
			w, err := floorRound(ctx, o, floor, which, r)
			if err != nil {
				return rep, fmt.Errorf("round %d, %s: %w", r, which, err)
			}
			rep.Rounds = append(rep.Rounds, *w)
			k := 0
			if which == "hongbao" {
				k = 1
			}
			per[k] = append(per[k], w.CPUusPerReq)
			fmt.Fprintf(o.Log, "round %d %s: %.0f/s, server %.2f us/req (%.3f cores), p99 %.0f us\n", r, which, w.AchievedQPS, w.CPUusPerReq, w.Cores, w.P99us)
		}
	}
	rep.FloorUS, rep.HongbaoUS = median(per[0]), median(per[1])
	if rep.FloorUS > 0 {
		rep.Ratio = rep.HongbaoUS / rep.FloorUS
	}
	var paired []float64
	for i, f := range per[0] {
		if f > 0 {
			paired = append(paired, per[1][i]/f)
		}
	}
	rep.PairedRatio = median(paired)
	return rep, nil
}

// floorRound starts one server (which: "floor" or "hongbao"), drives it
// with a classic load client and measures it.
func floorRound(ctx context.Context, o Options, floor, which string, round int) (*FloorRound, error) {
	dir := filepath.Join(o.Dir, fmt.Sprintf("round-%d-%s", round, which))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var srv *harness.Proc
	var addr string
	switch which {
	case "floor":
		p, a, err := startFloor(floor, dir)
		if err != nil {
			return nil, err
		}
		srv, addr = p, a
	default:
		sp, err := harness.StartServer(o.Bin, dir, harness.ServerSpec{Users: o.Conns, Budget: 10_000_000,
			Secret: harness.NewSecret(), Extra: []string{"--allow-classic"}})
		if err != nil {
			return nil, err
		}
		srv, addr = sp.Proc, sp.Addr
	}
	defer srv.Stop(5 * time.Second)
	lp, err := harness.StartLoad(o.Bin, dir, harness.LoadSpec{Addr: addr, Users: o.Conns, QPS: o.QPS,
		Duration: o.Duration, Name: "load", Extra: []string{"--classic"}})
	if err != nil {
		return nil, err
	}
	defer lp.Stop(5 * time.Second)
	// Every user online, then the warm-up.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := sleep(ctx, 50*time.Millisecond, srv, lp.Proc); err != nil {
			return nil, err
		}
		if s, err := lp.Admin.LoadStats(); err == nil && s.Conns >= int64(o.Conns) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not every user online after 2m (log %s)", filepath.Join(dir, "load.log"))
		}
	}
	if err := sleep(ctx, o.Warmup, srv, lp.Proc); err != nil {
		return nil, err
	}
	t0, c0, n0, err := mark(srv, lp)
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.Duration-o.Warmup-time.Second, srv, lp.Proc); err != nil {
		return nil, err
	}
	t1, c1, n1, err := mark(srv, lp)
	if err != nil {
		return nil, err
	}
	sum, err := lp.Summary()
	if err != nil {
		return nil, err
	}
	secs := t1.Sub(t0).Seconds()
	n := n1 - n0
	// The kernel counts a process's CPU in ticks of 10 ms: a window in
	// which the server spent less than one has no figure to divide.
	if c1.CPU <= c0.CPU || n == 0 {
		return nil, fmt.Errorf("%w: %d answers and %v of server CPU in %.1f s (CPU is counted in 10 ms ticks): raise --qps or --duration",
			ErrWindowTooSmall, n, c1.CPU-c0.CPU, secs)
	}
	return &FloorRound{Round: round, Server: which, Seconds: secs, Answered: n, AchievedQPS: float64(n) / secs,
		CPUusPerReq: perReq(c1.CPU-c0.CPU, float64(n)), Cores: (c1.CPU - c0.CPU).Seconds() / secs,
		P99us: sum.LatencyUS.P99, Timeouts: sum.Timeouts, Errors: sum.Errors}, nil
}

// mark reads the server's CPU and the answers the client has counted.
func mark(srv *harness.Proc, lp *harness.LoadProc) (time.Time, procstat.Sample, uint64, error) {
	t := time.Now()
	ps, err := srv.Sample()
	if err != nil {
		return t, ps, 0, err
	}
	s, err := lp.Admin.LoadStats()
	if err != nil {
		return t, ps, 0, fmt.Errorf("the load client's stats: %w", err)
	}
	return t, ps, s.Answered, nil
}

// sleep waits d; it fails early if ctx ends or either child exits.
func sleep(ctx context.Context, d time.Duration, srv, cl *harness.Proc) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-srv.Done():
		return fmt.Errorf("%w: the server exited: %v", harness.ErrChildDied, srv.Stop(0))
	case <-cl.Done():
		return fmt.Errorf("%w: the load client exited early: %v", harness.ErrChildDied, cl.Stop(0))
	case <-t.C:
		return nil
	}
}

// startFloor starts the floor on a free loopback port with its open-file
// limit raised to the hard limit (a child of Go gets the soft limit Go
// started with), and waits until it accepts.
func startFloor(floor, dir string) (*harness.Proc, string, error) {
	addr, err := harness.FreePort()
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	if _, err := strconv.Atoi(port); err != nil {
		return nil, "", fmt.Errorf("bench: port of %q: %w", addr, err)
	}
	logf, err := os.Create(filepath.Join(dir, "floor.log"))
	if err != nil {
		return nil, "", err
	}
	p, err := harness.Start("floor", "/bin/sh", []string{"-c", `ulimit -n "$(ulimit -H -n)" && exec "$0" "$@"`, floor, port}, logf)
	if err != nil {
		logf.Close()
		return nil, "", err
	}
	go func() { <-p.Done(); logf.Close() }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, addr, nil
		}
		select {
		case <-p.Done():
			return nil, "", fmt.Errorf("the floor exited before it listened (log %s)", filepath.Join(dir, "floor.log"))
		default:
		}
		if time.Now().After(deadline) {
			_ = p.Stop(time.Second)
			return nil, "", fmt.Errorf("the floor not listening on %s after 10s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
