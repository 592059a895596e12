package monitor

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"hongbao/internal/sample"
	"hongbao/internal/wait"
)

// gate stands in front of a monitor's handler. Open, it lets requests
// through; "blocked", it holds them until it opens (a monitor starved of
// CPU); "refusing", it answers 503. It counts the requests it turned away
// or held.
type gate struct {
	next   http.Handler
	mu     sync.Mutex
	mode   string
	opened chan struct{} // closed while open
	held   atomic.Int64
}

func newGate(next http.Handler) *gate {
	g := &gate{next: next, opened: make(chan struct{})}
	close(g.opened)
	return g
}

func (g *gate) set(mode string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case mode == "" && g.mode != "":
		close(g.opened)
	case mode != "" && g.mode == "":
		g.opened = make(chan struct{})
	}
	g.mode = mode
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	mode, opened := g.mode, g.opened
	g.mu.Unlock()
	switch mode {
	case "refusing":
		g.held.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	case "blocked":
		g.held.Add(1)
		select {
		case <-opened:
		case <-r.Context().Done():
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

// latencies are histograms as a load client records them (1 µs to 10 s,
// three digits), of a few hundred shakes each: what a sample carries.
func latencies(t *testing.T) []*sample.Latency {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	var ls []*sample.Latency
	for i := range 3 {
		h := hdrhistogram.New(1, 10_000_000, 3)
		for range 300 + 200*i {
			if err := h.RecordValue(200 + int64(r.ExpFloat64()*float64(2000*(i+1)))); err != nil {
				t.Fatal(err)
			}
		}
		ls = append(ls, sample.LatencyOf(h))
	}
	return ls
}

// recordsPerSecond counts the records of each second in a series file.
func recordsPerSecond(t *testing.T, path string) map[int64]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := map[int64]int{}
	if err := eachRecord(f, func(s Second) { n[s.T]++ }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSeriesCompleteAfterMonitorOutage reproduces the congestion collapse:
// real pushers send realistic samples (counters, latency histograms) to a
// real monitor behind its HTTP handler, which then takes nothing for 70
// seconds of its clock (longer than the pushers' old queue of 60, the old
// amendable window of 10 s and Retire, so that the series has a hole where
// no second has a record), and recovers. Whether the pushers deliver their
// backlog by themselves or at Close at the end of the run, every second
// each pusher produced ends up in the series and the file, counted once,
// with every process and no one missing, and the file holds at most two
// records of a second.
func TestSeriesCompleteAfterMonitorOutage(t *testing.T) {
	const (
		before = 5  // seconds delivered before the outage
		outage = 70 // seconds produced during it
		grace  = 2 * time.Second
	)
	procs := []struct{ name, kind string }{
		{"load-1", sample.KindLoad}, {"load-2", sample.KindLoad},
		{"server-1", sample.KindServer}, {"server-2", sample.KindServer},
	}
	for _, c := range []struct {
		name string
		mode string // of the gate during the outage
		// atClose: the pushers deliver their backlog when the run ends
		// and they Close, rather than by themselves before.
		atClose bool
	}{
		{"handler blocked, then back", "blocked", false},
		{"handler blocked until the run ends", "blocked", true},
		{"monitor refusing, then back", "refusing", false},
		{"monitor refusing until the run ends", "refusing", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			lats := latencies(t)
			T0 := int64(1_800_000_000)
			clock := &fakeClock{t: time.Unix(T0, 0)}
			dir := t.TempDir()
			file, csvFile := filepath.Join(dir, "series.ndjson"), filepath.Join(dir, "series.csv")
			m, err := New(Options{Grace: grace, File: file, CSV: csvFile, Logger: quiet, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			g := newGate(m.Handler())
			srv := httptest.NewServer(g)
			defer srv.Close()
			m.Start()
			pushers := make([]*sample.Pusher, len(procs))
			for i, p := range procs {
				pushers[i] = sample.NewPusher(srv.URL, p.name, p.kind, quiet)
			}
			var wantSent, wantShakes, wantLatency float64
			produce := func(T int64) {
				for i, p := range procs {
					s := sample.Sample{Name: p.name, Kind: p.kind, Pid: 100 + i, Host: "h", T: T,
						Process: sample.ProcStats{CPU: 0.5, RSS: 50 << 20, Goroutines: 20},
						Net:     sample.NetDev{RxBytes: 1000, TxBytes: 2000}}
					v := uint64(1000 + (T+int64(i))%7)
					if p.kind == sample.KindLoad {
						l := lats[(T+int64(i))%int64(len(lats))]
						s.Phase, s.Latency = "load", l
						s.Counters = map[string]uint64{"sent": v, "got": v / 10}
						s.Gauges = map[string]float64{"connections": 150}
						wantSent += float64(v)
						wantLatency += float64(l.Count)
					} else {
						s.Counters = map[string]uint64{"shakes": v, "got": v / 10}
						s.Gauges = map[string]float64{"connections": 300}
						wantShakes += float64(v)
					}
					pushers[i].Push(s)
				}
			}
			// The monitor's clock: second T closes at T+1+grace.
			closeTo := func(T int64) {
				clock.Set(time.Unix(T+1, 0).Add(grace))
				m.Tick()
			}

			for T := T0; T < T0+before; T++ {
				produce(T)
			}
			wait.For(t, 10*time.Second, "samples before the outage were not received", func() bool {
				return m.Status().Received >= uint64(before*len(procs))
			})
			closeTo(T0 + before - 1)

			// The outage: a second passes for each second produced, and
			// the monitor closes them (retiring the silent processes).
			g.set(c.mode)
			for T := T0 + before; T < T0+before+outage; T++ {
				produce(T)
				closeTo(T)
			}
			wait.For(t, 10*time.Second, "the pushers did not try the monitor during the outage", func() bool {
				return g.held.Load() >= int64(len(procs))
			})
			if n := len(m.Series(0)); n >= before+outage {
				t.Fatalf("%d seconds in the series during the outage: want a hole", n)
			}
			all := int64(before + outage)

			g.set("")
			closed := make([]time.Duration, len(pushers))
			closePushers := func() {
				var wg sync.WaitGroup
				for i, p := range pushers {
					wg.Go(func() {
						start := time.Now()
						p.Close()
						closed[i] = time.Since(start)
					})
				}
				wg.Wait()
			}
			if c.atClose {
				closePushers()
			} else {
				wait.For(t, 30*time.Second, "the pushers did not deliver their backlog", func() bool {
					for _, p := range pushers {
						if p.Sent() < uint64(all) {
							return false
						}
					}
					return true
				})
				// The run goes on: the outage leaves the amendable window,
				// and its seconds are final in memory and in the file.
				closeTo(T0 + all + amendable + 2)
				check(t, "series after the backlog", m.Series(0), T0, all, T0+before, len(procs), wantSent, wantShakes, wantLatency)
				fromFile, err := ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				check(t, "file after the backlog", fromFile, T0, all, T0+before, len(procs), wantSent, wantShakes, wantLatency)
				closePushers()
			}
			t.Logf("pushers closed in %v", closed)
			for i, p := range pushers {
				if p.Dropped() != 0 {
					t.Errorf("%s dropped %d samples", procs[i].name, p.Dropped())
				}
				if closed[i] > sample.CloseTimeout+2*time.Second {
					t.Errorf("%s: Close took %v", procs[i].name, closed[i])
				}
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			check(t, "series", m.Series(0), T0, all, T0+before, len(procs), wantSent, wantShakes, wantLatency)
			fromFile, err := ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "file", fromFile, T0, all, T0+before, len(procs), wantSent, wantShakes, wantLatency)
			for T, n := range recordsPerSecond(t, file) {
				if n > 2 {
					t.Errorf("t=%d has %d records in the file, want at most 2", T, n)
				}
			}
			// The CSV: one row per second, in order, the late seconds
			// (with or without a record when they closed) in their place.
			_, rows := readCSV(t, csvFile)
			var csvSent float64
			for i, r := range rows {
				if r["t"] != strconv.FormatInt(T0+int64(i), 10) || r["procs"] != strconv.Itoa(len(procs)) {
					t.Errorf("CSV row %d: t %s, %s processes", i, r["t"], r["procs"])
				}
				v, _ := strconv.ParseFloat(r["client_sent"], 64)
				csvSent += v
			}
			if len(rows) != int(all) || csvSent != wantSent {
				t.Errorf("CSV: %d rows summing to %v sent, want %d and %v", len(rows), csvSent, all, wantSent)
			}
		})
	}
}

// check verifies that secs has seconds T0 .. T0+n-1, each with all procs
// processes and none missing, none of them late before lateFrom and all
// of them late from it on, and the totals.
func check(t *testing.T, what string, secs []Second, T0, n, lateFrom int64, procs int, sent, shakes, latency float64) {
	t.Helper()
	byT := map[int64]Second{}
	var haveSent, haveShakes, haveLatency float64
	for _, s := range secs {
		byT[s.T] = s
		haveSent += s.Client["sent"]
		haveShakes += s.Server["shakes"]
		if s.Latency != nil {
			haveLatency += float64(s.Latency.Count)
		}
	}
	bad := 0
	for T := T0; T < T0+n; T++ {
		s, ok := byT[T]
		late := 0
		if T >= lateFrom {
			late = procs
		}
		if !ok || len(s.Procs) != procs || len(s.Missing) != 0 || len(s.Late) != late {
			if bad++; bad <= 5 {
				t.Errorf("%s: t=T0+%d: %d processes, missing %v, late %v (recorded: %v)", what, T-T0, len(s.Procs), s.Missing, s.Late, ok)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d seconds in all are incomplete", what, bad)
	}
	if haveSent != sent || haveShakes != shakes || haveLatency != latency {
		t.Errorf("%s: sums to sent %v shakes %v latency count %v, the pushers pushed %v %v %v",
			what, haveSent, haveShakes, haveLatency, sent, shakes, latency)
	}
}

// TestAmendmentsMergedAtABoundedRateWrittenOnceMore: a process's samples
// for 14 closed seconds come late at once. A Tick merges one of them again
// (the oldest), not all; the file gets none of them until they leave the
// amendable window, and then each once, final; a sample later than that is
// dropped and counted.
func TestAmendmentsMergedAtABoundedRateWrittenOnceMore(t *testing.T) {
	T := int64(1_800_000_000)
	clock := &fakeClock{t: time.Unix(T, 0)}
	file := filepath.Join(t.TempDir(), "series.ndjson")
	m, err := New(Options{Grace: time.Second, Retire: time.Hour, Amend: 20 * time.Second, File: file, Logger: quiet, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const n = 15 // < Amend: all amendable when they come
	lat := latency(t, 1000, 100)
	load := func(name string, t0 int64) sample.Sample {
		s := loadSample(t, name, t0, 0, 0)
		s.Counters, s.Latency = map[string]uint64{"sent": 100}, lat
		return s
	}
	m.Add(load("load-2", T))
	for i := range int64(n) {
		m.Add(srvSample(T+i, 10, 1), load("load-1", T+i))
	}
	clock.Set(time.Unix(T+n+1, 0))
	m.Tick() // closes T .. T+n-1: load-2 is missing from T+1 on
	for i := int64(1); i < n; i++ {
		m.Add(load("load-2", T+i))
	}
	amended := func() (ts []int64) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range m.series {
			if len(s.Late) > 0 {
				ts = append(ts, s.T)
			}
		}
		return ts
	}
	if a := amended(); len(a) != 0 {
		t.Fatalf("seconds %v merged again by Add", a)
	}
	m.Tick()
	if a := amended(); len(a) != 1 || a[0] != T+1 {
		t.Fatalf("after a Tick seconds %v are merged again, want the oldest only (%d)", a, T+1)
	}
	for sec, k := range recordsPerSecond(t, file) {
		if k != 1 {
			t.Errorf("t=T+%d: %d records while amendable, want 1", sec-T, k)
		}
	}

	// The processes stop; the amended seconds leave the window.
	for _, name := range []string{"server", "load-1", "load-2"} {
		m.Add(sample.Sample{Name: name, Bye: true})
	}
	clock.Set(time.Unix(T+n+1+20+1, 0))
	m.Tick()
	recs := recordsPerSecond(t, file)
	for i := range int64(n) {
		if want := min(i+1, 2); recs[T+i] != int(want) {
			t.Errorf("t=T+%d: %d records once final, want %d", i, recs[T+i], want)
		}
	}
	secs := m.Series(0)
	if len(secs) != n {
		t.Fatalf("%d seconds, want %d", len(secs), n)
	}
	for _, s := range secs {
		if s.Client["sent"] != 200 || len(s.Missing) != 0 || s.Latency == nil || s.Latency.Count != 200 {
			t.Errorf("t=T+%d: sent %v, missing %v, latency %+v: want 200 from both clients", s.T-T, s.Client["sent"], s.Missing, s.Latency)
		}
	}

	// Past the window: dropped and counted, nothing changes.
	m.Add(load("load-2", T+5))
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var tooLate uint64
	for _, p := range m.Status().Procs {
		tooLate += p.TooLate
		if p.Gone != true {
			t.Errorf("%s is expected again after its goodbye", p.Name)
		}
	}
	if tooLate != 1 {
		t.Errorf("%d samples counted too late, want 1", tooLate)
	}
	if after := recordsPerSecond(t, file); len(after) != len(recs) || after[T+5] != recs[T+5] {
		t.Errorf("a sample past amending changed the file: %v", after)
	}
	fromFile, err := ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromFile) != n || fromFile[5].Client["sent"] != 200 {
		t.Errorf("file series: %d seconds, t=T+5 sent %v", len(fromFile), fromFile[5].Client["sent"])
	}
}
