package sample

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PushPath is where a monitor receives samples: an HTTP POST whose body is
// one JSON Sample per line (NDJSON).
const PushPath = "/api/push"

// QueueLen is how many samples a Pusher keeps while the monitor is slow or
// down: five minutes of one a second, a few KB each. Beyond it the oldest
// are dropped (and counted). A monitor amends a closed second with a late
// sample for longer than that (monitor.Options.Amend), so a backlog that
// fits here ends up in its series once it is delivered.
const QueueLen = 300

// BatchLen is the most samples one post carries. A backlog goes oldest
// first in posts of bounded size, so that each costs a slow monitor a
// bounded amount of work and each accepted one is progress. Posting the
// whole backlog at once made every retry bigger than the last: on a
// saturated box every post timed out, and the monitor took nothing for
// minutes while doing ever more work.
const BatchLen = 20

// PostTimeout bounds one post. It is long because a monitor starved of CPU
// is slow, not gone: a post it would have answered in 5 s and that we
// abandon at 2 s is work it does for nothing, then again on the retry.
const PostTimeout = 10 * time.Second

// CloseTimeout bounds Close: the time left to deliver what is queued.
const CloseTimeout = 3 * time.Second

// Backoff after a failed post: it doubles up to maxBackoff, so that a
// hundred pushers do not keep a struggling monitor busy with retries.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// PhaseWindow bounds a process's publishing phase (Phase): every process
// publishes its sample of a second within this long after the second ends,
// well inside a monitor's grace.
const PhaseWindow = 500 * time.Millisecond

// Phase is how long after Push the pusher of the process called name waits
// before it publishes a fresh sample: a fixed share of PhaseWindow drawn
// from the name. Every process closes its second at the clock's boundary;
// if all of them also measured, encoded and posted their sample there, the
// box would run them all at once: at a million users (104 processes) 182
// threads were runnable on average in the first 20 ms of each second (58
// with the phases), and any shake due then waited for a core. Spread by
// name, the work of a hundred processes comes one or two at a time.
func Phase(name string) time.Duration {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return time.Duration(h.Sum32()%uint32(PhaseWindow/time.Millisecond)) * time.Millisecond
}

