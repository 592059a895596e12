package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// ErrCorrupt marks a ledger damaged in its middle: bytes that hold no
// intact record, with intact records after them. A crash cannot leave that
// (it can only tear the last write, so nothing intact follows a torn
// tail), and those later records were durable: Open refuses such a file
// rather than cut them away, and the operator repairs it (Repair).
var ErrCorrupt = errors.New("ledger: corrupt")

// ErrLocked is returned when another process (a running server, or a
// repair) has the ledger open.
var ErrLocked = errors.New("ledger: in use by another process")

// Damage is a span of a ledger file that holds no intact record: the frame
// at Offset is not one (Reason says why), and no intact frame starts before
// Offset+Length.
type Damage struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	Reason string `json:"reason"`
	// After is the number of intact records after the span.
	After uint64 `json:"records_after"`
	// Tail: nothing intact follows and the span runs to the end of the
	// file, which is what a crash during the last write leaves (a torn
	// tail). A damaged last record looks the same and cannot be told apart.
	Tail bool `json:"torn_tail"`
	// timeBefore is the Time of the last intact record before the span.
	timeBefore int64
}

// Scan is what reading a ledger file in full found. The file is tiled by
// intact records and damaged spans: after a span, reading resumes at the
// next offset where an intact record starts.
type Scan struct {
	Path    string   `json:"path"`
	Size    int64    `json:"size"`    // bytes scanned
	Records uint64   `json:"records"` // intact records, those after damage too
	Damage  []Damage `json:"damage"`
	// Repairs are the KindRepair records: where earlier repairs dropped bytes.
	Repairs []Record `json:"-"`
}

// Tail returns the torn tail, if the file ends with one.
func (s *Scan) Tail() (Damage, bool) {
	if n := len(s.Damage); n > 0 && s.Damage[n-1].Tail {
		return s.Damage[n-1], true
	}
	return Damage{}, false
}

// Err is a *CorruptError when the file has damage with intact records
// after it, else nil (a clean file, or only a torn tail).
func (s *Scan) Err() error {
	var e *CorruptError
	for _, d := range s.Damage {
		if d.Tail {
			continue
		}
		if e == nil {
			e = &CorruptError{Path: s.Path, First: d}
		}
		e.Spans++
		e.Bytes += d.Length
	}
	if e == nil {
		return nil
	}
	return e
}

// CorruptError says where a ledger is damaged in its middle. It wraps ErrCorrupt.
type CorruptError struct {
	Path  string
	First Damage // the first damaged span
	Spans int    // damaged spans with intact records after them
	Bytes int64  // bytes in those spans
}

func (e *CorruptError) Error() string {
	s := fmt.Sprintf("ledger %s is corrupt at offset %d: %d bytes hold no intact record (%s) and %d intact records follow",
		e.Path, e.First.Offset, e.First.Length, e.First.Reason, e.First.After)
	if e.Spans > 1 {
		s += fmt.Sprintf(" (%d damaged spans, %d bytes in all)", e.Spans, e.Bytes)
	}
	return s
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Why a frame is not an intact record.
const (
	badHeader = "incomplete frame header"
	badLength = "length field out of range"
	badShort  = "record runs past the end of the file"
	badCRC    = "checksum mismatch"
	badDecode = "undecodable record"
)

// windowSize is the read-ahead: a frame of the largest size always fits
// after a refill at its start.
const windowSize = 1<<20 + frameHeader + maxRecord

// window reads a file through a buffer refilled at the offset asked for,
// so both the sequential replay and the byte-by-byte search after damage
// cost about one read per MiB.
type window struct {
	r    io.ReaderAt
	end  int64 // reading stops here
	buf  []byte
	base int64 // file offset of buf[0]
	n    int   // bytes of buf that are read
}

// at returns the bytes [off, off+n); off+n must not pass w.end.
func (w *window) at(off int64, n int) ([]byte, error) {
	if off >= w.base && off+int64(n) <= w.base+int64(w.n) {
		i := off - w.base
		return w.buf[i : i+int64(n)], nil
	}
	m := int(min(int64(len(w.buf)), w.end-off))
	k, err := w.r.ReadAt(w.buf[:m], off)
	if k < m {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("ledger: file shrank while read: %w", io.ErrUnexpectedEOF)
		}
		w.n = 0
		return nil, err
	}
	w.base, w.n = off, m
	return w.buf[:n], nil
}

