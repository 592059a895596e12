package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/client"
	"hongbao/internal/ledger"
	"hongbao/internal/proto"
	"hongbao/internal/server"
)

// LedgerOptions of `hongbao bench-ledger`.
type LedgerOptions struct {
	Dir         string        // where the ledgers go
	Concurrency int           // writers waiting for durable grants
	Duration    time.Duration // per measurement
	Conns       int           // shake connections
	Window      int           // shakes in flight per connection
	Log         io.Writer
}

// ShakeRun is one shake throughput measurement.
type ShakeRun struct {
	Ledger      bool    `json:"ledger"`
	ShakesPerS  float64 `json:"shakes_per_s"`
	GotPerS     float64 `json:"got_per_s"`
	GotFraction float64 `json:"got_fraction"`
	// P99US is the 99th percentile of the time from sending a window of
	// shakes to reading its last answer: an upper bound of a shake's
	// latency, commit included.
	P99US   float64 `json:"p99_window_us"`
	AuditOK *bool   `json:"audit_ok,omitempty"`
}

// LedgerReport is printed as JSON.
type LedgerReport struct {
	Fsync        bool              `json:"fsync"`
	Grants       ledger.Throughput `json:"durable_grants"`
	TargetPerS   float64           `json:"target_grants_per_s"`
	TargetP99US  float64           `json:"target_p99_commit_us"`
	MeetsTarget  bool              `json:"meets_target"`
	ShakeOff     ShakeRun          `json:"shake_ledger_off"`
	ShakeOn      ShakeRun          `json:"shake_ledger_on"`
	ShakeOnOff   float64           `json:"shake_throughput_ratio_on_over_off"`
	GotOnOff     float64           `json:"got_throughput_ratio_on_over_off"`
	Verdict      string            `json:"verdict"`
	LedgerFileMB float64           `json:"ledger_file_mb"`
}

// RunLedger measures durable grants per second with fsync on, then shake
// throughput with the ledger off and on, in one run.
func RunLedger(ctx context.Context, o LedgerOptions) (*LedgerReport, error) {
	logf := func(f string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, f+"\n", a...)
		}
	}
	rep := &LedgerReport{Fsync: true, TargetPerS: 50000, TargetP99US: 10000}
	gdir, err := os.MkdirTemp(o.Dir, "grants-")
	if err != nil {
		return nil, err
	}
	l, _, err := ledger.Open(gdir)
	if err != nil {
		return nil, err
	}
	logf("durable grants: %d writers for %v", o.Concurrency, o.Duration)
	rep.Grants = ledger.Measure(l, o.Concurrency, o.Duration)
	rep.LedgerFileMB = float64(l.Stats().Bytes) / 1e6
	l.Close()
	os.RemoveAll(gdir)
	rep.MeetsTarget = rep.Grants.PerSecond >= rep.TargetPerS && rep.Grants.P99CommitUS <= rep.TargetP99US
	logf("  %.0f grants/s, p99 %.0f us, %.1f records per fsync", rep.Grants.PerSecond, rep.Grants.P99CommitUS, rep.Grants.RecordsPerFS)

	for _, on := range []bool{false, true} {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		r, err := shakeRun(ctx, o, on)
		if err != nil {
			return rep, err
		}
		logf("  shakes with ledger=%v: %.0f/s, got %.0f/s, p99 window %.0f us", on, r.ShakesPerS, r.GotPerS, r.P99US)
		if on {
			rep.ShakeOn = r
		} else {
			rep.ShakeOff = r
		}
	}
	if rep.ShakeOff.ShakesPerS > 0 {
		rep.ShakeOnOff = rep.ShakeOn.ShakesPerS / rep.ShakeOff.ShakesPerS
	}
	if rep.ShakeOff.GotPerS > 0 {
		rep.GotOnOff = rep.ShakeOn.GotPerS / rep.ShakeOff.GotPerS
	}
	rep.Verdict = fmt.Sprintf("%.0f durable grants/s at p99 %.1f ms (target >= %.0f/s, p99 <= %.0f ms: %v); over TCP %.0f durable shake grants/s (p99 window %.1f ms); shakes with the ledger at %.2f of without",
		rep.Grants.PerSecond, rep.Grants.P99CommitUS/1000, rep.TargetPerS, rep.TargetP99US/1000, rep.MeetsTarget, rep.ShakeOn.GotPerS, rep.ShakeOn.P99US/1000, rep.ShakeOnOff)
	return rep, nil
}

