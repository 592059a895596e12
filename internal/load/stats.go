package load

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// counters are the live tallies of one event loop (or of the client, for
// events outside any loop). Each has a single writer most of the time, so
// the atomic adds are uncontended; readers sum over all loops.
type counters struct {
	sent, answered, got, none, taken, overloaded, amount atomic.Uint64
	errors, timeouts, late, skipped, pushes, opens       atomic.Uint64
	openedAmount, disconnects, reconnects, logins        atomic.Uint64
	dialErrors, afterError, pings                        atomic.Uint64
	conns, inflight                                      atomic.Int64
}

// addTo adds the counters to t.
func (k *counters) addTo(t *Counts) {
	t.Sent += k.sent.Load()
	t.Answered += k.answered.Load()
	t.Got += k.got.Load()
	t.None += k.none.Load()
	t.AllTaken += k.taken.Load()
	t.Overloaded += k.overloaded.Load()
	t.Amount += k.amount.Load()
	t.Errors += k.errors.Load()
	t.Timeouts += k.timeouts.Load()
	t.Late += k.late.Load()
	t.SkippedOffline += k.skipped.Load()
	t.Pushes += k.pushes.Load()
	t.Opens += k.opens.Load()
	t.OpenedAmount += k.openedAmount.Load()
	t.Disconnects += k.disconnects.Load()
	t.Reconnects += k.reconnects.Load()
	t.Logins += k.logins.Load()
	t.DialErrors += k.dialErrors.Load()
	t.AfterError += k.afterError.Load()
	t.Pings += k.pings.Load()
}

// Counts are the totals of a run (or of one second, as differences).
//
// Every request sent ends as exactly one of: answered in time (Answered,
// with its latency recorded), or a timeout (Timeouts: unanswered after
// Timeout, still in flight on a connection that dropped or when the run
// stopped, or given up because the user had too many in flight). A timed
// out request whose answer comes later counts in Late. The result tallies
// (Got, None, AllTaken, Overloaded, Amount) count every answer, in time or
// late, so that they match what the server granted.
type Counts struct {
	Sent           uint64 `json:"sent"`
	Answered       uint64 `json:"answered"`
	Got            uint64 `json:"got"`
	None           uint64 `json:"none"`
	AllTaken       uint64 `json:"all_taken"`
	Overloaded     uint64 `json:"overloaded"`
	Amount         uint64 `json:"amount"` // sum of the amounts got, cents
	Errors         uint64 `json:"errors"` // dial and login failures, error frames, protocol errors, unexpected results
	Timeouts       uint64 `json:"timeouts"`
	Late           uint64 `json:"late"`            // answers to requests already counted as timeouts
	SkippedOffline uint64 `json:"skipped_offline"` // slots whose user was not logged in: not sent
	Disconnects    uint64 `json:"disconnects"`     // connections lost during the run (not counting our own close at the end)
	Reconnects     uint64 `json:"reconnects"`      // logins after a lost connection
	Pushes         uint64 `json:"pushes"`          // group packets pushed to us (CmdPush or CmdClassicPush)
	Opens          uint64 `json:"opens"`           // open responses (CmdOpenResp or CmdClassicOpenR)
	OpenedAmount   uint64 `json:"opened_amount"`   // sum of the amounts received by opening, cents
	Logins         uint64 `json:"logins"`          // successful logins, first ones and reconnects
	DialErrors     uint64 `json:"dial_errors"`     // failed connects (also in Errors)
	// AfterError counts frames the server sent on a connection after its
	// error frame (also in Errors): the server closes right after that
	// frame, so a correct server sends none.
	AfterError uint64 `json:"after_error"`
	Pings      uint64 `json:"pings"` // keep-alive pings sent to connections silent for PingIdle
}

