package load

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The raw dial path binds to the source it is given, connects, writes the
// first bytes whole and leaves keepalive off, over IPv4 and IPv6.
func TestDialersRawConnect(t *testing.T) {
	cases := []struct {
		name, listen, src string // src "": the kernel chooses
	}{
		{"v4 kernel source", "127.0.0.1:0", ""},
		{"v4 first source", "127.0.0.1:0", "127.0.0.1"},
		{"v4 second source", "127.0.0.1:0", "127.0.0.2"},
		{"v6 kernel source", "[::1]:0", ""},
		{"v6 source", "[::1]:0", "::1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err != nil {
				t.Skipf("listen %s: %v", tc.listen, err) // no IPv6 here
			}
			defer ln.Close()
			var sources []netip.Addr
			if tc.src != "" {
				sources = []netip.Addr{netip.MustParseAddr(tc.src)}
			}
			ds := makeDialers(sources)
			if len(ds) != 1 {
				t.Fatalf("%d dialers, want 1", len(ds))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			nc, err := ds[0].DialContext(ctx, "tcp", ln.Addr().String())
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer nc.Close()
			msg := []byte("first bytes of the connection")
			if err := writeFirst(nc.(*net.TCPConn), msg); err != nil {
				t.Fatalf("writeFirst: %v", err)
			}

			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			if got, want := sc.RemoteAddr().String(), nc.LocalAddr().String(); got != want {
				t.Errorf("server sees the client at %s, the client is at %s", got, want)
			}
			if tc.src != "" {
				if got := nc.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); got != sources[0] {
					t.Errorf("source %s, want %s", got, sources[0])
				}
			}
			buf := make([]byte, len(msg))
			_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != string(msg) {
				t.Errorf("server read %q, %v", buf, err)
			}

			rc, err := nc.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var ka int
			var kerr error
			_ = rc.Control(func(fd uintptr) { ka, kerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) })
			if kerr != nil || ka != 0 {
				t.Errorf("SO_KEEPALIVE %d (%v), want off", ka, kerr)
			}
		})
	}
}

// An IPv6 source for an IPv4 server is an error, not a panic.
func TestDialersSourceFamily(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := makeDialers([]netip.Addr{netip.MustParseAddr("::1")})[0]
	nc, err := d.Dial("tcp", ln.Addr().String())
	if err == nil {
		nc.Close()
		t.Fatal("dial from ::1 to an IPv4 server succeeded")
	}
	if !errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Errorf("%v, want address family not supported", err)
	}
}

// A refused connect is an error that says so, from either connect call.
func TestDialersRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, sources := range [][]netip.Addr{nil, {netip.MustParseAddr("127.0.0.3")}} {
		d := makeDialers(sources)[0]
		nc, err := d.Dial("tcp", addr)
		if err == nil {
			nc.Close()
			t.Fatalf("sources %v: dial to a closed port succeeded", sources)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("sources %v: %v, want connection refused", sources, err)
		}
	}
}
