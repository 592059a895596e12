// Package load is the hongbao load client: it holds one long-lived TCP
// connection per simulated user and sends "shake" requests open-loop at a
// global rate shared by every client process, in the classic client's rate
// scheme (package schedule).
//
// The design is sized for a million users over a few dozen processes: the
// connections live on a handful of gnet event loops (no goroutine per
// connection), a user costs about a hundred bytes of our own memory (no
// per-connection buffers: frames are decoded in place from gnet's inbound
// buffer), a small pool of goroutines dials at the Ramp pace, and a single
// scheduler goroutine hands each event loop one batch of due sends per
// millisecond. Latency is measured from each request's scheduled time, not
// from when it was actually written, so a slow client or server shows up as
// latency instead of silently lowering the rate (coordinated omission).
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/panjf2000/gnet/v2"

	"hongbao/internal/adminauth"
	"hongbao/internal/limits"
	"hongbao/internal/nodes"
	"hongbao/internal/obs"
	"hongbao/internal/procstat"
	"hongbao/internal/proto"
	"hongbao/internal/sample"
	"hongbao/internal/schedule"
)

// Options configures a load client. The zero value of an optional field
// picks the documented default.
type Options struct {
	Addr     string        // server address host:port (one node)
	Nodes    []string      // the nodes' addresses, node k at [k] (package nodes maps users to nodes); overrides Addr
	Total    int           // N: total users in the whole run (all client processes)
	From, To uint32        // this process simulates users From..To inclusive (1 <= From <= To <= Total); both 0 = all
	QPS      int           // global rate over all processes (this process sends its share)
	Ramp     int           // new connections per second (0 = as fast as possible)
	Duration time.Duration // how long to run after all connections are up (0 = until ctx done)
	Classic  bool          // speak classic only: bare user-id login, shakes; opens pushed 0x0004 with userid 0
	Secret   []byte        // token secret (not classic): the client mints its own tokens
	Timeout  time.Duration // a request unanswered this long counts as a timeout (default 5s)
	PingIdle time.Duration // ping a connection that has sent nothing this long, so that the server's idle timeout spares it (0 = DefaultPingIdle; negative = never)
	Admin    string        // admin HTTP listen address ("" = none); GET/POST /qps?qps=Q, GET /api/stats, /healthz
	Sources  []netip.Addr  // source addresses to spread connections over (nil = auto)
	Loops    int           // event loops (0 = GOMAXPROCS-1, at least 1: see defaultLoops)
	Tick     time.Duration // how often due requests are sent (0 = auto: see Client.tick); a request waits at most this long, and the wait counts in its latency
	Linger   time.Duration // after sending, the loop sleeps this long so that the answers are read in one wake-up (0 = auto: 600µs, at most half the tick; negative = never)
	Log      io.Writer     // one line per second (nil = none)
	Monitor  string        // push a sample every second to this `hongbao monitor` ("" = none)
	Name     string        // this process's name at the monitor (default "load-FROM-TO")
	// AdminToken is the bearer token /qps and pprof require (package
	// adminauth); required with Admin unless AdminAuthOff, which is allowed
	// only on a loopback Admin.
	AdminToken   string
	AdminAuthOff bool
	// OnSummary, if set, gets the summary when the load is over, before the
	// connections are closed (Run returns it too, after closing them).
	OnSummary func(*Summary)
}

// DefaultTimeout is the request timeout when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// DefaultPingIdle is Options.PingIdle's default: a third of the server's
// default idle timeout (5 minutes). A user is pinged between PingIdle and
// PingIdle plus a quarter of it after its last frame.
const DefaultPingIdle = 100 * time.Second

// Errors returned by New and Run.
var (
	// ErrOptions reports invalid Options.
	ErrOptions = errors.New("load: invalid options")
	// ErrFDLimit reports that this process may not open enough sockets for
	// its users (RLIMIT_NOFILE); run more client processes, each with a
	// smaller From..To range, or raise the limit.
	ErrFDLimit = limits.ErrTooFewFiles
	// ErrReused reports a second call to Run: a Client runs once.
	ErrReused = errors.New("load: Client already run")
)

