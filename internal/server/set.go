package server

import (
	"sync"
	"sync/atomic"
)

// A set is one partition of the users (a SET in the seed's design). Its
// packet queue and session table are guarded by its own mutex, held for a
// few dozen nanoseconds per request; no lock is shared between sets, so
// requests of users in different sets never contend.
type set struct {
	mu       sync.Mutex
	queue    ring
	sessions map[uint32]*session

	online atomic.Int64 // logged-in users, read by the issuer without the lock
	_      [64]byte     // keep neighbouring sets off this cache line
}

// packet is a shake packet waiting in a set for a user to take it.
type packet struct {
	id       uint32
	amount   uint32
	campaign *campaign
}

// ring is a FIFO of packets that grows as needed and shrinks once it is
// mostly empty (after a stopped campaign's packets are released, say).
type ring struct {
	buf        []packet
	head, size int
}

func (r *ring) push(p packet) {
	if r.size == len(r.buf) {
		n := make([]packet, max(16, 2*len(r.buf)))
		for i := 0; i < r.size; i++ {
			n[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = n, 0
	}
	r.buf[(r.head+r.size)%len(r.buf)] = p
	r.size++
}

func (r *ring) pop() (packet, bool) {
	if r.size == 0 {
		return packet{}, false
	}
	p := r.buf[r.head]
	r.buf[r.head] = packet{}
	r.head = (r.head + 1) % len(r.buf)
	r.size--
	r.shrink()
	return p, true
}

// shrink reallocates a ring of more than 64 slots that is at most a
// quarter full to twice its size (amortised: it must lose half of that
// again before the next).
func (r *ring) shrink() {
	if len(r.buf) <= 64 || r.size > len(r.buf)/4 {
		return
	}
	n := make([]packet, max(16, 2*r.size))
	for i := 0; i < r.size; i++ {
		n[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = n, 0
}

// removeIf removes, keeping the order of the rest, every packet for which
// drop is true, and returns how many and their amount.
func (r *ring) removeIf(drop func(*packet) bool) (n int, amount uint64) {
	kept := 0
	for i := 0; i < r.size; i++ {
		p := r.buf[(r.head+i)%len(r.buf)]
		if drop(&p) {
			n++
			amount += uint64(p.amount)
			continue
		}
		r.buf[(r.head+kept)%len(r.buf)] = p
		kept++
	}
	for i := kept; i < r.size; i++ {
		r.buf[(r.head+i)%len(r.buf)] = packet{}
	}
	r.size = kept
	r.shrink()
	return n, amount
}

// take hands the oldest waiting packet to a shaking user.
func (s *set) take() (packet, bool) {
	s.mu.Lock()
	p, ok := s.queue.pop()
	s.mu.Unlock()
	return p, ok
}

func (s *set) put(p packet) {
	s.mu.Lock()
	s.queue.push(p)
	s.mu.Unlock()
}

func (s *set) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.size
}

// login records ss as the session of its user and returns the session it
// replaces, if any.
func (s *set) login(ss *session) (old *session) {
	s.mu.Lock()
	old = s.sessions[ss.user]
	s.sessions[ss.user] = ss
	s.mu.Unlock()
	if old == nil {
		s.online.Add(1)
	}
	return old
}

// logout forgets ss unless a newer session of the same user replaced it.
func (s *set) logout(ss *session) {
	s.mu.Lock()
	cur := s.sessions[ss.user]
	if cur == ss {
		delete(s.sessions, ss.user)
	}
	s.mu.Unlock()
	if cur == ss {
		s.online.Add(-1)
	}
}
