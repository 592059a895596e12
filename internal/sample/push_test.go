package sample

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hongbao/internal/wait"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeMonitor takes pushes like a monitor and records them. Until up is
// called it is unavailable: it answers 503 ("refusing") or holds every
// request until up or the client gives up ("blocked", a monitor starved of
// CPU), and counts the attempts.
type fakeMonitor struct {
	*httptest.Server
	mode     string
	upc      chan struct{}
	upOnce   sync.Once
	attempts atomic.Int64
	mu       sync.Mutex
	posts    [][]Sample  // accepted posts
	at       []time.Time // when each accepted post came
}

func newFakeMonitor(t *testing.T, mode string) *fakeMonitor {
	t.Helper()
	f := &fakeMonitor{mode: mode, upc: make(chan struct{})}
	if mode == "" {
		f.up()
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() { f.up(); f.Close() })
	return f
}

func (f *fakeMonitor) up() { f.upOnce.Do(func() { close(f.upc) }) }

func (f *fakeMonitor) serve(w http.ResponseWriter, r *http.Request) {
	select {
	case <-f.upc:
	default:
		f.attempts.Add(1)
		switch f.mode {
		case "refusing":
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		case "blocked":
			select {
			case <-f.upc:
			case <-r.Context().Done():
				return
			}
		}
	}
	var post []Sample
	dec := json.NewDecoder(bufio.NewReader(r.Body))
	for dec.More() {
		var s Sample
		if err := dec.Decode(&s); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		post = append(post, s)
	}
	f.mu.Lock()
	f.posts, f.at = append(f.posts, post), append(f.at, time.Now())
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// accepted returns the seconds of the accepted data samples in the order
// they came, and the largest post.
func (f *fakeMonitor) accepted() (ts []int64, biggest int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.posts {
		biggest = max(biggest, len(p))
		for _, s := range p {
			if !s.Bye {
				ts = append(ts, s.T)
			}
		}
	}
	return ts, biggest
}

// TestPusherDeliversBacklogAfterOutage: while the monitor is unavailable
// for longer than the pusher's old queue (60 samples), the pusher keeps
// every sample; once it is back it delivers them all, oldest first, in
// posts of at most BatchLen samples, none lost.
func TestPusherDeliversBacklogAfterOutage(t *testing.T) {
	for _, mode := range []string{"refusing", "blocked"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := newFakeMonitor(t, mode)
			p := NewPusher(f.URL, "x", KindLoad, quietLog)
			const n = 250 // < QueueLen
			for i := range int64(n) {
				p.Push(Sample{Name: "x", Kind: KindLoad, T: i, Counters: map[string]uint64{"sent": 1}})
			}
			wait.For(t, 5*time.Second, "the pusher never tried the monitor", func() bool { return f.attempts.Load() > 0 })
			f.up()
			wait.For(t, 15*time.Second, "the backlog was not delivered", func() bool { return p.Sent() == n })
			ts, biggest := f.accepted()
			want := make([]int64, n)
			for i := range want {
				want[i] = int64(i)
			}
			if !slices.Equal(ts, want) {
				t.Errorf("the monitor got seconds %v, want 0..%d once each, oldest first", ts, n-1)
			}
			if biggest > BatchLen {
				t.Errorf("a post carried %d samples, want at most %d", biggest, BatchLen)
			}
			p.Close()
			if p.Dropped() != 0 || p.Sent() != n+1 {
				t.Errorf("dropped %d sent %d, want 0 and %d (with the goodbye)", p.Dropped(), p.Sent(), n+1)
			}
		})
	}
}

// TestPusherCloseIsBounded: Close returns within CloseTimeout whatever the
// monitor does, delivers a backlog to one that answers, and counts what it
// could not deliver as dropped.
func TestPusherCloseIsBounded(t *testing.T) {
	const n = 250
	for _, c := range []struct {
		name        string
		mode        string // of the fake monitor: "" answers
		sent, drops uint64
	}{
		{"monitor answers", "", n + 1, 0},
		{"monitor refuses", "refusing", 0, n},
		{"monitor hangs", "blocked", 0, n},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeMonitor(t, c.mode)
			p := NewPusher(f.URL, "x", KindServer, quietLog)
			for i := range int64(n) {
				p.Push(Sample{Name: "x", Kind: KindServer, T: i})
			}
			if c.mode != "" {
				wait.For(t, 5*time.Second, "the pusher never tried the monitor", func() bool { return f.attempts.Load() > 0 })
			}
			start := time.Now()
			p.Close()
			// The slack is for a loaded machine; a Close that waited for
			// a post's own timeout (PostTimeout) would still be caught.
			if d := time.Since(start); d > CloseTimeout+2*time.Second {
				t.Errorf("Close took %v, want at most about %v", d, CloseTimeout)
			}
			if p.Sent() != c.sent || p.Dropped() != c.drops {
				t.Errorf("sent %d dropped %d, want %d and %d", p.Sent(), p.Dropped(), c.sent, c.drops)
			}
		})
	}
}

