package load

// This file is the send path, in the order a shake takes: the scheduler
// goroutine (Client.schedule) enumerates this process's due slots every
// tick (package schedule), gathers them per event loop into a batch
// (scheduler.emit), hands each loop its batch (scheduler.flush, which
// counts them in flight while queued), and the loop writes one shake per
// item (batch.Run, loop.send), recording the slot's time in the user's
// ring of requests in flight. The pacing of the sender (tick, wait,
// linger, sleepThread) is here too. What comes back — answers, pushes,
// connection events and the timeout sweep that ends a request never
// answered — is in conn.go.

import (
	"context"
	"syscall"
	"time"

	"hongbao/internal/proto"
	"hongbao/internal/schedule"
)

// maxCatchUp bounds how far behind the scheduler replays missed seconds
// (after the process was stopped or starved): older slots would only time
// out, so they are counted as skipped instead of sent in one burst.
const maxCatchUp = 2

// scheduler is the state of the open-loop sender, owned by its goroutine.
type scheduler struct {
	c       *Client
	ctx     context.Context
	cur     []*batch // per loop: sends gathered this tick
	skipped uint64
}

// Automatic pacing of the sender (Options.Tick and Linger zero): a tick
// long enough for about sendsPerTick requests, between 1 ms and maxAutoTick,
// so that a process with a small share of the rate (one of fifty at a
// million users) wakes 125 times a second rather than 1,000; and a linger
// that gives the server time to answer a burst.
const (
	sendsPerTick = 16
	maxAutoTick  = 8 * time.Millisecond
	autoLinger   = 600 * time.Microsecond
	perSendWork  = 15 * time.Microsecond // a send and its answer on the loop, with room to spare
	// idleTick is the shortest sleep at rate 0 (during the ramp). The
	// sender sleeps to the next second there, or until SetQPS wakes it:
	// at 5 ms, 50 idle client processes spent a core, and at 100 ms each
	// still cost ~60 context switches a second in timer wake-ups.
	idleTick = 100 * time.Millisecond
)

// sleepThread blocks the calling thread (an event loop's) for d in
// nanosleep. While a loop sleeps here rather than in epoll_wait, the
// server's answers arriving meanwhile wake nobody; they are read in one
// round when the loop next polls. On this box a wake-up costs 20-25 µs of
// CPU, more than a request's read and write; at 18,000 shakes/s this linger
// cut the server's CPU per request by a quarter (its writes no longer wake
// the client) and the client's by a quarter. No Go timer is involved: a
// timer would wake another thread to hand the loop back its goroutine.
func sleepThread(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}

// tick is the sender's period at the current rate.
func (c *Client) tick() time.Duration {
	if c.o.Tick > 0 {
		return c.o.Tick
	}
	share := float64(c.QPS()) * float64(c.cfg.to-c.cfg.from+1) / float64(c.o.Total)
	if share <= 0 {
		return idleTick
	}
	return min(max(time.Duration(sendsPerTick*float64(time.Second)/share), time.Millisecond), maxAutoTick)
}

// wait is how long the sender sleeps at now (Unix ns, in second sec at
// rate q, slots below j1 sent): until this process's next slot, but at
// least a tick (so that sends gather into batches). Without a slot this
// second or the next it sleeps to the next second boundary, where a new
// rate takes effect; a rate set meanwhile wakes it at once (SetQPS). With
// a million users over fifty processes, each process's slots come in
// bursts (see package schedule) and most seconds have none: such a process
// wakes a few times a second instead of 125.
func (c *Client) wait(sec int64, q, j1 int, now int64) time.Duration {
	next := (sec + 1) * 1e9
	if j, ok := c.cfg.share.Next(sec, q, j1); ok {
		next = sec*1e9 + int64(schedule.SlotOffset(j, q))
	} else if qn := c.QPS(); qn > 0 {
		if j, ok := c.cfg.share.Next(sec+1, qn, 0); ok {
			next = (sec+1)*1e9 + int64(schedule.SlotOffset(j, qn))
		} else {
			next = (sec + 2) * 1e9
		}
	}
	return max(time.Duration(next-now), c.tick())
}

// linger is how long a loop sleeps after sending a batch at period tick.
func (c *Client) linger(tick time.Duration) time.Duration {
	switch {
	case c.o.Linger < 0:
		return 0
	case c.o.Linger > 0:
		return min(c.o.Linger, tick/2)
	default:
		return min(autoLinger, tick/2)
	}
}

// schedule sends this process's slots until stop is closed: every tick
// (see Client.tick) it enumerates the slots that came due since the last,
// whether or not earlier requests were answered (open loop), groups them by
// the event loop of their user's connection, and hands each loop one batch.
// Sending per request with AsyncWrite would cost a task and a wake-up each;
// a batch costs one per loop per tick.
func (c *Client) schedule(stop <-chan struct{}) {
	s := scheduler{c: c, ctx: context.Background()}
	period := c.tick()
	tk := time.NewTimer(period)
	defer tk.Stop()

	now := time.Now().UnixNano()
	sec := now / 1e9
	q := c.QPS()
	// Slots of this second that were due before the start are not ours to
	// send: the run starts now.
	j0 := schedule.Due(q, time.Duration(now-sec*1e9))
	for {
		select {
		case <-stop:
			s.flush(0)
			return
		case <-tk.C:
		case <-c.rate.changed:
			tk.Stop()
		}
		now = time.Now().UnixNano()
		nowSec := now / 1e9
		if nowSec-sec > maxCatchUp {
			for ; sec < nowSec-maxCatchUp; sec++ {
				s.skipped += uint64(c.cfg.share.Count(sec, q, j0, q))
				j0, q = 0, c.QPS()
			}
		}
		for sec < nowSec {
			s.emit(sec, q, j0, q)
			sec++
			// A new second: the rate set since takes effect now.
			j0, q = 0, c.QPS()
		}
		j1 := schedule.Due(q, time.Duration(now-sec*1e9))
		s.emit(sec, q, j0, j1)
		j0 = j1
		s.flush(c.linger(period))
		period = c.wait(sec, q, j1, now)
		tk.Reset(period)
	}
}

