package ledger

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive advisory lock on f, held while f stays open,
// so that one process at a time writes or repairs a ledger. Only a lock
// held elsewhere is an error: a file system without locks (ENOLCK,
// EOPNOTSUPP) must not stop the server.
func lockFile(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("%w: %s (stop the server using it first)", ErrLocked, f.Name())
	}
	return nil
}
