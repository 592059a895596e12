package server

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"hongbao/internal/proto"
)

// Accepting at the open-file limit.
//
// gnet treats any accept error other than EAGAIN, EINTR, ECONNRESET and
// ECONNABORTED as fatal: on EMFILE its accepting loop returns
// ErrAcceptSocket, the engine shuts down, closes every connection and the
// listener, and the node never accepts again (gnet v2.9.7 acceptor_unix.go,
// reactor_default.go). No option changes that, so the server makes sure
// accept never meets the limit:
//
//   - gnet runs with SO_REUSEPORT, where each event loop accepts on its own
//     listener and runs OnOpen for that connection before it accepts the
//     next one. A connection OnOpen refuses is closed at once, so at most
//     one descriptor per loop exists beyond the admitted connections
//     (without it, gnet's acceptor goroutine accepts a whole backlog before
//     any OnOpen runs).
//   - OnOpen admits at most MaxConns connections; the default leaves
//     fdReserve descriptors of RLIMIT_NOFILE for everything else.
//   - OnOpen also refuses a connection whose descriptor is one of the last
//     fdGuard below the limit, whatever the count: the kernel hands out the
//     lowest free descriptor, so such a number means the table is nearly
//     full (something besides connections used the reserve), and accept
//     still finds room for as long as the guard lasts.
//
// A refused connection gets an error frame with ReasonOverLimit and is
// closed (counted as disconnects_over_limit); /healthz answers 503 while
// the node is full. Should the listener stop anyway, that is logged at
// ERROR and /healthz answers 503 until the process is restarted.

// Descriptors kept from RLIMIT_NOFILE for everything but client connections.
const (
	// fdBase covers stdio, the runtime's poller, the ledger (and an audit's
	// second reading of it), the monitor's connection, /proc reads and logs.
	fdBase = 48
	// maxAdminConns bounds the admin listener's open connections; more
	// are closed as soon as they are accepted.
	maxAdminConns = 32
	// fdGuard is how many of the highest descriptors no client connection
	// may hold.
	fdGuard = 16
	// fdPerLoop: each event loop's epoll, eventfd and listener.
	fdPerLoop = 3
)

// fdReserve is the number of descriptors a server with loops event loops
// keeps from its open-file limit for all but client connections.
func fdReserve(loops int) int { return fdBase + maxAdminConns + fdGuard + fdPerLoop*loops }

// openFileLimit is the process's soft RLIMIT_NOFILE (bounded to fit an int
// comfortably; a limit that large is no limit for connections).
func openFileLimit() (int, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	return int(min(r.Cur, 1<<30)), nil
}

// ErrTooFewFiles wraps a MaxConns the open-file limit cannot hold.
var ErrTooFewFiles = errors.New("not enough open files")

// setMaxConns sets opts.MaxConns from the open-file limit (the default:
// the limit less the reserve) or checks the one asked for fits in it.
func (o *Options) setMaxConns(limit int) error {
	reserve := fdReserve(o.Loops)
	allow := limit - reserve
	switch {
	case o.MaxConns < 0:
		return fmt.Errorf("%w: max conns must not be negative, got %d", ErrBadOptions, o.MaxConns)
	case allow < 1:
		return fmt.Errorf("%w: %w: the open-file limit is %d and the server keeps %d of them for its ledger, admin and event loops; "+
			"raise ulimit -n to at least %d", ErrBadOptions, ErrTooFewFiles, limit, reserve, reserve+max(o.MaxConns, 1))
	case o.MaxConns == 0:
		o.MaxConns = allow
	case o.MaxConns > allow:
		return fmt.Errorf("%w: %w: --max-conns %d needs %d open files (%d kept for the ledger, admin and event loops), "+
			"this process may open %d: raise ulimit -n to %d or lower --max-conns to %d",
			ErrBadOptions, ErrTooFewFiles, o.MaxConns, o.MaxConns+reserve, reserve, limit, o.MaxConns+reserve, allow)
	}
	return nil
}

