package sample

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
// down; beyond it the oldest are dropped (and counted).
const QueueLen = 60

// Pusher sends samples to a monitor from its own goroutine. Push never
// blocks: the producer (a server's ticker) pays for a channel send at most.
type Pusher struct {
	url     string
	name    string
	kind    string
	hc      *http.Client
	log     *slog.Logger
	q       chan Sample
	dropped atomic.Uint64
	sent    atomic.Uint64
	failed  atomic.Uint64
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
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
	p := &Pusher{
		url:  strings.TrimSuffix(u, "/") + PushPath,
		name: name,
		kind: kind,
		hc:   &http.Client{Timeout: 2 * time.Second},
		log:  log,
		q:    make(chan Sample, QueueLen),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go p.run()
	return p
}

// Push queues s; if the queue is full the oldest sample is dropped.
func (p *Pusher) Push(s Sample) {
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

// Dropped is the number of samples lost to a full queue.
func (p *Pusher) Dropped() uint64 { return p.dropped.Load() }

// Sent is the number of samples the monitor accepted.
func (p *Pusher) Sent() uint64 { return p.sent.Load() }

// Close sends what is queued and a goodbye (for up to a second) and stops:
// the monitor then stops expecting samples from name.
func (p *Pusher) Close() {
	p.once.Do(func() {
		p.Push(Sample{Name: p.name, Kind: p.kind, Bye: true})
		close(p.stop)
	})
	<-p.done
}

func (p *Pusher) run() {
	defer close(p.done)
	var pending []Sample
	for {
		select {
		case s := <-p.q:
			pending = append(pending, s)
		case <-p.stop:
			for drained := false; !drained; {
				select {
				case s := <-p.q:
					pending = append(pending, s)
				default:
					drained = true
				}
			}
			if len(pending) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = p.post(ctx, pending)
				cancel()
			}
			return
		}
		// Take whatever else is queued into the same request.
		for more := true; more; {
			select {
			case s := <-p.q:
				pending = append(pending, s)
			default:
				more = false
			}
		}
		if n := len(pending) - QueueLen; n > 0 {
			p.dropped.Add(uint64(n))
			pending = append(pending[:0], pending[n:]...)
		}
		if err := p.post(context.Background(), pending); err != nil {
			if p.failed.Add(1) == 1 || p.failed.Load()%60 == 0 {
				p.log.Warn("monitor push failed; keeping samples", "url", p.url, "pending", len(pending), "err", err)
			}
			// Back off a little; new samples keep queueing meanwhile.
			select {
			case <-time.After(500 * time.Millisecond):
			case <-p.stop:
			}
			continue
		}
		pending = pending[:0]
	}
}

func (p *Pusher) post(ctx context.Context, ss []Sample) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for i := range ss {
		if err := enc.Encode(&ss[i]); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, &b)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("monitor answered %s", resp.Status)
	}
	p.sent.Add(uint64(len(ss)))
	return nil
}