// Tuning constants. They are not options because they only matter for
// throughput of the machinery, not for what a run measures.
const (
	dialers     = 32               // goroutines that dial and enroll connections
	dialTimeout = 10 * time.Second // one connect attempt
	tokenTTL    = time.Hour        // lifetime of minted login tokens (re-minted per attempt)
	backoffMin  = 100              // first reconnect delay, ms
	backoffMax  = 10_000           // reconnect delay cap, ms
	sweepEvery  = time.Second      // a timeout is counted between Timeout and Timeout+sweepEvery
	byeWait     = 5                // seconds a connection may stay open after the server's error frame before we close it
	fdReserve   = 64               // descriptors kept for listeners, pollers, files
	// portShare is the part of the ephemeral port range one source address
	// is given. Linux's connect() searches ports of one parity first, so
	// past half the range every connect scans a long way: from one address,
	// 13,000 connections took 0.7 s but 18,000 took 3.9 s (1.1 s from two
	// addresses), with a 28,232-port range.
	portShare = 0.45
)

// Phases of a run, as reported by Snapshot.Phase.
const (
	phaseIdle  = sample.PhaseIdle
	phaseRamp  = sample.PhaseRamp
	phaseLoad  = sample.PhaseLoad
	phaseDrain = sample.PhaseDrain
	phaseDone  = sample.PhaseDone
)

// Client is a load client. Create it with New, then call Run once. Stats,
// SetQPS and AdminAddr are safe from any goroutine.
type Client struct {
	o     Options
	log   *slog.Logger
	users []user // users From..To, user id at [id-From]
	cfg   config
	phase atomic.Value // phaseIdle, ...: what Stats reports

	rate    rate         // the global rate the sender follows (send.go)
	loops   loopSet      // the gnet client and our state per event loop (conn.go)
	connect connectState // dialing, the ramp and reconnects (dial.go)
	stats   stats        // counters outside the loops, histograms, seconds (stats.go)
	admin   admin        // the admin HTTP server (admin.go)

	ran    atomic.Bool
	closed atomic.Bool
}

// config is what New derives from the Options; nothing changes it after
// Run starts.
type config struct {
	baseRSS  int64 // resident bytes before any per-user state, for bytes per connection
	from, to uint32
	share    schedule.Share
	raddr    string
	raddrs   []string     // per node, when Options.Nodes is set
	nodeMap  nodes.Map    // users to raddrs
	dialers  []net.Dialer // one per source address
	sources  []netip.Addr
	timeout  time.Duration
	pingIdle uint16 // seconds; 0 = never
	loopsN   int
	histMax  int64 // µs: the latency histograms' upper bound
	// epochNs is the wall clock origin of the µs timestamps in user rings;
	// Run sets it before anything reads it.
	epochNs int64
}

// rate is the global rate in force.
type rate struct {
	qps atomic.Int64
	// changed wakes the sender when SetQPS changes the rate, so that it
	// can sleep until its next slot, however far, instead of polling.
	changed chan struct{}
}

// loopSet is the gnet client and our state for each of its event loops,
// in the order they were first seen (loop.idx).
type loopSet struct {
	cli *gnet.Client
	mu  sync.Mutex // serialises adding a loop
	all atomic.Pointer[[]*loop]
}

// connectState is the connecting side: the ramp's accounting, the users
// waiting to reconnect, and the queue the dialers take users from.
type connectState struct {
	rampLeft atomic.Int64 // users whose first attempt is not over
	rampDone chan struct{}
	stopping atomic.Bool // the run is ending: no more dials or reconnects
	retry    retryQueue
	q        chan *user
	lastLog  atomic.Int64 // the Unix second a dial error was last logged
}

// stats are the run's tallies besides the loops' counters, and the
// per-second roll-over's state.
type stats struct {
	glob      counters // events not tied to an event loop
	reasonsMu sync.Mutex
	reasons   map[string]uint64

	rollMu    sync.Mutex // serialises rollSecond, guards lastT
	lastT     int64      // the last second rolled
	histMu    sync.Mutex // guards cum, seconds, last
	cum       *hdrhistogram.Histogram
	secHist   *hdrhistogram.Histogram
	seconds   []Second
	last      Counts
	recordSec atomic.Bool
	mon       *monitorState // per-second samples to a monitor (observe.go)
}

// admin is the admin HTTP server, when Options.Admin is set.
type admin struct {
	ln   net.Listener
	srv  *http.Server
	once sync.Once
}

