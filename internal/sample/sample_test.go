package sample

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

func TestParseNetDev(t *testing.T) {
	in := []byte(`Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000      20    0    0    0     0          0         0     7000      30    0    0    0     0       0          0
`)
	n, err := parseNetDev(in)
	if err != nil {
		t.Fatal(err)
	}
	if n != (NetDev{RxBytes: 6000, RxPackets: 30, TxBytes: 8000, TxPackets: 40}) {
		t.Fatalf("got %+v", n)
	}
	if _, err := ReadNetDev(); err != nil {
		t.Fatalf("reading this machine's /proc/net/dev: %v", err)
	}
}

func TestMeterReadsProcess(t *testing.T) {
	var m Meter
	m.Read()
	// Burn CPU until the kernel's 10 ms clock ticks have counted some.
	var p ProcStats
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		for i := range 1_000_000 {
			sink += i
		}
		if p, _ = m.Read(); p.TotalCPU > 0 {
			break
		}
	}
	if p.RSS <= 0 || p.Goroutines < 1 || p.TotalCPU <= 0 {
		t.Fatalf("implausible process stats %+v", p)
	}
}

var sink int

// The Go runtime's figures come without stopping the world and still count:
// two collections between reads show as two cycles with a pause, and the
// heap in use is about what runtime.ReadMemStats says.
func TestMeterReadsGoRuntime(t *testing.T) {
	var m Meter
	m.Read()
	runtime.GC()
	runtime.GC()
	p, _ := m.Read()
	if p.GCs < 2 || p.GCPause <= 0 {
		t.Errorf("after two collections: %d cycles, %g s paused", p.GCs, p.GCPause)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if lo, hi := ms.HeapInuse/2, ms.HeapInuse*2; p.HeapBytes < lo || p.HeapBytes > hi {
		t.Errorf("heap %d bytes, ReadMemStats says %d in use", p.HeapBytes, ms.HeapInuse)
	}
}

// A pusher to a dead monitor never blocks and drops the oldest samples.
func TestPusherDropsOldestWhenMonitorIsDown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	p := NewPusher(srv.URL, "x", KindServer, slog.New(slog.NewTextHandler(io.Discard, nil)))
	start := time.Now()
	for i := range 10 * QueueLen {
		p.Push(Sample{Name: "x", T: int64(i)})
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Push blocked for %v", d)
	}
	deadline := time.Now().Add(3 * time.Second)
	for p.Dropped() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Dropped() == 0 || p.Sent() != 0 {
		t.Fatalf("dropped %d sent %d: want drops and nothing sent", p.Dropped(), p.Sent())
	}
	p.Close()
}
