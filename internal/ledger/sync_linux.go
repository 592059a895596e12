package ledger

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes the file's data and the metadata needed to read it
// back (its size), which is all an append needs.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