// Pusher sends samples to a monitor from its own goroutine. Push never
// blocks: the producer (a server's ticker) pays for a channel send at most.
// A fresh sample is held for the process's Phase before it is published.
type Pusher struct {
	url     string
	name    string
	kind    string
	hc      *http.Client
	log     *slog.Logger
	q       chan queued
	phase   time.Duration
	meter   Meter // read by the run goroutine only (PushMetered)
	dropped atomic.Uint64
	sent    atomic.Uint64
	// ctx bounds every post; Close cancels it CloseTimeout after it is called.
	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// NewPusher starts a pusher to the monitor at addr (host:port or a URL)
// for the process called name, of kind KindServer or KindLoad.
func NewPusher(addr, name, kind string, log *slog.Logger) *Pusher {
	if log == nil {
		log = slog.Default()
	}
	u := addr
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pusher{
		url:  strings.TrimSuffix(u, "/") + PushPath,
		name: name,
		kind: kind,
		hc:   &http.Client{}, // each post has its own deadline (PostTimeout, Close)
		log:  log,
		// The run goroutine empties q between posts; while a post waits
		// (up to PostTimeout) samples wait here, so q can hold a backlog.
		q:      make(chan queued, QueueLen),
		phase:  Phase(name),
		ctx:    ctx,
		cancel: cancel,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	p.meter.Read() // the baselines of PushMetered's first figures
	go p.run()
	return p
}

// SetPhase replaces the pusher's phase (Phase of its name; 0 = publish at
// once). Call it before the first Push: a test, or a process that
// publishes alone, has no others to spread its work from.
func (p *Pusher) SetPhase(d time.Duration) { p.phase = max(d, 0) }

// queued is a sample waiting for the run goroutine; metered: fill in its
// Process and Net figures when it is published.
type queued struct {
	s       Sample
	metered bool
}

// Push queues s; if the queue is full the oldest sample is dropped.
func (p *Pusher) Push(s Sample) { p.push(queued{s: s}) }

// PushMetered is Push, but the pusher fills in s's Process and Net figures
// when it publishes it (after the Phase), from a Meter of its own: the
// producer's boundary stays cheap, and each figure still covers one second
// of this process (from one publication to the next).
func (p *Pusher) PushMetered(s Sample) { p.push(queued{s: s, metered: true}) }

func (p *Pusher) push(s queued) {
	for {
		select {
		case p.q <- s:
			return
		default:
		}
		select {
		case <-p.q:
			p.dropped.Add(1)
		default:
		}
	}
}

// Dropped is the number of samples lost: to a full queue, to a monitor
// that refused them, or still undelivered when Close gave up.
func (p *Pusher) Dropped() uint64 { return p.dropped.Load() }

// Sent is the number of samples the monitor accepted.
func (p *Pusher) Sent() uint64 { return p.sent.Load() }

// Close sends what is queued, oldest first, and a goodbye, for up to
// CloseTimeout (a post under way when it is called counts in that time),
// and stops: the monitor then stops expecting samples from name. What is
// left undelivered is counted in Dropped.
func (p *Pusher) Close() {
	p.once.Do(func() {
		t := time.AfterFunc(CloseTimeout, p.cancel)
		defer t.Stop()
		close(p.stop)
		<-p.done
	})
	<-p.done
}

// run takes the samples Push queues and posts them oldest first, at most
// batch at a time; after a failure it keeps them, backs off and halves
// batch, and after a success doubles it back up to BatchLen.
func (p *Pusher) run() {
	defer close(p.done)
	defer p.cancel()
	var (
		pending  [][]byte // encoded samples (NDJSON lines), oldest first
		batch    = BatchLen
		backoff  time.Duration
		retry    <-chan time.Time // set while backing off
		fails    int              // consecutive failed posts
		refusals int              // samples the monitor refused
	)
	for {
		// Nothing to send, or backing off: wait for a sample, the end of
		// the back-off or Close.
		if len(pending) == 0 || retry != nil {
			select {
			case s := <-p.q:
				if !p.hold() {
					p.drain(p.queue(pending, s))
					return
				}
				pending = p.queue(pending, s)
			case <-retry:
				retry = nil
			case <-p.stop:
				p.drain(pending)
				return
			}
			continue
		}
		select {
		case <-p.stop:
			p.drain(pending)
			return
		default:
		}
		pending = p.takeQueued(pending)
		n := min(batch, len(pending))
		err := p.post(PostTimeout, pending[:n])
		if err == nil {
			if fails > 0 {
				p.log.Info("monitor push recovered", "url", p.url, "failed_posts", fails, "pending", len(pending)-n)
			}
			pending = shift(pending, n)
			fails, backoff = 0, 0
			batch = min(2*batch, BatchLen)
			continue
		}
		if refused(err) {
			// The monitor will not take these samples however often they
			// are sent: find the one it refuses and drop it, so that it
			// does not hold up those behind it.
			if n == 1 {
				p.dropped.Add(1)
				pending = shift(pending, 1)
				if refusals++; refusals == 1 || refusals%60 == 0 {
					p.log.Warn("monitor refused a sample; dropped it", "url", p.url, "refused", refusals, "err", err)
				}
			} else {
				batch = 1
			}
			continue
		}
		fails++
		if fails == 1 || fails%60 == 0 {
			p.log.Warn("monitor push failed; keeping samples", "url", p.url, "pending", len(pending), "failed_posts", fails, "err", err)
		}
		// A slow monitor gets smaller posts (down to one sample) and time;
		// new samples keep queueing meanwhile.
		batch = max(batch/2, 1)
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		retry = time.After(backoff)
	}
}

// hold waits for the process's Phase before a fresh sample is published;
// false if Close was called meanwhile (publish at once).
func (p *Pusher) hold() bool {
	if p.phase <= 0 {
		return true
	}
	t := time.NewTimer(p.phase)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.stop:
		return false
	}
}

// drain delivers what is left when Close is called, then the goodbye,
// until the first failure or Close's deadline.
func (p *Pusher) drain(pending [][]byte) {
	pending = p.takeQueued(pending)
	if bye, err := json.Marshal(Sample{Name: p.name, Kind: p.kind, Bye: true}); err == nil {
		pending = append(pending, append(bye, '\n'))
	}
	for len(pending) > 0 {
		n := min(BatchLen, len(pending))
		if err := p.post(CloseTimeout, pending[:n]); err != nil {
			// The goodbye is the last line: everything before it is lost.
			if lost := len(pending) - 1; lost > 0 {
				p.dropped.Add(uint64(lost))
				p.log.Warn("monitor push: closing with samples undelivered", "url", p.url, "lost", lost, "err", err)
			}
			return
		}
		pending = shift(pending, n)
	}
}

// takeQueued moves what Push queued meanwhile behind pending.
func (p *Pusher) takeQueued(pending [][]byte) [][]byte {
	for {
		select {
		case s := <-p.q:
			pending = p.queue(pending, s)
		default:
			return pending
		}
	}
}

// queue encodes s behind pending, dropping the oldest beyond QueueLen. A
// sample is encoded once: a retry costs the pusher no more than a send.
func (p *Pusher) queue(pending [][]byte, q queued) [][]byte {
	s := q.s
	if q.metered {
		s.Process, s.Net = p.meter.Read()
	}
	b, err := json.Marshal(&s)
	if err != nil { // a NaN gauge: no monitor could take it
		p.dropped.Add(1)
		p.log.Warn("monitor push: cannot encode sample; dropped it", "t", s.T, "err", err)
		return pending
	}
	pending = append(pending, append(b, '\n'))
	if n := len(pending) - QueueLen; n > 0 {
		p.dropped.Add(uint64(n))
		pending = shift(pending, n)
	}
	return pending
}

// shift removes the first n of pending, releasing them.
func shift(pending [][]byte, n int) [][]byte {
	clear(pending[:n])
	return pending[n:]
}

// statusError is a monitor's answer other than 2xx.
type statusError struct {
	code   int
	status string
}

func (e *statusError) Error() string { return "monitor answered " + e.status }

// refused reports whether err is the monitor rejecting the request itself
// (4xx but a timeout or throttling), which sending it again cannot change.
func refused(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.code/100 == 4 &&
		se.code != http.StatusRequestTimeout && se.code != http.StatusTooManyRequests
}

// post sends lines (NDJSON) within timeout and Close's deadline.
func (p *Pusher) post(timeout time.Duration, lines [][]byte) error {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(bytes.Join(lines, nil)))
	if err != nil {
		return fmt.Errorf("monitor push: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := p.hc.Do(req)
	if err != nil {
		return fmt.Errorf("monitor push: %w", err)
	}
	// Read the (short) answer so that the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return &statusError{code: resp.StatusCode, status: resp.Status}
	}
	p.sent.Add(uint64(len(lines)))
	return nil
}
