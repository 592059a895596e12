// Package limits reads and raises the process's resource limits and says,
// with the fix, when a request does not fit in them.
package limits

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrTooFewFiles is returned when more sockets are needed than the process may open.
var ErrTooFewFiles = errors.New("not enough open files")

// Spare is the number of descriptors kept for everything but connections
// (listeners, logs, the runtime's own). It covers the server's reserve
// (96 + 3 per event loop, the default of --max-conns is the limit less
// that), so that a user count that passes this check is not shed.
const Spare = 128

// RaiseFiles lifts the soft open-file limit to the hard one and returns the
// resulting soft limit.
func RaiseFiles() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return r.Cur, nil
}

// NeedFiles raises the limit and checks that conns sockets fit in one
// process, returning an error that says what to change when they don't.
func NeedFiles(conns int, who string) error {
	have, err := RaiseFiles()
	if err != nil {
		return err
	}
	need := uint64(conns) + Spare
	if need <= have {
		return nil
	}
	return fmt.Errorf("%w: %s needs %d open files for %d connections, this process may open %d; "+
		"raise the limit (as root: 'ulimit -n %d', and 'sysctl -w fs.nr_open=%d' if that is above it) "+
		"or ask for at most %d connections per process", ErrTooFewFiles, who, need, conns, have, need, need, int(have)-Spare)
}

// PortRange reads the kernel's ephemeral port range.
func PortRange() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	lo, hi, ok := ParsePortRange(string(b))
	if !ok {
		return 0, 0, fmt.Errorf("ip_local_port_range: unexpected %q", b)
	}
	return lo, hi, nil
}

// ParsePortRange parses the text of ip_local_port_range ("32768\t60999").
func ParsePortRange(s string) (lo, hi int, ok bool) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, false
	}
	return lo, hi, true
}
