package ledger

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// RepairResult is what Repair did.
type RepairResult struct {
	Path       string `json:"path"`
	SizeBefore int64  `json:"size_before"`
	SizeAfter  int64  `json:"size_after"`
	// Records are the intact records kept (every one the file had).
	Records uint64 `json:"records"`
	// Dropped are the damaged spans taken out, at their offsets in the
	// file as it was; DroppedBytes sums their lengths.
	Dropped      []Damage `json:"dropped"`
	DroppedBytes int64    `json:"dropped_bytes"`
	// SideFile keeps the dropped bytes ("" when nothing was dropped).
	SideFile string `json:"side_file,omitempty"`
}

// Repair rewrites the ledger in dir without its damaged spans: every
// intact record is kept, those after damage too, in their order; each
// dropped span is replaced by a KindRepair record saying where it was and
// how long, so the loss stays visible to every later audit; the dropped
// bytes are written (in hex, with their offsets) to a side file in dir
// first. The new file is written beside the old, synced, read back, and
// renamed over it; then the directory is synced: a crash leaves the old
// file or the new one, never a mix. A clean ledger is left as it is.
//
// Records found after a damaged span are found by searching byte by byte
// for the next frame whose length, checksum and fields are valid; what the
// dropped span held (a funding, a grant) is gone, and records that depend
// on it show as violations in the audit of the repaired file.
//
// It refuses (ErrLocked) while a server has the ledger open. now names the
// side file and stamps the repair records.
func Repair(dir string, now time.Time) (RepairResult, error) {
	path := filepath.Join(dir, FileName)
	res := RepairResult{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		return res, err
	}
	fi, err := f.Stat()
	if err != nil {
		return res, err
	}
	sc, err := scanFile(f, path, -1, nil)
	if err != nil {
		return res, err
	}
	res.SizeBefore, res.SizeAfter, res.Records, res.Dropped = sc.Size, sc.Size, sc.Records, sc.Damage
	if len(sc.Damage) == 0 {
		return res, nil
	}
	for _, d := range sc.Damage {
		res.DroppedBytes += d.Length
	}
	header := fmt.Sprintf("bytes 'hongbao ledger repair' dropped from %s (%d bytes) at %s",
		path, sc.Size, now.UTC().Format(time.RFC3339))
	if res.SideFile, err = saveSpans(dir, f, "dropped", sc.Damage, now, header); err != nil {
		return res, err
	}

	tmp := path + ".repair-tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err // left by an interrupted repair: never the ledger itself
	}
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp) // after the rename there is nothing to remove
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	var pos int64
	for _, d := range sc.Damage {
		if _, err := io.Copy(bw, io.NewSectionReader(f, pos, d.Offset-pos)); err != nil {
			return res, fmt.Errorf("ledger repair: copying: %w", err)
		}
		mark := Record{Kind: KindRepair, Time: d.timeBefore, Expiry: now.UnixMilli(), Key: uint64(d.Offset), Amount: uint64(d.Length)}
		if _, err := bw.Write(appendFrame(nil, &mark)); err != nil {
			return res, fmt.Errorf("ledger repair: writing: %w", err)
		}
		pos = d.Offset + d.Length
	}
	if _, err := io.Copy(bw, io.NewSectionReader(f, pos, sc.Size-pos)); err != nil {
		return res, fmt.Errorf("ledger repair: copying: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return res, fmt.Errorf("ledger repair: writing: %w", err)
	}
	if err := out.Sync(); err != nil {
		return res, fmt.Errorf("ledger repair: syncing: %w", err)
	}
	// Read back what will replace the ledger before it does.
	check, err := scanFile(out, tmp, -1, nil)
	if err != nil {
		return res, err
	}
	if want := sc.Records + uint64(len(sc.Damage)); len(check.Damage) > 0 || check.Records != want {
		return res, fmt.Errorf("ledger repair: the rewritten file reads back as %d records with %d damaged spans, want %d and none; %s is unchanged",
			check.Records, len(check.Damage), want, path)
	}
	if err := out.Close(); err != nil {
		return res, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return res, err
	}
	if err := syncDir(dir); err != nil {
		return res, fmt.Errorf("ledger repair: syncing %s: %w", dir, err)
	}
	res.SizeAfter = check.Size
	return res, nil
}

// saveSpans writes the bytes of spans of src to a new side file in dir,
// named ledger.log.<what>-<time>: a '#' header, then per span a line
// "span offset=O length=N reason=... records_after=K" and its bytes as
// lines "OFFSET HEX" of 32 bytes each, OFFSET being the file offset of the
// line's first byte. The file is synced, and the directory.
func saveSpans(dir string, src io.ReaderAt, what string, spans []Damage, now time.Time, header string) (string, error) {
	base := filepath.Join(dir, fmt.Sprintf("%s.%s-%s", FileName, what, now.UTC().Format("20060102T150405Z")))
	var (
		f    *os.File
		err  error
		name string
	)
	for i := 0; i < 100; i++ {
		name = base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		if f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("ledger: side file: %w", err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	fmt.Fprintf(bw, "# %s\n# per span: its line, then its bytes in hex, 32 a line, each line led by the offset of its first byte\n", header)
	buf := make([]byte, 32)
	for _, d := range spans {
		fmt.Fprintf(bw, "span offset=%d length=%d reason=%q records_after=%d torn_tail=%v\n", d.Offset, d.Length, d.Reason, d.After, d.Tail)
		for off := d.Offset; off < d.Offset+d.Length; off += 32 {
			b := buf[:min(32, d.Offset+d.Length-off)]
			if _, err := src.ReadAt(b, off); err != nil && !(err == io.EOF && off+int64(len(b)) == d.Offset+d.Length) {
				return "", fmt.Errorf("ledger: side file: reading at %d: %w", off, err)
			}
			fmt.Fprintf(bw, "%d %x\n", off, b)
		}
	}
	if err := bw.Flush(); err != nil {
		return "", fmt.Errorf("ledger: side file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("ledger: side file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("ledger: side file: %w", err)
	}
	return name, syncDir(dir)
}

// syncDir makes the creation or renaming of a file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
