// Package server is the hongbao access server: it holds every user's
// long-lived TCP connection on a few epoll event loops (gnet), partitions
// users into independent SETs, answers their requests, and serves an admin
// HTTP API.
//
// The money (balances, packets, campaigns, generators, the audit) is the
// engine of package money; the server holds the connections, sessions,
// frames, deadlines and admission, and calls it.
//
// The files split by concern: options.go (configuration), conn.go (the
// per-connection event handlers and the request path), deadline.go (login,
// frame and idle deadlines), outbox.go (frames from other goroutines),
// accept.go (admission at the open-file limit), set.go (the SETs'
// sessions), money.go (the engine's wiring), group.go (delivery of the
// engine's pushes, refunds and durable answers), stats.go (counters and
// /api/stats), metrics.go (the metrics table), observe.go (the monitor's
// samples and /metrics), admin.go and adminguard.go (HTTP).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"hongbao/internal/auth"
	"hongbao/internal/ledger"
	"hongbao/internal/money"
	"hongbao/internal/obs"
	"hongbao/internal/pace"
)

// Server is one access server process's engine.
type Server struct {
	opts  Options
	sets  []set
	money *money.Engine
	led   *ledger.Log // nil without a ledger
	loops []*loop

	loopMu   sync.Mutex
	loopOf   map[gnet.EventLoop]*loop
	nextLoop int

	h        *handler
	eng      gnet.Engine
	addr     string
	booted   chan struct{}
	runDone  chan struct{}
	runErr   error
	sec      atomic.Uint64 // coarse clock, Unix seconds, for frame stamps and admission
	draining atomic.Bool
	timeouts timeouts  // the deadlines, in whole seconds
	fdLimit  int       // RLIMIT_NOFILE when the server was made
	adm      admission // connections admitted at the open-file limit (accept.go)
	rater    rater
	mon      *monitorState // per-second samples to a monitor (observe.go)

	admin   *http.Server
	adminLn net.Listener

	stopTick chan struct{}
	kickTick chan struct{} // a campaign started: issue now, not at the idle tick
	tickDone chan struct{}
}

// loop is the state owned by one event loop: its scratch buffers, token
// verifier, admission window, deadline wheel and counters. Nothing here is
// touched by another loop, so the request path shares no state between
// loops.
type loop struct {
	s        *Server
	el       gnet.EventLoop // set (under Server.loopMu) by the loop's first connection
	out      []byte
	flushBuf []byte // outbox.go
	errBuf   []byte
	signer   *auth.Signer
	budget   int    // admitted shakes per second on this loop
	admitSec uint64 // second of the current admission window
	admitted int
	wheel    wheel
	// lingering are connections that were told goodbye and are closed
	// once gnet has written out what it buffers for them.
	lingering []*session
	tmp       []*session
	sweeping  atomic.Bool // a sweep task is queued
	counters  counters
}

