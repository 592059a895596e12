package money

import "sync"

// queue is one SET's shake packets waiting for a user of the SET to take
// them. Its lock is held for a few dozen nanoseconds per take; no lock is
// shared between SETs, so takes of users in different SETs never contend.
type queue struct {
	mu   sync.Mutex
	ring ring
	_    [64]byte // keep neighbouring queues off this cache line
}

// packet is a shake packet waiting in a SET for a user to take it.
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
		r.resize(max(16, 2*len(r.buf)))
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
	r.resize(max(16, 2*r.size))
}

// resize moves the ring's packets, oldest first, to a new buffer of n.
func (r *ring) resize(n int) {
	buf := make([]packet, n)
	for i := 0; i < r.size; i++ {
		buf[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = buf, 0
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
func (q *queue) take() (packet, bool) {
	q.mu.Lock()
	p, ok := q.ring.pop()
	q.mu.Unlock()
	return p, ok
}

func (q *queue) put(p packet) {
	q.mu.Lock()
	q.ring.push(p)
	q.mu.Unlock()
}

func (q *queue) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ring.size
}

// queueOf is the queue of user's SET.
func (e *Engine) queueOf(user uint32) *queue { return &e.queues[SetOf(user, len(e.queues))] }

// Waiting counts the shake packets waiting in the SETs.
func (e *Engine) Waiting() (n int) {
	for i := range e.queues {
		n += e.queues[i].waiting()
	}
	return n
}