// frame checks the frame at off: its size if it holds an intact record
// (decoded into rec), else 0 and why not. search (looking for the next
// record after damage) rejects a bad kind byte before the checksum: cheap,
// but the reason is then less exact.
func (w *window) frame(off int64, rec *Record, search bool) (int64, string, error) {
	if w.end-off < frameHeader {
		return 0, badHeader, nil
	}
	h, err := w.at(off, frameHeader)
	if err != nil {
		return 0, "", err
	}
	n := binary.LittleEndian.Uint32(h)
	if n < fixedSize || n > maxRecord || (n-fixedSize)%4 != 0 {
		return 0, badLength, nil
	}
	if int64(n) > w.end-off-frameHeader {
		return 0, badShort, nil
	}
	p, err := w.at(off, frameHeader+int(n))
	if err != nil {
		return 0, "", err
	}
	if k := Kind(p[frameHeader]); search && (k < KindCampaign || k > lastKind) {
		return 0, badDecode, nil
	}
	if crc32.Checksum(p[frameHeader:], crcTable) != binary.LittleEndian.Uint32(p[4:]) {
		return 0, badCRC, nil
	}
	if decodeRecord(p[frameHeader:], rec) != nil {
		return 0, badDecode, nil
	}
	return frameHeader + int64(n), "", nil
}

// resync returns the first offset from on where an intact record starts,
// or w.end if none does.
func (w *window) resync(from int64) (int64, error) {
	var rec Record
	for p := from; w.end-p >= frameHeader+fixedSize; p++ {
		size, _, err := w.frame(p, &rec, true)
		if err != nil {
			return 0, err
		}
		if size > 0 {
			return p, nil
		}
	}
	return w.end, nil
}

// scanFile is scan of f up to limit (its end if limit < 0).
func scanFile(f *os.File, path string, limit int64, apply func(*Record)) (Scan, error) {
	fi, err := f.Stat()
	if err != nil {
		return Scan{}, err
	}
	end := fi.Size()
	if limit >= 0 && limit < end {
		end = limit
	}
	return scan(f, end, path, apply)
}

// scan reads the first end bytes of r, calls apply (if not nil) with
// every intact record in order, those after damage too, and returns what
// it found.
func scan(r io.ReaderAt, end int64, path string, apply func(*Record)) (Scan, error) {
	w := &window{r: r, end: end, buf: make([]byte, min(windowSize, end))}
	sc := Scan{Path: path, Size: end}
	var (
		rec    Record
		before []uint64 // intact records before each damaged span
		last   int64    // the Time of the last intact record
	)
	for off := int64(0); off < end; {
		size, why, err := w.frame(off, &rec, false)
		if err != nil {
			return sc, fmt.Errorf("ledger: reading %s at %d: %w", path, off, err)
		}
		if size > 0 {
			sc.Records++
			last = rec.Time
			if rec.Kind == KindRepair {
				sc.Repairs = append(sc.Repairs, rec)
			}
			if apply != nil {
				apply(&rec)
			}
			off += size
			continue
		}
		if why == badLength {
			h, _ := w.at(off, frameHeader)
			why = fmt.Sprintf("%s: %d", why, binary.LittleEndian.Uint32(h))
		}
		next, err := w.resync(off + 1)
		if err != nil {
			return sc, fmt.Errorf("ledger: reading %s after damage at %d: %w", path, off, err)
		}
		sc.Damage = append(sc.Damage, Damage{Offset: off, Length: next - off, Reason: why, Tail: next == end, timeBefore: last})
		before = append(before, sc.Records)
		off = next
	}
	for i := range sc.Damage {
		sc.Damage[i].After = sc.Records - before[i]
	}
	return sc, nil
}

// Inspect reads the ledger in dir (read-only) in full: it replays every
// intact record into a new State, those after damage too (so that what a
// damaged span lost shows as violations of the State's invariants), and
// returns where the file is damaged. Only a failure to read is an error.
func Inspect(dir string) (*State, Scan, error) { return inspectTo(dir, -1) }

// inspectTo is Inspect of the records before file offset limit (all if < 0).
func inspectTo(dir string, limit int64) (*State, Scan, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if err != nil {
		return nil, Scan{}, err
	}
	defer f.Close()
	st := NewState()
	sc, err := scanFile(f, path, limit, st.Apply)
	if err != nil {
		return nil, sc, err
	}
	return st, sc, nil
}