// New validates opts and prepares a server; Start runs it.
func New(opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	n := opts.Loops
	if n == 0 {
		// One P is left to the ticker, the ledger's writer and the admin
		// API: a gnet loop keeps its P while it waits in epoll_wait, and
		// with a loop on every P those goroutines wait for sysmon to take
		// one back. On 2 cores one loop also cost less CPU per request
		// (fewer wake-ups) than two.
		n = max(runtime.GOMAXPROCS(0)-1, 1)
	}
	opts.Loops = n
	fdLimit, err := openFileLimit()
	if err != nil {
		return nil, err
	}
	if err := opts.setMaxConns(fdLimit); err != nil {
		return nil, err
	}
	s := &Server{
		opts:     opts,
		fdLimit:  fdLimit,
		sets:     make([]set, opts.Sets),
		loopOf:   make(map[gnet.EventLoop]*loop, n),
		booted:   make(chan struct{}),
		runDone:  make(chan struct{}),
		stopTick: make(chan struct{}),
		kickTick: make(chan struct{}, 1),
		tickDone: make(chan struct{}),
	}
	for i := range s.sets {
		s.sets[i].sessions = make(map[uint32]*session)
	}
	s.h = &handler{s: s}
	cfg := money.Config{Sets: opts.Sets, Limits: opts.limits(), Clock: clock{s}, Sink: sink{s}, Logger: opts.Logger,
		Online: func(i int) int64 { return s.sets[i].online.Load() }}
	if opts.DataDir != "" {
		t0 := time.Now()
		led, st, err := ledger.Open(opts.DataDir)
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		if t := led.TornTail(); t != nil {
			opts.Logger.Warn("ledger: cut off a torn tail (an interrupted last write)", "file", led.Path(), "offset", t.Offset,
				"bytes", t.Length, "reason", t.Reason, "kept_in", t.SideFile)
		}
		s.led, cfg.Ledger = led, led
		s.money = money.New(cfg)
		s.money.Restore(st)
		opts.Logger.Info("ledger recovered", "dir", opts.DataDir, "records", st.Records, "packets", st.Funded, "live", len(st.Packets),
			"campaigns", len(st.Campaigns), "users", len(st.Balances), "took", time.Since(t0).Round(time.Millisecond))
		// The replayed state is garbage now: give its memory back to the
		// system rather than keep the replay's peak for the process's life.
		debug.FreeOSMemory()
	} else {
		s.money = money.New(cfg)
	}
	s.timeouts = timeouts{login: seconds(opts.LoginTimeout), frame: seconds(opts.FrameTimeout), idle: seconds(opts.IdleTimeout)}
	start := uint32(opts.Now().Unix())
	per := (opts.Budget + n - 1) / n
	for i := 0; i < n; i++ {
		l := &loop{s: s, out: make([]byte, 0, 4096), budget: per}
		l.wheel.at = start
		l.wheel.next.Store(noDeadline)
		if len(opts.Secret) > 0 {
			signer, err := auth.NewSigner(opts.Secret)
			if err != nil {
				return nil, err
			}
			signer.SetMaxTTL(opts.MaxTokenTTL)
			l.signer = signer
		}
		s.loops = append(s.loops, l)
	}
	s.sec.Store(uint64(opts.Now().Unix()))
	return s, nil
}

// Start listens and serves in the background until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	s.startMonitor()
	if s.opts.Admin != "" {
		ln, err := net.Listen("tcp", s.opts.Admin)
		if err != nil {
			return fmt.Errorf("admin listen %s: %w", s.opts.Admin, err)
		}
		s.adminLn = ln
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
		ln = newLimitListener(ln, maxAdminConns) // its descriptors come out of the reserve
		go s.admin.Serve(ln)
	}
	listen, err := claimAddr(s.opts.Listen)
	if err != nil {
		s.closeAdmin()
		if s.led != nil {
			s.led.Close()
		}
		return fmt.Errorf("listen %s: %w", s.opts.Listen, err)
	}
	go func() {
		defer close(s.runDone)
		s.runErr = gnet.Run(s.h, "tcp://"+listen,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.opts.Loops),
			gnet.WithReusePort(true), // each loop accepts and runs OnOpen in turn (accept.go)
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			gnet.WithLogger(obs.GnetLogger{L: s.opts.Logger}),
		)
		select {
		case <-s.booted:
			if !s.draining.Load() {
				// gnet.Run returns nil after an accept error too: its own ERROR lines say why.
				s.opts.Logger.Error("the client listener stopped: the node accepts no connections until it is restarted",
					"err", s.runErr, "open_file_limit", s.fdLimit)
			}
		default:
		}
	}()
	select {
	case <-s.booted:
	case <-s.runDone:
		s.closeAdmin()
		if s.led != nil {
			s.led.Close()
		}
		return fmt.Errorf("listen %s: %w", s.opts.Listen, s.runErr)
	case <-ctx.Done():
		return ctx.Err()
	}
	go s.ticker()
	s.warnExposed()
	s.opts.Logger.Info("server listening", "addr", s.addr, "admin", s.AdminAddr(), "sets", s.opts.Sets,
		"loops", s.opts.Loops, "budget", s.opts.Budget, "classic", s.opts.AllowClassic)
	return nil
}