// admission is the server's count of admitted connections and its
// refusals; shared by the loops, touched once per open and close.
type admission struct {
	admitted atomic.Int64
	// logSec is the second of the last "shedding" log line (one a second).
	logSec atomic.Uint64
}

// admit takes a place for a new connection whose descriptor is fd, or
// returns ReasonOverLimit.
func (s *Server) admit(fd int) proto.Reason {
	if fd >= s.fdLimit-fdGuard {
		s.logShed("connections shed: descriptors near the open-file limit; something besides client connections holds the reserve",
			fd, true)
		return proto.ReasonOverLimit
	}
	if s.adm.admitted.Add(1) > int64(s.opts.MaxConns) {
		s.adm.admitted.Add(-1)
		s.logShed("connections shed: the server holds --max-conns connections", fd, false)
		return proto.ReasonOverLimit
	}
	return proto.ReasonNone
}

// release gives back the place of an admitted connection.
func (s *Server) release() { s.adm.admitted.Add(-1) }

func (s *Server) logShed(msg string, fd int, isErr bool) {
	sec := s.sec.Load()
	last := s.adm.logSec.Load()
	if last == sec || !s.adm.logSec.CompareAndSwap(last, sec) {
		return
	}
	args := []any{"connections", s.adm.admitted.Load(), "max_conns", s.opts.MaxConns, "fd", fd, "open_file_limit", s.fdLimit}
	if isErr {
		s.opts.Logger.Error(msg, args...)
	} else {
		s.opts.Logger.Warn(msg, args...)
	}
}

// Reasons /healthz gives for a 503.
var (
	ErrShuttingDown = errors.New("shutting down")
	ErrNotAccepting = errors.New("not accepting connections")
	ErrLedgerFailed = errors.New("the ledger cannot write")
)

// Health is nil when the node accepts new connections and can make records
// durable; otherwise it says why not (errors.Join of the reasons).
func (s *Server) Health() error {
	var errs []error
	if s.draining.Load() {
		errs = append(errs, ErrShuttingDown)
	} else {
		select {
		case <-s.runDone:
			errs = append(errs, fmt.Errorf("%w: the client listener stopped (see the ERROR log); restart the server", ErrNotAccepting))
		default:
		}
	}
	if n := s.adm.admitted.Load(); n >= int64(s.opts.MaxConns) {
		errs = append(errs, fmt.Errorf("%w: full, %d connections of --max-conns %d; new ones are closed at once",
			ErrNotAccepting, n, s.opts.MaxConns))
	}
	if fd, err := lowestFreeFD(); err != nil {
		errs = append(errs, fmt.Errorf("%w: cannot open a file: %w", ErrNotAccepting, err))
	} else if fd >= s.fdLimit-2*fdGuard { // within a few accepts of the guard
		errs = append(errs, fmt.Errorf("%w: open files at the limit: the next descriptor would be %d of %d",
			ErrNotAccepting, fd, s.fdLimit))
	}
	if s.led != nil {
		if err := s.led.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrLedgerFailed, err))
		}
	}
	return errors.Join(errs...)
}

// lowestFreeFD is the descriptor the next accept would get: the kernel
// hands out the lowest free one.
func lowestFreeFD() (int, error) {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	unix.Close(fd)
	return fd, nil
}

// claimAddr checks that addr is free and returns it with a concrete port
// (a free one for port 0). With SO_REUSEPORT, which gnet needs for the
// above, a second server on a taken port would otherwise start and share
// it silently, and each event loop would bind its own port 0.
func claimAddr(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	defer ln.Close()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)), nil
}

// limitListener closes the connections it accepts beyond max open ones,
// so that admin clients cannot use the descriptors kept for the rest.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func newLimitListener(ln net.Listener, max int) net.Listener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, max)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			c.Close()
		}
	}
}

type limitConn struct {
	net.Conn
	once    atomic.Bool
	release func()
}

func (c *limitConn) Close() error {
	if c.once.CompareAndSwap(false, true) {
		c.release()
	}
	return c.Conn.Close()
}