// sub returns t - o, field by field.
func (t Counts) sub(o Counts) Counts {
	return Counts{
		Sent: t.Sent - o.Sent, Answered: t.Answered - o.Answered, Got: t.Got - o.Got,
		None: t.None - o.None, AllTaken: t.AllTaken - o.AllTaken, Overloaded: t.Overloaded - o.Overloaded,
		Amount: t.Amount - o.Amount, Errors: t.Errors - o.Errors, Timeouts: t.Timeouts - o.Timeouts,
		Late: t.Late - o.Late, SkippedOffline: t.SkippedOffline - o.SkippedOffline,
		Disconnects: t.Disconnects - o.Disconnects, Reconnects: t.Reconnects - o.Reconnects,
		Pushes: t.Pushes - o.Pushes, Opens: t.Opens - o.Opens, OpenedAmount: t.OpenedAmount - o.OpenedAmount,
		Logins: t.Logins - o.Logins, DialErrors: t.DialErrors - o.DialErrors,
		AfterError: t.AfterError - o.AfterError, Pings: t.Pings - o.Pings,
	}
}

// Latency summarises latencies in µs, measured from each request's
// scheduled time to the arrival of its answer. The values are whole µs
// (HdrHistogram, 3 significant digits); they are floats so that reports can
// scale them without conversions.
type Latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		P50:  float64(h.ValueAtQuantile(50)),
		P99:  float64(h.ValueAtQuantile(99)),
		P999: float64(h.ValueAtQuantile(99.9)),
		Max:  float64(h.Max()),
	}
}

// Second is one second of the load phase (by the clock every process
// shares, so seconds from several processes can be merged by T).
type Second struct {
	T        int64  `json:"t"` // Unix second
	Sent     uint64 `json:"sent"`
	Answered uint64 `json:"answered"`
	Got      uint64 `json:"got"`
	Timeouts uint64 `json:"timeouts"`
	P50US    int64  `json:"p50_us"`
	P99US    int64  `json:"p99_us"`
}

// Snapshot is the live state of a run (Client.Stats, GET /api/stats).
type Snapshot struct {
	Time     time.Time `json:"time"`
	Phase    string    `json:"phase"` // idle, ramp, load, drain, done
	Users    int       `json:"users"`
	Conns    int64     `json:"conns"` // logged in now
	InFlight int64     `json:"in_flight"`
	QPS      int       `json:"qps"` // global rate in force
	Counts
	ClosedByServer map[string]uint64 `json:"closed_by_server"`
	LatencyUS      Latency           `json:"latency_us"` // over the seconds completed so far
}

// Summary is the result of Run; its JSON is what `hongbao load --json`
// prints for demo and bench.
type Summary struct {
	Users          int     `json:"users"`
	Connected      int     `json:"connected"` // logged in when the ramp ended
	ConnectSeconds float64 `json:"connect_seconds"`
	Counts
	ClosedByServer map[string]uint64 `json:"closed_by_server"` // reason text -> connections
	AchievedQPS    float64           `json:"achieved_qps"`     // sent / load seconds, this process
	LoadSeconds    float64           `json:"load_seconds"`
	LatencyUS      Latency           `json:"latency_us"`
	Seconds        []Second          `json:"seconds"`
	Interrupted    bool              `json:"interrupted"` // ctx ended the run before Duration
	// RSSBaseBytes is the process's resident memory before it built any
	// per-user state: what the process costs with no connection.
	RSSBaseBytes int64 `json:"rss_base_bytes"`
}

// totals sums all counters.
func (c *Client) totals() Counts {
	var t Counts
	c.stats.glob.addTo(&t)
	for _, l := range *c.loops.all.Load() {
		l.addTo(&t)
	}
	return t
}

// conns is the number of users logged in now.
func (c *Client) conns() int {
	n := c.stats.glob.conns.Load()
	for _, l := range *c.loops.all.Load() {
		n += l.conns.Load()
	}
	return int(n)
}

// inFlight is the number of requests sent and neither answered nor timed
// out.
func (c *Client) inFlight() int64 {
	n := c.stats.glob.inflight.Load()
	for _, l := range *c.loops.all.Load() {
		n += l.inflight.Load()
	}
	return n
}

