// Package sample is what every hongbao process (server, load client) reports
// to the monitor once a second: its per-second counters, gauges, client
// latency histogram, its own CPU, memory, goroutines and GC pauses, and the
// machine's network traffic from /proc/net/dev. A Pusher sends samples to a
// monitor without ever blocking the process that produces them.
package sample

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"hongbao/internal/procstat"
)

// Process kinds.
const (
	KindServer = "server"
	KindLoad   = "load"
)

// Sample is one process's report for one Unix second T. Counters are the
// events of that second (differences of the process's running totals);
// Gauges are levels at its end.
type Sample struct {
	Name     string             `json:"proc"` // unique name, e.g. "server" or "load-1"
	Kind     string             `json:"kind"` // KindServer or KindLoad
	Pid      int                `json:"pid"`
	Host     string             `json:"host"`
	T        int64              `json:"t"`
	Phase    string             `json:"phase,omitempty"` // load clients: ramp, load, drain, done
	Bye      bool               `json:"bye,omitempty"`   // the process is stopping: expect no more samples
	Counters map[string]uint64  `json:"counters,omitempty"`
	Gauges   map[string]float64 `json:"gauges,omitempty"`
	Latency  *Latency           `json:"latency,omitempty"` // load clients only
	Process  ProcStats          `json:"process"`
	Net      NetDev             `json:"net"` // the machine's, per second
}

// Latency is a second's latency histogram (µs, from the scheduled send to the
// answer). Hist is the HdrHistogram's non-zero buckets (hist.go), so that
// the monitor can merge several processes exactly; the percentiles are this
// process's own.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	Hist  string  `json:"hist,omitempty"`
}

// LatencyOf summarises and encodes h (nil when it is empty).
func LatencyOf(h *hdrhistogram.Histogram) *Latency {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	l := SummaryOf(h)
	l.Hist = encodeHist(h)
	return l
}

// SummaryOf returns h's count and percentiles, without the encoded histogram.
func SummaryOf(h *hdrhistogram.Histogram) *Latency {
	return &Latency{
		Count: uint64(h.TotalCount()),
		P50:   float64(h.ValueAtQuantile(50)),
		P99:   float64(h.ValueAtQuantile(99)),
		P999:  float64(h.ValueAtQuantile(99.9)),
		Max:   float64(h.Max()),
	}
}

// Decode returns the histogram carried by l.
func (l *Latency) Decode() (*hdrhistogram.Histogram, error) {
	if l == nil || l.Hist == "" {
		return nil, fmt.Errorf("sample: no histogram")
	}
	return decodeAny(l.Hist)
}

// ProcStats are the process's own resources.
type ProcStats struct {
	CPU        float64 `json:"cpu_s"`       // CPU seconds (user+system) spent in this second: cores busy
	RSS        int64   `json:"rss_bytes"`   // resident memory at the end of the second
	Goroutines int     `json:"goroutines"`  // at the end of the second
	GCPause    float64 `json:"gc_pause_s"`  // stop-the-world pause time in this second
	GCs        uint32  `json:"gc_cycles"`   // GC cycles completed in this second
	HeapBytes  uint64  `json:"heap_bytes"`  // heap in use
	TotalCPU   float64 `json:"cpu_total_s"` // CPU seconds since the process started
}

// NetDev is traffic per second over every interface of the machine
// (loopback included: the demo and tests run there), from /proc/net/dev.
type NetDev struct {
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

func (n NetDev) sub(o NetDev) NetDev {
	return NetDev{RxBytes: n.RxBytes - o.RxBytes, TxBytes: n.TxBytes - o.TxBytes,
		RxPackets: n.RxPackets - o.RxPackets, TxPackets: n.TxPackets - o.TxPackets}
}

// ReadNetDev sums the counters of every interface in /proc/net/dev.
func ReadNetDev() (NetDev, error) {
	b, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		return NetDev{}, err
	}
	return parseNetDev(b)
}

func parseNetDev(b []byte) (NetDev, error) {
	var n NetDev
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		i := strings.IndexByte(line, ':')
		if i < 0 {
			continue // the two header lines
		}
		f := strings.Fields(line[i+1:])
		if len(f) < 10 {
			return NetDev{}, fmt.Errorf("sample: short /proc/net/dev line %q", line)
		}
		var v [4]uint64
		for j, k := range []int{0, 1, 8, 9} {
			x, err := strconv.ParseUint(f[k], 10, 64)
			if err != nil {
				return NetDev{}, fmt.Errorf("sample: /proc/net/dev: %w", err)
			}
			v[j] = x
		}
		n.RxBytes += v[0]
		n.RxPackets += v[1]
		n.TxBytes += v[2]
		n.TxPackets += v[3]
	}
	return n, sc.Err()
}

// Meter turns the process's and the machine's running totals into
// per-second figures; call Read once per second from one goroutine.
//
// It reads the Go runtime without stopping the world: runtime.ReadMemStats
// does, and once a second in each of 104 processes on a saturated box a
// stop could wait tens of ms for a descheduled thread, with every event
// loop of that process frozen meanwhile.
type Meter struct {
	started bool
	cpu     float64
	pause   time.Duration
	gcs     int64
	net     NetDev
	gc      debug.GCStats
	heap    [2]metrics.Sample // heap objects and heap unused: their sum is MemStats.HeapInuse
}

// Read returns the figures since the previous Read (zero on the first).
func (m *Meter) Read() (ProcStats, NetDev) {
	var p ProcStats
	if ps, err := procstat.Read(0); err == nil {
		p.TotalCPU = ps.CPU.Seconds()
		p.RSS = ps.RSS
	}
	if m.heap[0].Name == "" {
		m.heap[0].Name = "/memory/classes/heap/objects:bytes"
		m.heap[1].Name = "/memory/classes/heap/unused:bytes"
	}
	metrics.Read(m.heap[:])
	for _, h := range m.heap {
		if h.Value.Kind() == metrics.KindUint64 {
			p.HeapBytes += h.Value.Uint64()
		}
	}
	debug.ReadGCStats(&m.gc)
	p.Goroutines = runtime.NumGoroutine()
	nd, _ := ReadNetDev()
	var d NetDev
	if m.started {
		p.CPU = p.TotalCPU - m.cpu
		p.GCPause = (m.gc.PauseTotal - m.pause).Seconds()
		p.GCs = uint32(m.gc.NumGC - m.gcs)
		d = nd.sub(m.net)
	}
	m.started, m.cpu, m.pause, m.gcs, m.net = true, p.TotalCPU, m.gc.PauseTotal, m.gc.NumGC, nd
	return p, d
}

// Hostname is the machine's name ("" if unknown): processes on one host
// report the same network figures, which the monitor counts once.
func Hostname() string {
	h, _ := os.Hostname()
	return h
}