// shakeRun starts a server in this process (ledger on or off) with a
// campaign issuing far more packets than are taken, so most shakes get
// one (a durable grant with the ledger), and drives it from Conns pipelined
// connections.
func shakeRun(ctx context.Context, o LedgerOptions, withLedger bool) (ShakeRun, error) {
	secret := []byte("bench-ledger")
	so := server.Options{Listen: "127.0.0.1:0", Secret: secret, Budget: 1 << 30, Sets: 64,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if withLedger {
		d, err := os.MkdirTemp(o.Dir, "shake-")
		if err != nil {
			return ShakeRun{}, err
		}
		defer os.RemoveAll(d)
		so.DataDir = d
	}
	s, err := server.New(so)
	if err != nil {
		return ShakeRun{}, err
	}
	if err := s.Start(ctx); err != nil {
		return ShakeRun{}, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(sctx)
	}()
	signer, err := auth.NewSigner(secret)
	if err != nil {
		return ShakeRun{}, err
	}
	conns := make([]*client.Conn, o.Conns)
	for i := range conns {
		c, err := client.Dial(s.Addr())
		if err != nil {
			return ShakeRun{}, err
		}
		defer c.Close()
		u := uint32(i + 1)
		if err := c.LoginToken(u, signer.Mint(u, time.Now().Add(time.Hour))); err != nil {
			return ShakeRun{}, err
		}
		conns[i] = c
	}
	// Issue packets well ahead of the shakes so the SETs never run dry.
	if _, err := s.StartCampaign(server.CampaignSpec{Count: 1 << 30, Rate: 200000, Min: 1, Max: 100}); err != nil {
		return ShakeRun{}, err
	}
	time.Sleep(500 * time.Millisecond)
	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		latMu     sync.Mutex
		lats      []time.Duration
		shakes    atomic.Uint64
		got       atomic.Uint64
		firstErr  error
		errOnce   sync.Once
		startTime = time.Now()
	)
	for _, c := range conns {
		wg.Add(1)
		go func(c *client.Conn) {
			defer wg.Done()
			var n, g uint64
			var mine []time.Duration
			defer func() {
				shakes.Add(n)
				got.Add(g)
				latMu.Lock()
				lats = append(lats, mine...)
				latMu.Unlock()
			}()
			for !stop.Load() {
				t0 := time.Now()
				for i := 0; i < o.Window; i++ {
					if err := c.SendShake(); err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
				}
				for i := 0; i < o.Window; i++ {
					r, err := c.ReadShake()
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
					n++
					if r.Result == proto.ResultGot {
						g++
					}
				}
				mine = append(mine, time.Since(t0))
			}
		}(c)
	}
	select {
	case <-time.After(o.Duration):
	case <-ctx.Done():
	}
	stop.Store(true)
	wg.Wait()
	el := time.Since(startTime).Seconds()
	if firstErr != nil {
		return ShakeRun{}, firstErr
	}
	r := ShakeRun{Ledger: withLedger, ShakesPerS: float64(shakes.Load()) / el, GotPerS: float64(got.Load()) / el}
	if shakes.Load() > 0 {
		r.GotFraction = float64(got.Load()) / float64(shakes.Load())
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		r.P99US = float64(lats[min(len(lats)-1, len(lats)*99/100)].Microseconds())
	}
	if withLedger {
		a, err := s.Audit()
		if err != nil {
			return r, err
		}
		r.AuditOK = &a.OK
	}
	return r, nil
}