// Addr is the address clients connect to (the real port when :0 was asked).
func (s *Server) Addr() string { return s.addr }

// AdminAddr is the admin HTTP address, or "" when there is none.
func (s *Server) AdminAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// ticker drives the coarse clock, the campaign issuer, the expiry of group
// packets and the per-second rates. It wakes as often as the campaigns'
// pacing needs (pace.Tick of their total rate: half the interval between
// packets, within 5-100 ms), and just after each second begins (when no
// campaign runs; a started campaign kicks it).
func (s *Server) ticker() {
	defer close(s.tickDone)
	t := time.NewTimer(pace.MinTick)
	defer t.Stop()
	lastSec := s.sec.Load()
	for {
		select {
		case <-s.stopTick:
			return
		case <-t.C:
		case <-s.kickTick:
		}
		now := s.opts.Now()
		sec := uint64(now.Unix())
		s.sec.Store(sec)
		rate := s.money.Issue(now)
		s.money.Expire(now)
		if sec != lastSec {
			lastSec = sec
			if s.timeouts.any() {
				s.sweep(uint32(sec), false)
			}
			tot, _ := s.totals()
			s.rater.tick(now, tot)
			s.monitorTick(now.Unix() - 1)
		}
		next := time.Second - time.Duration(now.Nanosecond()) + time.Millisecond
		t.Reset(min(pace.Tick(rate), next))
	}
}

// Shutdown stops the server gracefully: new connections are told goodbye
// at once; every connection gets the answers to every request it sent
// that the server read (those waiting for the ledger too), then exactly one
// error frame "server shutting down", then the close; nothing is written
// after that frame. Then the event loops stop. It returns when all is
// closed or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.draining.CompareAndSwap(false, true) {
		<-s.runDone
		return nil
	}
	close(s.stopTick)
	<-s.tickDone
	s.closeAdmin()
	// Each loop serves its connections once more: those with nothing
	// waiting get their goodbye now, the others when their last answer
	// comes back from the ledger (outbox.go). A connection that opens from
	// now on is told goodbye by OnOpen.
	for _, l := range s.knownLoops() {
		_ = l.el.Execute(ctx, (*drainer)(l))
	}
	// Wait for the goodbyes to be flushed and the connections closed; one
	// that does not read its answers is closed when the loops stop.
	deadline := time.Now().Add(drainWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, conns := s.totals(); conns == 0 {
			break
		}
		s.sweep(0, true) // closes the connections whose goodbye is flushed
		time.Sleep(5 * time.Millisecond)
	}
	err := s.eng.Stop(ctx)
	<-s.runDone
	s.money.StopGenerators()
	if s.led != nil {
		if e := s.led.Close(); e != nil {
			s.opts.Logger.Error("closing the ledger", "err", e)
		}
	}
	s.stopMonitor()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// drainWait bounds how long Shutdown waits for the connections to take
// their last answers and goodbye.
const drainWait = 5 * time.Second

func (s *Server) closeAdmin() {
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.admin.Shutdown(ctx)
	}
}

// loopFor returns the state of the event loop el, assigning one on first sight.
func (s *Server) loopFor(el gnet.EventLoop) *loop {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	l, ok := s.loopOf[el]
	if !ok {
		l = s.loops[s.nextLoop%len(s.loops)]
		s.nextLoop++
		s.loopOf[el] = l
		if l.el == nil {
			l.el = el
		}
	}
	return l
}

// boundAddr reads the listener's real address from a dup of its fd.
func boundAddr(eng gnet.Engine) (string, error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", err
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port)), nil
	case *unix.SockaddrInet6:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port)), nil
	}
	return "", fmt.Errorf("unexpected listener address %T", sa)
}