// New checks the options, resolves the server address, plans the source
// addresses, and opens the admin listener (so that AdminAddr is known before
// Run). A Client that is never Run should be closed with Close.
func New(o Options) (*Client, error) {
	if o.Total < 1 || uint64(o.Total) > uint64(^uint32(0)) {
		return nil, fmt.Errorf("%w: total users %d", ErrOptions, o.Total)
	}
	if o.From == 0 && o.To == 0 {
		o.From, o.To = 1, uint32(o.Total)
	}
	if o.From < 1 || o.From > o.To || uint64(o.To) > uint64(o.Total) {
		return nil, fmt.Errorf("%w: users %d..%d of %d", ErrOptions, o.From, o.To, o.Total)
	}
	if o.QPS < 0 || o.Ramp < 0 || o.Duration < 0 || o.Timeout < 0 || o.Loops < 0 || o.Tick < 0 {
		return nil, fmt.Errorf("%w: negative QPS, Ramp, Duration, Timeout, Loops or Tick", ErrOptions)
	}
	if !o.Classic && len(o.Secret) == 0 {
		return nil, fmt.Errorf("%w: a token secret is needed unless Classic", ErrOptions)
	}
	if err := checkAdmin(&o); err != nil {
		return nil, err
	}
	plan, err := schedule.New(uint32(o.Total))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	share, err := plan.Share(o.From, o.To)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	var raddrs []string
	var nmap nodes.Map
	if len(o.Nodes) > 0 {
		if nmap, err = nodes.New(uint32(o.Total), len(o.Nodes)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrOptions, err)
		}
		for _, a := range o.Nodes {
			na, err := net.ResolveTCPAddr("tcp", a)
			if err != nil {
				return nil, fmt.Errorf("load: resolve node address %q: %w", a, err)
			}
			raddrs = append(raddrs, na.String())
		}
		o.Addr = o.Nodes[nmap.Of(o.From)]
	}
	ta, err := net.ResolveTCPAddr("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("load: resolve server address %q: %w", o.Addr, err)
	}
	count := int(o.To - o.From + 1)
	base, _ := procstat.Read(0)
	loops := o.Loops
	if loops == 0 {
		loops = defaultLoops(runtime.GOMAXPROCS(0))
	}
	if err := checkFDs(count, loops); err != nil {
		return nil, err
	}
	c := &Client{
		o:     o,
		log:   slog.Default().With("component", "load"),
		users: make([]user, count),
		cfg: config{
			baseRSS: base.RSS,
			from:    o.From,
			to:      o.To,
			share:   share,
			raddr:   ta.String(),
			raddrs:  raddrs,
			nodeMap: nmap,
			timeout: o.Timeout,
			loopsN:  loops,
		},
		rate:    rate{changed: make(chan struct{}, 1)},
		connect: connectState{rampDone: make(chan struct{}), q: make(chan *user)},
		stats:   stats{reasons: make(map[string]uint64)},
	}
	if c.cfg.timeout == 0 {
		c.cfg.timeout = DefaultTimeout
	}
	switch {
	case o.PingIdle == 0:
		c.cfg.pingIdle = uint16(DefaultPingIdle / time.Second)
	case o.PingIdle > 0:
		c.cfg.pingIdle = uint16(min(max(o.PingIdle, time.Second), time.Hour) / time.Second)
	}
	for i := range c.users {
		c.users[i].id = o.From + uint32(i)
	}
	c.rate.qps.Store(int64(o.QPS))
	c.phase.Store(phaseIdle)
	c.loops.all.Store(new([]*loop))
	c.connect.retry.wake = make(chan struct{}, 1)
	c.connect.rampLeft.Store(int64(count))
	c.cfg.histMax = max(int64(2*c.cfg.timeout/time.Microsecond), int64(10*time.Second/time.Microsecond))
	c.stats.cum = newHist(c.cfg.histMax)
	c.stats.secHist = newHist(c.cfg.histMax)

	c.cfg.sources = o.Sources
	if c.cfg.sources == nil {
		c.cfg.sources = autoSources(count, ta)
	}
	c.cfg.dialers = makeDialers(c.cfg.sources)

	if o.Admin != "" {
		ln, err := net.Listen("tcp", o.Admin)
		if err != nil {
			return nil, fmt.Errorf("load: admin listen %s: %w", o.Admin, err)
		}
		c.admin.ln = ln
		c.admin.srv = &http.Server{Handler: c.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
		adminauth.WarnExposed(c.log, "load client admin", c.AdminAddr(), "/healthz, /metrics and /api/stats to anyone; /qps (the run's rate) and pprof to holders of the admin token")
	}
	return c, nil
}

