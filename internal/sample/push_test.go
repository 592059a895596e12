package sample

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
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
	posts    [][]Sample // accepted posts
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
	f.posts = append(f.posts, post)
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
