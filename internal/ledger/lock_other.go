//go:build !linux

package ledger

import "os"

// lockFile does nothing here: the ledger is locked on Linux only.
func lockFile(*os.File) error { return nil }
