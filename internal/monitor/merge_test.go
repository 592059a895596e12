package monitor

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"hongbao/internal/sample"
)

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// fakeClock is a settable clock for the monitor.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// latency returns an encoded histogram holding n values of v µs.
func latency(t *testing.T, v int64, n int) *sample.Latency {
	t.Helper()
	h := hdrhistogram.New(1, 10_000_000, 3)
	for range n {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	return sample.LatencyOf(h)
}

func srvSample(t0 int64, shakes, got uint64) sample.Sample {
	return sample.Sample{Name: "server", Kind: sample.KindServer, Pid: 1, Host: "h", T: t0,
		Counters: map[string]uint64{"shakes": shakes, "got": got},
		Gauges:   map[string]float64{"connections": 300},
		Process:  sample.ProcStats{CPU: 0.5, RSS: 100 << 20},
		Net:      sample.NetDev{RxBytes: 1000, TxBytes: 2000}}
}

func loadSample(t *testing.T, name string, t0 int64, sent uint64, latUS int64) sample.Sample {
	return sample.Sample{Name: name, Kind: sample.KindLoad, Pid: 2, Host: "h", T: t0, Phase: "load",
		Counters: map[string]uint64{"sent": sent, "got": sent / 10},
		Gauges:   map[string]float64{"connections": 150},
		Latency:  latency(t, latUS, int(sent)),
		Process:  sample.ProcStats{CPU: 0.25, RSS: 50 << 20},
		Net:      sample.NetDev{RxBytes: 1000, TxBytes: 2000}}
}

// TestMergeOverThePushProtocol pushes the samples of two load clients and a
// server through sample.Pusher over HTTP to a running monitor (whose clock
// the test drives) and checks the merged seconds: totals, the exact merge of
// the latency histograms, a missing process, and late samples.
func TestMergeOverThePushProtocol(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	file := filepath.Join(t.TempDir(), "series.ndjson")
	m, err := Listen("127.0.0.1:0", Options{Grace: 2 * time.Second, File: file, Logger: quiet, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	srv := sample.NewPusher(m.Addr(), "server", sample.KindServer, quiet)
	l1 := sample.NewPusher(m.Addr(), "load-1", sample.KindLoad, quiet)
	l2 := sample.NewPusher(m.Addr(), "load-2", sample.KindLoad, quiet)
	// The monitor runs on a fake clock: the pushers need not spread their
	// posts over real time.
	for _, p := range []*sample.Pusher{srv, l1, l2} {
		p.SetPhase(0)
	}
	received := uint64(0)
	push := func(p *sample.Pusher, s sample.Sample) {
		t.Helper()
		received++
		p.Push(s)
		deadline := time.Now().Add(5 * time.Second)
		for m.Status().Received < received {
			if time.Now().After(deadline) {
				t.Fatalf("monitor received %d samples, want %d", m.Status().Received, received)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	at := func(sec int64, frac time.Duration) {
		clock.Set(time.Unix(sec, 0).Add(frac))
		m.Tick()
	}
	T := int64(1_800_000_000)

	// Second T: everyone reports.
	push(srv, srvSample(T, 1000, 100))
	push(l1, loadSample(t, "load-1", T, 600, 1000))
	push(l2, loadSample(t, "load-2", T, 400, 3000))
	// Second T+1: load-2 sends nothing.
	push(srv, srvSample(T+1, 900, 90))
	push(l1, loadSample(t, "load-1", T+1, 600, 1000))
	// Second T+2: load-1's sample comes 1.5 s after the second ended,
	// within the grace: it must land in T+2, not in the second it arrived in.
	push(srv, srvSample(T+2, 800, 80))
	push(l2, loadSample(t, "load-2", T+2, 400, 3000))
	at(T+3, 500*time.Millisecond)
	push(l1, loadSample(t, "load-1", T+2, 500, 1000))
	push(srv, srvSample(T+3, 700, 70))
	push(l1, loadSample(t, "load-1", T+3, 300, 1000))
	push(l2, loadSample(t, "load-2", T+3, 300, 3000))
	// Close T..T+3 (T+3 closes at T+4+grace).
	at(T+6, 0)
	if got := len(m.Series(0)); got != 4 {
		t.Fatalf("%d seconds closed, want 4: %+v", got, m.Series(0))
	}
	// Second T+1's missing load-2 sample arrives after T+1 closed: it
	// amends T+1 and is listed as late.
	push(l2, loadSample(t, "load-2", T+1, 200, 3000))

	secs := m.Series(0)
	byT := map[int64]Second{}
	for _, s := range secs {
		byT[s.T] = s
	}
	check := func(t *testing.T, s Second, sent, shakes float64, missing, late []string) {
		t.Helper()
		if s.Client["sent"] != sent || s.Server["shakes"] != shakes {
			t.Errorf("t=%d: client sent %v server shakes %v, want %v %v", s.T, s.Client["sent"], s.Server["shakes"], sent, shakes)
		}
		if len(s.Missing) != len(missing) || (len(missing) > 0 && s.Missing[0] != missing[0]) {
			t.Errorf("t=%d: missing %v, want %v", s.T, s.Missing, missing)
		}
		if len(s.Late) != len(late) || (len(late) > 0 && s.Late[0] != late[0]) {
			t.Errorf("t=%d: late %v, want %v", s.T, s.Late, late)
		}
	}
	check(t, byT[T], 1000, 1000, nil, nil)
	check(t, byT[T+1], 800, 900, nil, []string{"load-2"}) // amended by the late sample
	check(t, byT[T+2], 900, 800, nil, nil)
	check(t, byT[T+3], 600, 700, nil, nil)

	s := byT[T]
	if s.Client["connections"] != 300 || s.Server["connections"] != 300 || s.Client["got"] != 100 {
		t.Errorf("gauges or counters summed wrong: %+v %+v", s.Client, s.Server)
	}
	// Latency: 600 values of 1 ms and 400 of 3 ms merged exactly: p50 is
	// 1 ms, p99 3 ms, count 1000.
	if s.Latency == nil || s.Latency.Count != 1000 || s.Latency.P50 < 990 || s.Latency.P50 > 1010 || s.Latency.P99 < 2990 || s.Latency.P99 > 3010 {
		t.Errorf("merged latency %+v, want count 1000, p50 1 ms, p99 3 ms", s.Latency)
	}
	// Network is per machine: three processes on host h count once.
	if s.Net.RxBytes != 1000 || s.Net.TxBytes != 2000 {
		t.Errorf("net %+v, want the host counted once", s.Net)
	}
	if len(s.Procs) != 3 || s.Phase != "load" {
		t.Errorf("procs %d phase %q", len(s.Procs), s.Phase)
	}
	// Each load client's own percentiles are kept (which client was slow),
	// without its histogram; a server has none.
	wantP50 := map[string]float64{"load-1": 1000, "load-2": 3000}
	for _, p := range s.Procs {
		l, want := p.Latency, wantP50[p.Name]
		switch {
		case want == 0 && l != nil:
			t.Errorf("%s has latency %+v", p.Name, l)
		case want == 0:
		case l == nil || l.P50 < want-10 || l.P50 > want+10 || l.Hist != "":
			t.Errorf("%s's own latency %+v, want p50 %v µs and no histogram", p.Name, l, want)
		}
	}

	// The same over the JSON API.
	var api []Second
	getJSON(t, "http://"+m.Addr()+"/api/series?since=0&last=2", &api)
	if len(api) != 2 || api[0].T != T+2 || api[1].Client["sent"] != 600 {
		t.Errorf("/api/series?last=2: %+v", api)
	}
	var st Status
	getJSON(t, "http://"+m.Addr()+"/api/latest", &st)
	if len(st.Procs) != 3 || st.Latest == nil || st.Latest.T != T+3 || st.Received != received {
		t.Errorf("/api/latest: %+v", st)
	}

	// Before the late amendment T+1 was recorded with load-2 missing, not
	// with zeros: the file holds both versions, the reader keeps the last.
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	fromFile, err := ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromFile) != 4 || fromFile[1].Client["sent"] != 800 || len(fromFile[1].Late) != 1 {
		t.Errorf("file series: %+v", fromFile)
	}
}

// TestMissingProcessIsMarkedNotZeroed closes a second in which a known
// process sent nothing.
func TestMissingProcessIsMarkedNotZeroed(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	m, err := New(Options{Grace: time.Second, Logger: quiet, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	T := int64(1_800_000_000)
	m.Add(srvSample(T, 10, 1), loadSample(t, "load-1", T, 10, 100), loadSample(t, "load-2", T, 10, 100))
	m.Add(srvSample(T+1, 10, 1), loadSample(t, "load-1", T+1, 10, 100))
	m.Add(srvSample(T+2, 10, 1), loadSample(t, "load-1", T+2, 10, 100), loadSample(t, "load-2", T+2, 10, 100))
	clock.Set(time.Unix(T+4, 0))
	m.Tick()
	secs := m.Series(0)
	if len(secs) != 3 {
		t.Fatalf("%d seconds", len(secs))
	}
	s := secs[1]
	if len(s.Missing) != 1 || s.Missing[0] != "load-2" {
		t.Fatalf("second T+1 missing %v, want [load-2]", s.Missing)
	}
	if s.Client["sent"] != 10 || len(s.Procs) != 2 {
		t.Errorf("second T+1: sent %v from %d procs, want 10 from 2", s.Client["sent"], len(s.Procs))
	}
	if len(secs[0].Missing)+len(secs[2].Missing) != 0 {
		t.Errorf("unexpected missing: %v %v", secs[0].Missing, secs[2].Missing)
	}
	// A process that said goodbye is not expected afterwards.
	m.Add(sample.Sample{Name: "load-2", Kind: sample.KindLoad, Bye: true})
	m.Add(srvSample(T+3, 10, 1), loadSample(t, "load-1", T+3, 10, 100))
	clock.Set(time.Unix(T+5, 0)) // closes T+3 (T+3+1+grace)
	m.Tick()
	if s := m.Series(T + 2); len(s) != 1 || len(s[0].Missing) != 0 {
		t.Errorf("after goodbye: %+v", s)
	}
}
