package ledger

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// FileName is the ledger's file inside its directory.
const FileName = "ledger.log"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Done is told when a record is durable (err nil) or could not be made so.
// It runs on the ledger's writer goroutine and must not block.
type Done interface {
	Durable(r *Record, err error)
}

// DoneFunc adapts a function to Done.
type DoneFunc func(r *Record, err error)

// Durable calls f.
func (f DoneFunc) Durable(r *Record, err error) { f(r, err) }

// ErrClosed is returned for records appended after Close.
var ErrClosed = errors.New("ledger: closed")

type pending struct {
	rec  Record
	has  bool
	done Done
	off  int                        // offset in the batch where this entry starts
	at   func(off int64, err error) // a mark: told the file offset it stands at
}

// Log is an append-only ledger file with group commit: Append queues a
// record and returns at once; one writer goroutine writes everything
// queued with one write and one fsync, then completes each record.
type Log struct {
	f    *os.File
	path string

	mu      sync.Mutex
	buf     []byte
	pend    []pending
	closing bool
	failed  error
	wake    chan struct{}
	done    chan struct{}

	size   int64 // bytes durable in the file, owned by the writer
	stats  Stats // guarded by mu
	NoSync bool  // skip fsync (benchmarks of the write path only)
}

// Stats are the writer's counters.
type Stats struct {
	Records uint64 `json:"records"`
	Batches uint64 `json:"batches"`
	Bytes   int64  `json:"bytes"`
}

// Open opens (creating it if needed) the ledger in dir, replays it into a
// new State, cuts off a torn tail left by a crash, and starts the writer.
func Open(dir string) (*Log, *State, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	st := NewState()
	good, err := replay(f, st.Apply, -1)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, nil, err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, nil, err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the file's creation durable too
		d.Close()
	}
	l := &Log{f: f, path: path, wake: make(chan struct{}, 1), done: make(chan struct{}), size: good,
		buf: make([]byte, 0, 1<<16)}
	go l.writer()
	return l, st, nil
}

// Path is the ledger file's path.
func (l *Log) Path() string { return l.path }

// Err is the write error after which the log refuses every record, or nil
// while it can still make records durable (a closed log is not an error).
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// refusing is why the log takes no more records (its write error, or
// ErrClosed once closing), or nil. l.mu must be held.
func (l *Log) refusing() error {
	switch {
	case l.failed != nil:
		return l.failed
	case l.closing:
		return ErrClosed
	}
	return nil
}

// Append queues r (copied) and calls done once it is durable. A nil r is a
// barrier: done runs once everything appended before it is durable.
func (l *Log) Append(r *Record, done Done) {
	l.mu.Lock()
	if err := l.refusing(); err != nil {
		l.mu.Unlock()
		if done != nil {
			done.Durable(r, err)
		}
		return
	}
	p := pending{done: done, off: len(l.buf)}
	if r != nil {
		start := len(l.buf)
		l.buf = append(l.buf, 0, 0, 0, 0, 0, 0, 0, 0)
		l.buf = appendRecord(l.buf, r)
		payload := l.buf[start+frameHeader:]
		binary.LittleEndian.PutUint32(l.buf[start:], uint32(len(payload)))
		binary.LittleEndian.PutUint32(l.buf[start+4:], crc32.Checksum(payload, crcTable))
		p.rec, p.has = *r, true
	}
	l.pend = append(l.pend, p)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Mark queues a barrier that is told, once everything appended before it
// is durable, the file offset it stands at: the state replayed up to that
// offset is exactly the state made by those records (see ReplayTo).
func (l *Log) Mark(at func(off int64, err error)) {
	l.mu.Lock()
	if err := l.refusing(); err != nil {
		l.mu.Unlock()
		at(0, err)
		return
	}
	l.pend = append(l.pend, pending{off: len(l.buf), at: at})
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Sync waits until everything appended so far is durable.
func (l *Log) Sync() error {
	ch := make(chan error, 1)
	l.Append(nil, DoneFunc(func(_ *Record, err error) { ch <- err }))
	return <-ch
}

// Stats returns the writer's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Close makes everything appended durable, stops the writer and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closing = true
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.done
	return l.f.Close()
}

func (l *Log) writer() {
	defer close(l.done)
	var (
		buf  = make([]byte, 0, 1<<16)
		pend []pending
	)
	for {
		<-l.wake
		for {
			l.mu.Lock()
			buf, l.buf = l.buf, buf[:0]
			pend, l.pend = l.pend, pend[:0]
			closing := l.closing
			l.mu.Unlock()
			if len(pend) == 0 {
				if closing {
					return
				}
				break
			}
			base := l.size
			err := l.write(buf)
			n := 0
			for i := range pend {
				if pend[i].has {
					n++
				}
			}
			l.mu.Lock()
			if err != nil && l.failed == nil {
				l.failed = err
			}
			l.stats.Records += uint64(n)
			l.stats.Batches++
			l.stats.Bytes = l.size
			l.mu.Unlock()
			for i := range pend {
				p := &pend[i]
				if p.at != nil {
					p.at(base+int64(p.off), err)
				}
				if p.done != nil {
					if p.has {
						p.done.Durable(&p.rec, err)
					} else {
						p.done.Durable(nil, err)
					}
				}
				*p = pending{}
			}
		}
	}
}

func (l *Log) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("ledger write: %w", err)
	}
	if !l.NoSync {
		if err := fdatasync(l.f); err != nil {
			return fmt.Errorf("ledger fsync: %w", err)
		}
	}
	l.size += int64(len(b))
	return nil
}

// Replay reads the ledger in dir (read-only) into a new State. A torn
// tail (a crash during a write) ends the replay; it is not an error.
func Replay(dir string) (*State, error) { return ReplayTo(dir, -1) }

// ReplayTo is Replay of the records before file offset limit (all if < 0).
func ReplayTo(dir string, limit int64) (*State, error) {
	f, err := os.Open(filepath.Join(dir, FileName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st := NewState()
	if _, err := replay(f, st.Apply, limit); err != nil {
		return nil, err
	}
	return st, nil
}

// replay applies every whole, valid record of f from its start (up to
// offset limit, if >= 0) and returns the offset just past the last one.
func replay(f *os.File, apply func(*Record), limit int64) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var (
		off int64
		hdr [frameHeader]byte
		p   []byte
		rec Record
	)
	for limit < 0 || off < limit {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return off, nil // end, or a torn header
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n < fixedSize || n > maxRecord {
			return off, nil
		}
		if cap(p) < int(n) {
			p = make([]byte, n)
		}
		p = p[:n]
		if _, err := io.ReadFull(r, p); err != nil {
			return off, nil
		}
		if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			return off, nil
		}
		if err := decodeRecord(p, &rec); err != nil {
			return off, nil
		}
		apply(&rec)
		off += frameHeader + int64(n)
	}
	return off, nil
}
