package ledger

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Throughput is a measured run of durable appends.
type Throughput struct {
	Concurrency   int     `json:"concurrency"`
	Seconds       float64 `json:"seconds"`
	Records       uint64  `json:"records"`
	Batches       uint64  `json:"batches"`
	PerSecond     float64 `json:"durable_records_per_s"`
	RecordsPerFS  float64 `json:"records_per_fsync"`
	P50CommitUS   float64 `json:"p50_commit_us"`
	P99CommitUS   float64 `json:"p99_commit_us"`
	MaxCommitUS   float64 `json:"max_commit_us"`
	FsyncsPerSec  float64 `json:"fsyncs_per_s"`
	BytesPerRecrd float64 `json:"bytes_per_record"`
}

// Measure appends grant records from conc concurrent writers, each waiting
// for its record to be durable before the next (as a request waits for its
// answer), for d, and reports durable records per second and the commit
// latency (append to durable) percentiles.
func Measure(l *Log, conc int, d time.Duration) Throughput {
	var (
		stop  atomic.Bool
		wg    sync.WaitGroup
		mu    sync.Mutex
		lats  []time.Duration
		total atomic.Uint64
	)
	before := l.Stats()
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ch := make(chan struct{}, 1)
			done := DoneFunc(func(*Record, error) { ch <- struct{}{} })
			mine := make([]time.Duration, 0, 1<<16)
			r := Record{Kind: KindGrant, Packet: uint32(w), User: uint32(w), Amount: 7, Remaining: 100, SharesLeft: 3, Balance: 7}
			for !stop.Load() {
				t0 := time.Now()
				r.Time = t0.UnixMilli()
				l.Append(&r, done)
				<-ch
				mine = append(mine, time.Since(t0))
			}
			total.Add(uint64(len(mine)))
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}(w)
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	el := time.Since(start).Seconds()
	after := l.Stats()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	pct := func(q float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return float64(lats[min(len(lats)-1, int(q*float64(len(lats))))].Microseconds())
	}
	t := Throughput{Concurrency: conc, Seconds: el, Records: total.Load(), Batches: after.Batches - before.Batches,
		P50CommitUS: pct(0.50), P99CommitUS: pct(0.99), MaxCommitUS: pct(1)}
	t.PerSecond = float64(t.Records) / el
	t.FsyncsPerSec = float64(t.Batches) / el
	if t.Batches > 0 {
		t.RecordsPerFS = float64(t.Records) / float64(t.Batches)
	}
	if t.Records > 0 {
		t.BytesPerRecrd = float64(after.Bytes-before.Bytes) / float64(t.Records)
	}
	return t
}