// emit gathers the sends of slots [j0, j1) of second sec at rate q.
func (s *scheduler) emit(sec int64, q, j0, j1 int) {
	if j0 >= j1 {
		return
	}
	c := s.c
	loops := *c.loops.all.Load()
	base := sec*1e9 - c.cfg.epochNs
	c.cfg.share.Each(sec, q, j0, j1, func(id uint32, j int) {
		idx := id - c.cfg.from
		st := c.users[idx].state.Load()
		if phaseOf(st) != phOnline {
			s.skipped++
			return
		}
		li := loopOf(st)
		for li >= len(s.cur) {
			s.cur = append(s.cur, nil)
		}
		b := s.cur[li]
		if b == nil {
			if li >= len(loops) { // a loop seen for the first time since the snapshot
				loops = *c.loops.all.Load()
			}
			b = loops[li].getBatch()
			s.cur[li] = b
		}
		at := uint32((base + int64(schedule.SlotOffset(j, q))) / 1000)
		b.items = append(b.items, item{idx: idx, at: at})
	})
}

// flush hands each loop its batch, to be followed by a sleep of linger.
func (s *scheduler) flush(linger time.Duration) {
	for li, b := range s.cur {
		if b == nil || len(b.items) == 0 {
			continue
		}
		// Queued sends count as in flight until the loop has run them, so
		// that the drain at the end waits for the last tick's batches.
		queued := int64(len(b.items))
		// The loop must also find time to write this batch and read its
		// answers within the tick: a larger batch lingers less (at 40,000
		// shakes/s on one loop, a fixed 600 µs linger raised p99 from 8 ms
		// to 53 ms).
		b.linger = max(0, linger-time.Duration(len(b.items))*perSendWork)
		s.c.stats.glob.inflight.Add(queued)
		if err := b.l.el.Execute(s.ctx, b); err != nil {
			// The loop is gone (the client is stopping): not sent.
			s.c.stats.glob.inflight.Add(-queued)
			b.l.skipped.Add(uint64(queued))
			b.items = b.items[:0]
			continue
		}
		s.cur[li] = nil
	}
	if s.skipped > 0 {
		s.c.stats.glob.skipped.Add(s.skipped)
		s.skipped = 0
	}
}

// getBatch returns an empty batch for this loop, reusing one the loop has
// finished with when there is one.
func (l *loop) getBatch() *batch {
	select {
	case b := <-l.free:
		return b
	default:
		return &batch{l: l, items: make([]item, 0, 64)}
	}
}

// item is one due send: the user's index in Client.users and the slot's
// scheduled time in µs since the epoch.
type item struct{ idx, at uint32 }

// batch is the sends of one scheduler tick for one loop; it runs on that
// loop (gnet.Runnable) and then goes back to the loop's free list.
type batch struct {
	l      *loop
	items  []item
	linger time.Duration
}

// Run writes the batch's shakes with one c.Write per request, on the loop
// that owns the connections, then sleeps for the batch's linger so that
// the answers are read together when the loop next polls, instead of each
// waking it.
func (b *batch) Run(context.Context) error {
	b.l.send(b.items)
	sleepThread(b.linger)
	b.l.c.stats.glob.inflight.Add(-int64(len(b.items))) // no longer queued (see flush)
	b.items = b.items[:0]
	select {
	case b.l.free <- b:
	default:
	}
	return nil
}

// send writes a shake for each item whose user is still online on this
// loop (the others went offline since the scheduler looked: skipped).
func (l *loop) send(items []item) {
	c := l.c
	now := time.Now()
	nowSec := uint64(now.Unix())
	tx := c.epochSec(now)
	var sent, skipped, failed, evicted uint64
	for _, it := range items {
		u := &c.users[it.idx]
		st := u.state.Load()
		if phaseOf(st) != phOnline || loopOf(st) != l.idx {
			skipped++
			continue
		}
		if u.n == ringSize {
			// Too many in flight to track: give the oldest up now.
			u.pop()
			u.late++
			evicted++
		}
		f := proto.AppendShake(l.wbuf[:0], nowSec, u.id)
		if _, err := u.conn.Write(f); err != nil {
			failed++ // gnet closed the connection; OnClose has run
			continue
		}
		u.push(it.at)
		u.lastTx = tx
		sent++
	}
	l.sent.Add(sent)
	l.inflight.Add(int64(sent) - int64(evicted))
	if evicted > 0 {
		l.timeouts.Add(evicted)
	}
	if skipped > 0 {
		l.skipped.Add(skipped)
	}
	if failed > 0 {
		l.errors.Add(failed)
	}
}