// nameWithPhase returns a process name whose Phase is at least min.
func nameWithPhase(t *testing.T, min time.Duration) string {
	t.Helper()
	for i := range 1000 {
		if n := "proc-" + strconv.Itoa(i); Phase(n) >= min {
			return n
		}
	}
	t.Fatalf("no name with a phase of %v or more", min)
	return ""
}

// TestPhaseSpreadsNames: a phase is fixed by the name, below PhaseWindow,
// and a hundred processes' phases are spread over the window rather than
// piled at its start.
func TestPhaseSpreadsNames(t *testing.T) {
	var quarters [4]int
	for i := range 104 {
		n := "node-" + strconv.Itoa(i)
		p := Phase(n)
		if p < 0 || p >= PhaseWindow || p != Phase(n) {
			t.Fatalf("Phase(%q) = %v (again %v), want a fixed value in [0, %v)", n, p, Phase(n), PhaseWindow)
		}
		quarters[p*4/PhaseWindow]++
	}
	for q, n := range quarters {
		if n < 104/8 {
			t.Errorf("quarter %d of the window has %d of 104 phases: %v", q, n, quarters)
		}
	}
}

// data returns the data samples accepted so far (goodbyes left out), each
// with the time its post came.
func (f *fakeMonitor) data() ([]Sample, []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ss []Sample
	var at []time.Time
	for i, p := range f.posts {
		for _, s := range p {
			if !s.Bye {
				ss, at = append(ss, s), append(at, f.at[i])
			}
		}
	}
	return ss, at
}

// TestPusherHoldsForItsPhase: a fresh sample is published its process's
// Phase after Push, not at once; a metered one carries the process's own
// figures read then, a plain one what the producer put in; Close publishes
// a held sample at once.
func TestPusherHoldsForItsPhase(t *testing.T) {
	f := newFakeMonitor(t, "")
	name := nameWithPhase(t, 200*time.Millisecond)
	phase := Phase(name)
	p := NewPusher(f.URL, name, KindServer, quietLog)

	pushed := time.Now()
	p.PushMetered(Sample{Name: name, Kind: KindServer, T: 1})
	wait.For(t, 5*time.Second, "the metered sample", func() bool { s, _ := f.data(); return len(s) == 1 })
	s, at := f.data()
	if d := at[0].Sub(pushed); d < phase {
		t.Errorf("published %v after Push, before the phase %v", d, phase)
	}
	if s[0].Process.RSS == 0 || s[0].Process.Goroutines == 0 {
		t.Errorf("metered sample without the process's figures: %+v", s[0].Process)
	}

	p.Push(Sample{Name: name, Kind: KindServer, T: 2, Process: ProcStats{CPU: 0.25}})
	wait.For(t, 5*time.Second, "the plain sample", func() bool { s, _ := f.data(); return len(s) == 2 })
	if s, _ := f.data(); s[1].Process != (ProcStats{CPU: 0.25}) {
		t.Errorf("plain sample's figures were changed: %+v", s[1].Process)
	}

	p.Push(Sample{Name: name, Kind: KindServer, T: 3})
	time.Sleep(10 * time.Millisecond) // the run goroutine takes it and holds it
	closing := time.Now()
	p.Close()
	if d := time.Since(closing); d >= phase {
		t.Errorf("Close took %v: it waited for the phase (%v)", d, phase)
	}
	ts, _ := f.accepted()
	if !slices.Equal(ts, []int64{1, 2, 3}) {
		t.Errorf("published seconds %v, want [1 2 3]", ts)
	}
}

// TestPusherSetPhase: a pusher whose phase is set to 0 publishes a fresh
// sample at once, although its name's Phase is long.
func TestPusherSetPhase(t *testing.T) {
	f := newFakeMonitor(t, "")
	name := nameWithPhase(t, 400*time.Millisecond)
	p := NewPusher(f.URL, name, KindServer, quietLog)
	defer p.Close()
	p.SetPhase(0)
	pushed := time.Now()
	p.Push(Sample{Name: name, Kind: KindServer, T: 1})
	wait.For(t, 5*time.Second, "the sample", func() bool { s, _ := f.data(); return len(s) == 1 })
	// The slack is for a loaded machine; it is still well under the phase.
	if d := time.Since(pushed); d >= Phase(name)-100*time.Millisecond {
		t.Errorf("published %v after Push, want at once (the name's phase is %v)", d, Phase(name))
	}
}
