package load

import (
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// ringSize is how many requests of one user can be tracked in flight. It
// takes 16 outstanding requests within Timeout to fill it (more than 3 per
// user per second at the default 5 s): past that the oldest is given up
// early and counted as a timeout.
const ringSize = 16

// user is one simulated user. Its memory is the client's whole per-user
// cost besides the socket itself and gnet's connection, so keep it small.
//
// Ownership: the fields other than state belong to exactly one goroutine at
// a time and move with the connection's life cycle: the feeder and a dialer
// while connecting, then the event loop that holds the connection (from
// OnOpen to OnClose), then the retry queue, and so on. Each hand-over goes
// through a channel, a mutex or gnet's task queue, which orders the writes.
// Other goroutines (the scheduler, other loops' timeout sweeps) read only
// state, atomically, and touch nothing else unless it names their loop.
type user struct {
	state   atomic.Uint32 // phase | flags | loop index << loopShift
	id      uint32
	conn    gnet.Conn // set by OnOpen, cleared by OnClose
	late    uint32    // requests already counted as timeouts whose answers are still due (FIFO prefix)
	backoff uint16    // next reconnect delay, ms (0 = first)
	head, n uint8     // ring of in-flight requests
	// lastTx is the second (since the run's epoch, wrapping at 2^16) of the
	// last frame written on the connection: a user silent for PingIdle is
	// pinged, so that the server's idle timeout never closes it.
	lastTx uint16
	// bye: the server sent an error frame on this connection and is closing
	// it; anything it sends after that is counted, not served.
	bye bool
	// ring holds the scheduled send time of each request in flight, in µs
	// since the run's epoch, wrapping at 2^32 (71 minutes): differences stay
	// right as long as a latency is below that.
	ring [ringSize]uint32
}

// State word layout.
const (
	phOffline uint32 = 0 // not connected; in the retry queue or not yet dialed
	phDialing uint32 = 1 // a dialer holds it
	phLogin   uint32 = 2 // enrolled on a loop, login sent, no answer yet
	phOnline  uint32 = 3 // logged in: shakes may be sent
	phMask    uint32 = 3

	flTried uint32 = 1 << 2 // the first connection attempt is over (ramp accounting)
	flEver  uint32 = 1 << 3 // logged in at least once: the next login is a reconnect

	// Bits 4..15 count connection attempts (wrapping), so that a dialer can
	// tell whether the user it enrolled is still in that attempt.
	attemptShift        = 4
	attemptMask  uint32 = 0xfff << attemptShift

	loopShift        = 16
	loopMask  uint32 = 0xffff << loopShift
	flagMask  uint32 = 1<<loopShift - 1 - phMask // flags and attempt: kept by setPhase
)

func phaseOf(st uint32) uint32 { return st & phMask }
func loopOf(st uint32) int     { return int(st >> loopShift) }

// setPhase moves u to phase ph on loop li, keeping its flags. Only u's
// owner calls it.
func (u *user) setPhase(ph uint32, li int) {
	st := u.state.Load()
	u.state.Store(st&flagMask | ph | uint32(li)<<loopShift)
}

// startAttempt moves u to phDialing under a new attempt number, which it
// returns. Only u's owner (a dialer) calls it.
func (u *user) startAttempt() uint32 {
	st := u.state.Load()
	a := (st + 1<<attemptShift) & attemptMask
	u.state.Store(st&^(phMask|attemptMask|loopMask) | a | phDialing)
	return a
}

// setFlag sets flag f. Only u's owner calls it.
func (u *user) setFlag(f uint32) {
	u.state.Store(u.state.Load() | f)
}

// push records a request scheduled at µs time at; the ring must not be full.
func (u *user) push(at uint32) {
	u.ring[(int(u.head)+int(u.n))%ringSize] = at
	u.n++
}

// pop removes and returns the oldest in-flight request's time.
func (u *user) pop() uint32 {
	at := u.ring[u.head]
	u.head = uint8((int(u.head) + 1) % ringSize)
	u.n--
	return at
}

// oldest returns the oldest in-flight request's time; the ring must not be
// empty.
func (u *user) oldest() uint32 { return u.ring[u.head] }

// reset forgets every request in flight.
func (u *user) reset() {
	u.head, u.n, u.late, u.bye = 0, 0, 0, false
}