// defaultLoops leaves one P free besides the event loops. A gnet loop keeps
// its P while it blocks in epoll_wait, so with as many loops as Ps the Go
// runtime has no P left to run the 1 ms scheduler and its timer until sysmon
// retakes one, which it does lazily when idle: measured on 2 cores, at 1,000
// requests/s, p99 of the send lag was 15 ms with 2 loops and 1.1 ms with 1.
func defaultLoops(procs int) int {
	return max(procs-1, 1)
}

func newHist(maxUS int64) *hdrhistogram.Histogram {
	return hdrhistogram.New(1, maxUS, 3)
}

// Close releases the admin listener of a Client that was never Run. Run
// closes it itself; Close after Run is a no-op.
func (c *Client) Close() error {
	c.closed.Store(true)
	if c.ran.Load() {
		return nil
	}
	var err error
	c.admin.once.Do(func() {
		if c.admin.ln != nil {
			err = c.admin.ln.Close()
		}
	})
	return err
}

// AdminAddr is the address the admin HTTP server listens on (useful when
// Options.Admin asked for port 0), or "" without one.
func (c *Client) AdminAddr() string {
	if c.admin.ln == nil {
		return ""
	}
	return c.admin.ln.Addr().String()
}

// SetQPS changes the global rate. Every process derives its windows from the
// clock, so the new rate takes effect at the next second boundary, when all
// processes that were told the same rate switch together.
func (c *Client) SetQPS(q int) {
	q = max(q, 0)
	if c.rate.qps.Swap(int64(q)) != int64(q) {
		select {
		case c.rate.changed <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// QPS is the current global rate.
func (c *Client) QPS() int { return int(c.rate.qps.Load()) }

// checkFDs fails early when the users cannot all hold a socket: a run that
// silently stalls at the descriptor limit would measure nothing useful.
// While enrolling, a connection briefly holds two descriptors (gnet
// duplicates it); each loop has an epoll and an event fd.
func checkFDs(conns, loops int) error {
	return limits.NeedFiles(conns+dialers+2*loops, "the load client")
}

// autoSources picks source addresses for a loopback server: one address
// while the connections fit in portShare of the ephemeral port range, else
// as many consecutive 127.0.0.x addresses as needed. For any other server
// the kernel chooses (nil).
func autoSources(conns int, server *net.TCPAddr) []netip.Addr {
	ip, ok := netip.AddrFromSlice(server.IP)
	if !ok || !ip.Unmap().Is4() || !ip.Unmap().IsLoopback() {
		return nil
	}
	lo, hi := portRange()
	per := max(int(float64(hi-lo+1)*portShare), 1)
	k := (conns + per - 1) / per
	return loopbackSources(k)
}

// loopbackSources returns 127.0.0.1, 127.0.0.2, ... (k addresses, skipping
// x.x.x.0 and x.x.x.255).
func loopbackSources(k int) []netip.Addr {
	out := make([]netip.Addr, 0, k)
	a := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	for len(out) < k {
		b := a.As4()
		if b[3] != 0 && b[3] != 255 {
			out = append(out, a)
		}
		a = a.Next()
	}
	return out
}

// portRange reads the kernel's ephemeral port range, with the Linux
// default when it cannot.
func portRange() (lo, hi int) {
	lo, hi, err := limits.PortRange()
	if err != nil {
		return 32768, 60999
	}
	return lo, hi
}

// Run connects every user (at the Ramp pace), waits until all are logged in
// or have failed a first attempt (or a ramp timeout passes), sends shakes
// for Duration, waits up to Timeout for answers still in flight, disconnects
// and returns the totals. Cancelling ctx ends the run early; Run still
// returns a Summary (with Interrupted set) and a nil error. Errors are
// returned only when the run cannot start.
func (c *Client) Run(ctx context.Context) (*Summary, error) {
	if c.closed.Load() || c.ran.Swap(true) {
		return nil, ErrReused
	}
	start := time.Now()
	c.cfg.epochNs = start.UnixNano()
	c.phase.Store(phaseRamp)
	c.startMonitor()
	defer c.stopMonitor()

	cli, err := gnet.NewClient(&handler{c: c},
		gnet.WithNumEventLoop(c.cfg.loopsN),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(obs.GnetLogger{L: c.log}),
	)
	if err != nil {
		c.closeAdmin()
		return nil, fmt.Errorf("load: gnet client: %w", err)
	}
	if err := cli.Start(); err != nil {
		c.closeAdmin()
		return nil, fmt.Errorf("load: start gnet client: %w", err)
	}
	c.loops.cli = cli

	if c.admin.srv != nil {
		go func() {
			if err := c.admin.srv.Serve(c.admin.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error("admin server stopped", "err", err)
			}
		}()
	}

	bg, stopBg := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.report(bg) })
	wg.Go(func() { c.feed(bg) })
	for range min(dialers, len(c.users)) {
		wg.Go(func() { c.dialLoop(bg) })
	}

	// Ramp.
	interrupted := false
	rampTimer := time.NewTimer(c.rampTimeout())
	select {
	case <-c.connect.rampDone:
	case <-rampTimer.C:
		c.log.Warn("ramp timeout: starting the load with the users connected so far",
			"connected", c.conns(), "users", len(c.users))
	case <-ctx.Done():
		interrupted = true
	}
	rampTimer.Stop()
	connectSeconds := time.Since(start).Seconds()
	connected := c.conns()

	// Load.
	var loadSeconds float64
	if !interrupted {
		c.phase.Store(phaseLoad)
		c.stats.recordSec.Store(true)
		loadStart := time.Now()
		stop := make(chan struct{})
		schedDone := make(chan struct{})
		go func() {
			defer close(schedDone)
			c.schedule(stop)
		}()
		var end <-chan time.Time
		if c.o.Duration > 0 {
			t := time.NewTimer(c.o.Duration)
			defer t.Stop()
			end = t.C
		}
		select {
		case <-end:
		case <-ctx.Done():
			interrupted = c.o.Duration > 0
		}
		close(stop)
		<-schedDone
		loadSeconds = time.Since(loadStart).Seconds()

		// Drain: give the answers in flight up to Timeout.
		c.phase.Store(phaseDrain)
		c.drain(ctx)
	}

	// Stop dialing before stopping the loops: an enrollment waits for its
	// loop, so the loops must outlive every dialer.
	c.connect.stopping.Store(true)
	stopBg()
	wg.Wait()
	// The summary is made (and handed to OnSummary) before the connections
	// are closed: nothing is in flight after the drain, and closing tens of
	// thousands of connections on a busy box can take longer than a
	// supervisor waits (a million-user run lost every client's summary so).
	c.rollSecond(0)
	sum := c.summary(connected, connectSeconds, loadSeconds, interrupted)
	if c.o.OnSummary != nil {
		c.o.OnSummary(sum)
	}
	if err := cli.Stop(); err != nil {
		c.log.Warn("stopping gnet client", "err", err)
	}
	c.phase.Store(phaseDone)
	c.closeAdmin()
	return sum, nil
}

// rampTimeout bounds the wait for the first attempt of every user: the time
// the Ramp pace needs, plus slack for slow logins.
func (c *Client) rampTimeout() time.Duration {
	n := len(c.users)
	if c.o.Ramp > 0 {
		return time.Duration(n)*time.Second/time.Duration(c.o.Ramp) + 10*time.Second + c.cfg.timeout
	}
	return 10*time.Second + c.cfg.timeout + time.Duration(n)*time.Millisecond
}

// drain waits until no request is in flight, Timeout passes or ctx is done.
func (c *Client) drain(ctx context.Context) {
	deadline := time.Now().Add(c.cfg.timeout + sweepEvery)
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	for c.inFlight() > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

func (c *Client) closeAdmin() {
	if c.admin.srv == nil {
		return
	}
	c.admin.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.admin.srv.Shutdown(ctx); err != nil {
			c.log.Warn("admin shutdown", "err", err)
		}
		// Shutdown closes the listener only if Serve started; make sure.
		_ = c.admin.ln.Close()
	})
}

// resolveFirst records that u's first connection attempt is over (logged in
// or failed); the ramp ends when every user's is. Only u's owner calls it.
func (c *Client) resolveFirst(u *user) {
	st := u.state.Load()
	if st&flTried != 0 {
		return
	}
	u.state.Store(st | flTried)
	if c.connect.rampLeft.Add(-1) == 0 {
		close(c.connect.rampDone)
	}
}

// recordReason counts a connection closed by the server with reason r.
func (c *Client) recordReason(r proto.Reason) {
	c.stats.reasonsMu.Lock()
	c.stats.reasons[r.String()]++
	c.stats.reasonsMu.Unlock()
}

func (c *Client) reasonsCopy() map[string]uint64 {
	c.stats.reasonsMu.Lock()
	defer c.stats.reasonsMu.Unlock()
	m := make(map[string]uint64, len(c.stats.reasons))
	for k, v := range c.stats.reasons {
		m[k] = v
	}
	return m
}
