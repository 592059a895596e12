package load

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The dial path makes its costly system calls raw, without telling the Go
// scheduler. A loopback connect() runs the whole handshake, the server's
// half included, inside the call, and the login's write runs the server's
// receive. Made through syscall.Syscall, each marks the P as in a system
// call, and with other dialers waiting sysmon hands the P to another
// thread after 20 µs; a connect that returns EINPROGRESS then parks the
// dialer until the poller reports the socket writable. Made raw, the P
// stays with the dialer, and Go's own connect() finds the socket connected.
// A million-user ramp on 2 cores (52 client processes) went from 74 s to
// 58 s (median of 14 runs), and the run's CPU from 147-168 to 127-140 s.

// earlyConnect is a net.Dialer's ControlContext: it binds the new socket to
// src (when valid) with IP_BIND_ADDRESS_NO_PORT, so that the port is picked
// at connect time for the full 4-tuple (without it bind() searches for a
// free port by itself and slows to a crawl past ~15k sockets per address),
// and starts the connect to the dialer's address. On loopback the connect
// is complete when the call returns, so the dialer's own connect() returns
// 0 and it does not wait for the poller; elsewhere it gets EALREADY and
// waits as usual.
func earlyConnect(src netip.Addr) func(ctx context.Context, network, address string, rc syscall.RawConn) error {
	return func(_ context.Context, network, address string, rc syscall.RawConn) error {
		dst, err := netip.ParseAddrPort(address)
		if err != nil || dst.Addr().Zone() != "" {
			return fmt.Errorf("load: dial %s: not a numeric address without zone", address)
		}
		v6 := network == "tcp6"
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = bindConnect(int(fd), v6, src, dst)
		}); err != nil {
			return fmt.Errorf("load: raw control: %w", err)
		}
		return serr
	}
}

// bindConnect binds fd to src if valid and starts its connect to dst.
func bindConnect(fd int, v6 bool, src netip.Addr, dst netip.AddrPort) error {
	if src.IsValid() {
		one := int32(1)
		_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT,
			uintptr(unsafe.Pointer(&one)), 4, 0)
		// On IPv4 sockets the option is what makes a bound source address
		// scale, so failing to set it is an error; on IPv6 it is best effort.
		if e != 0 && !v6 {
			return os.NewSyscallError("setsockopt IP_BIND_ADDRESS_NO_PORT", e)
		}
		if e := sockaddrCall(unix.SYS_BIND, fd, v6, netip.AddrPortFrom(src, 0)); e != 0 {
			return os.NewSyscallError("bind", e)
		}
	}
	switch e := sockaddrCall(unix.SYS_CONNECT, fd, v6, dst); e {
	case 0, unix.EINPROGRESS:
		return nil
	default:
		return os.NewSyscallError("connect", e)
	}
}

// sockaddrCall makes the raw system call trap (bind or connect) on fd with
// the socket address ap, in the socket's family.
func sockaddrCall(trap uintptr, fd int, v6 bool, ap netip.AddrPort) syscall.Errno {
	if !v6 {
		a := ap.Addr().Unmap()
		if !a.Is4() {
			return unix.EAFNOSUPPORT // an IPv6 source for an IPv4 server
		}
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Port: netPort(ap.Port()), Addr: a.As4()}
		_, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4)
		return e
	}
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: netPort(ap.Port()), Addr: ap.Addr().As16()}
	_, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet6)
	return e
}

// netPort is port as a sockaddr holds it: in network byte order, whatever
// the machine's.
func netPort(port uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], port)
	return *(*uint16)(unsafe.Pointer(&b))
}

// writeFirst writes b, the first bytes of a fresh connection, whole, with a
// raw write: an empty send buffer takes them at once.
func writeFirst(tc *net.TCPConn, b []byte) error {
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var n uintptr
	var e syscall.Errno
	if err := rc.Write(func(fd uintptr) bool {
		n, _, e = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		return true
	}); err != nil {
		return err
	}
	switch {
	case e != 0:
		return os.NewSyscallError("write", e)
	case int(n) != len(b):
		return fmt.Errorf("short write: %d of %d bytes", n, len(b))
	}
	return nil
}
