package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
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

	size   int64     // bytes durable in the file, owned by the writer
	torn   *TornTail // cut off by Open
	stats  Stats     // guarded by mu
	NoSync bool      // skip fsync (benchmarks of the write path only)
}

// Stats are the writer's counters.
type Stats struct {
	Records uint64 `json:"records"`
	Batches uint64 `json:"batches"`
	Bytes   int64  `json:"bytes"`
}

// Open opens (creating it if needed) the ledger in dir, replays it into a
// new State, and starts the writer. Only a torn tail (bytes after the last
// intact record with no intact record in them: what a crash during the
// last write leaves) is cut off; its bytes are kept in a side file first
// (see TornTail). Damage followed by intact records is not a crash's doing
// and those records were durable: Open then returns a *CorruptError
// (ErrCorrupt) and leaves the file as it is, for the audit and Repair.
// While open, the file is locked against a second Open or a Repair
// (ErrLocked).
func Open(dir string) (*Log, *State, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	l, st, err := openLog(dir, path, f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return l, st, nil
}

func openLog(dir, path string, f *os.File) (*Log, *State, error) {
	if err := lockFile(f); err != nil {
		return nil, nil, err
	}
	st := NewState()
	sc, err := scanFile(f, path, -1, st.Apply)
	if err != nil {
		return nil, nil, err
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	good := sc.Size
	var torn *TornTail
	if d, ok := sc.Tail(); ok {
		now := time.Now()
		header := fmt.Sprintf("torn tail cut off %s (%d bytes) when the ledger was opened at %s",
			path, sc.Size, now.UTC().Format(time.RFC3339))
		side, err := saveSpans(dir, f, "torn", []Damage{d}, now, header)
		if err != nil {
			return nil, nil, err
		}
		torn, good = &TornTail{Damage: d, SideFile: side}, d.Offset
	}
	if err := f.Truncate(good); err != nil {
		return nil, nil, err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		return nil, nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, nil, err
	}
	_ = syncDir(dir) // make the file's creation durable too
	l := &Log{f: f, path: path, wake: make(chan struct{}, 1), done: make(chan struct{}), size: good,
		buf: make([]byte, 0, 1<<16), torn: torn}
	go l.writer()
	return l, st, nil
}

// TornTail is a torn tail Open cut off, and the side file keeping its bytes.
type TornTail struct {
	Damage
	SideFile string
}

// TornTail is what Open cut off the end of the file, or nil.
func (l *Log) TornTail() *TornTail { return l.torn }

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
		l.buf = appendFrame(l.buf, r)
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

// appendFrame appends r framed: its payload's length and CRC-32C, then the payload.
func appendFrame(b []byte, r *Record) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	b = appendRecord(b, r)
	payload := b[start+frameHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b
}

// ReplayTo replays this ledger's file up to offset limit (see ReplayTo):
// at a Mark's offset, the state the records before the mark made.
func (l *Log) ReplayTo(limit int64) (*State, error) { return ReplayTo(filepath.Dir(l.path), limit) }

// Replay reads the ledger in dir (read-only) into a new State. A torn
// tail (a crash during a write) ends the replay; damage followed by
// intact records is a *CorruptError (see Inspect to read past it).
func Replay(dir string) (*State, error) { return ReplayTo(dir, -1) }

// ReplayTo is Replay of the records before file offset limit (all if < 0).
// Every byte before a limit >= 0 must be intact (a mark stands after
// durable records): a torn tail there is a *CorruptError too.
func ReplayTo(dir string, limit int64) (*State, error) {
	st, sc, err := inspectTo(dir, limit)
	if err != nil {
		return nil, err
	}
	if limit >= 0 {
		for i := range sc.Damage {
			sc.Damage[i].Tail = false
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return st, nil
}