// Stats returns the live totals; safe from any goroutine.
func (c *Client) Stats() Snapshot {
	s := Snapshot{
		Time:           time.Now(),
		Phase:          c.phase.Load().(string),
		Users:          len(c.users),
		Conns:          int64(c.conns()),
		InFlight:       c.inFlight(),
		QPS:            c.QPS(),
		Counts:         c.totals(),
		ClosedByServer: c.reasonsCopy(),
	}
	c.stats.histMu.Lock()
	s.LatencyUS = latencyOf(c.stats.cum)
	c.stats.histMu.Unlock()
	return s
}

// report runs the per-second roll-over (aligned to the clock's seconds) and
// queues the timeout sweeps, until ctx is done.
func (c *Client) report(ctx context.Context) {
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	next := time.Now().Truncate(time.Second).Add(time.Second)
	sec := time.NewTimer(time.Until(next) + 2*time.Millisecond)
	defer sec.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			for _, l := range *c.loops.all.Load() {
				if l.sweeping.CompareAndSwap(false, true) {
					if err := l.el.Execute(ctx, &l.sweep); err != nil {
						l.sweeping.Store(false)
					}
				}
			}
		case <-sec.C:
			c.rollSecond(next.Unix() - 1)
			next = time.Now().Truncate(time.Second).Add(time.Second)
			sec.Reset(time.Until(next) + 2*time.Millisecond)
		}
	}
}

// rollSecond closes second t: it moves each loop's latency histogram into
// the second's and the cumulative one, records the second's counts (during
// the load), and writes the log line. With t = 0 it closes the partial
// interval since the last roll (at the end of the run), labelled as the
// second that follows the last one closed.
func (c *Client) rollSecond(t int64) {
	c.stats.rollMu.Lock()
	defer c.stats.rollMu.Unlock()
	switch {
	case t == 0 && c.stats.lastT != 0:
		t = c.stats.lastT + 1
	case t == 0:
		t = time.Now().Unix()
	}
	c.stats.lastT = t
	c.stats.secHist.Reset()
	for _, l := range *c.loops.all.Load() {
		l.mu.Lock()
		l.hist, l.spare = l.spare, l.hist
		l.mu.Unlock()
		c.stats.secHist.Merge(l.spare)
		l.spare.Reset()
	}
	tot := c.totals()
	c.stats.histMu.Lock()
	d := tot.sub(c.stats.last)
	c.stats.last = tot
	c.stats.cum.Merge(c.stats.secHist)
	lat := latencyOf(c.stats.secHist)
	if c.stats.recordSec.Load() {
		c.stats.seconds = append(c.stats.seconds, Second{
			T: t, Sent: d.Sent, Answered: d.Answered, Got: d.Got, Timeouts: d.Timeouts,
			P50US: int64(lat.P50), P99US: int64(lat.P99),
		})
	}
	c.stats.histMu.Unlock()
	c.monitorSecond(t, tot, c.stats.secHist)
	if c.o.Log != nil {
		_, _ = fmt.Fprintf(c.o.Log,
			"t=%d conns=%d sent=%d answered=%d got=%d none=%d taken=%d overload=%d err=%d timeout=%d p50=%.2fms p99=%.2fms\n",
			t, c.conns(), d.Sent, d.Answered, d.Got, d.None, d.AllTaken, d.Overloaded, d.Errors, d.Timeouts,
			lat.P50/1000, lat.P99/1000)
	}
}

// summary builds the result of the run.
func (c *Client) summary(connected int, connectSeconds, loadSeconds float64, interrupted bool) *Summary {
	s := &Summary{
		Users:          len(c.users),
		Connected:      connected,
		ConnectSeconds: connectSeconds,
		Counts:         c.totals(),
		ClosedByServer: c.reasonsCopy(),
		LoadSeconds:    loadSeconds,
		Interrupted:    interrupted,
		RSSBaseBytes:   c.cfg.baseRSS,
	}
	if loadSeconds > 0 {
		s.AchievedQPS = float64(s.Sent) / loadSeconds
	}
	c.stats.histMu.Lock()
	s.LatencyUS = latencyOf(c.stats.cum)
	s.Seconds = append([]Second{}, c.stats.seconds...)
	c.stats.histMu.Unlock()
	return s
}
