package load

import (
	"context"
	"time"

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

// schedule sends this process's slots until stop is closed: every
// millisecond it enumerates the slots that came due since the last tick,
// whether or not earlier requests were answered (open loop), groups them by
// the event loop of their user's connection, and hands each loop one batch.
// Sending per request with AsyncWrite would cost a task and a wake-up each;
// a batch costs one per loop per tick.
func (c *Client) schedule(stop <-chan struct{}) {
	s := scheduler{c: c, ctx: context.Background()}
	tk := time.NewTicker(time.Millisecond)
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
			s.flush()
			return
		case <-tk.C:
		}
		now = time.Now().UnixNano()
		nowSec := now / 1e9
		if nowSec-sec > maxCatchUp {
			for ; sec < nowSec-maxCatchUp; sec++ {
				s.skipped += uint64(c.share.Count(sec, q, j0, q))
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
		s.flush()
	}
}

// emit gathers the sends of slots [j0, j1) of second sec at rate q.
func (s *scheduler) emit(sec int64, q, j0, j1 int) {
	if j0 >= j1 {
		return
	}
	c := s.c
	loops := *c.loops.Load()
	base := sec*1e9 - c.epochNs
	c.share.Each(sec, q, j0, j1, func(id uint32, j int) {
		idx := id - c.from
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
				loops = *c.loops.Load()
			}
			b = loops[li].getBatch()
			s.cur[li] = b
		}
		at := uint32((base + int64(schedule.SlotOffset(j, q))) / 1000)
		b.items = append(b.items, item{idx: idx, at: at})
	})
}

// flush hands each loop its batch.
func (s *scheduler) flush() {
	for li, b := range s.cur {
		if b == nil || len(b.items) == 0 {
			continue
		}
		// Queued sends count as in flight until the loop has run them, so
		// that the drain at the end waits for the last tick's batches.
		queued := int64(len(b.items))
		s.c.glob.inflight.Add(queued)
		if err := b.l.el.Execute(s.ctx, b); err != nil {
			// The loop is gone (the client is stopping): not sent.
			s.c.glob.inflight.Add(-queued)
			b.l.skipped.Add(uint64(queued))
			b.items = b.items[:0]
			continue
		}
		s.cur[li] = nil
	}
	if s.skipped > 0 {
		s.c.glob.skipped.Add(s.skipped)
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
