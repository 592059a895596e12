package server

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// The classic client below is written from classic-protocol.md alone: it
// builds and reads its frames with encoding/binary, not with package proto.

type classicConn struct {
	t *testing.T
	c net.Conn
}

func classicDial(t *testing.T, addr string) *classicConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &classicConn{t: t, c: c}
}

// send writes a frame: uint16 length (header included), uint16 command,
// uint64 Unix seconds, then the uint32 fields, all big-endian.
func (cc *classicConn) send(cmd uint16, fields ...uint32) {
	cc.t.Helper()
	b := make([]byte, 12+4*len(fields))
	binary.BigEndian.PutUint16(b[0:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[2:], cmd)
	binary.BigEndian.PutUint64(b[4:], uint64(time.Now().Unix()))
	for i, f := range fields {
		binary.BigEndian.PutUint32(b[12+4*i:], f)
	}
	if _, err := cc.c.Write(b); err != nil {
		cc.t.Fatal(err)
	}
}

// recv reads a frame the way the classic reader does (4 bytes, then
// length-4 more, which must be 4..40) and checks its command and size.
func (cc *classicConn) recv(wantCmd uint16, wantLen int) []uint32 {
	cc.t.Helper()
	if err := cc.c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		cc.t.Fatal(err)
	}
	var head [4]byte
	if _, err := io.ReadFull(cc.c, head[:]); err != nil {
		cc.t.Fatalf("reading a frame header: %v", err)
	}
	length := int(binary.BigEndian.Uint16(head[0:]))
	cmd := binary.BigEndian.Uint16(head[2:])
	if rest := length - 4; rest < 4 || rest > 40 {
		cc.t.Fatalf("frame length %d: the classic client drops the connection", length)
	}
	body := make([]byte, length-4)
	if _, err := io.ReadFull(cc.c, body); err != nil {
		cc.t.Fatalf("reading a frame body: %v", err)
	}
	if cmd != wantCmd || length != wantLen {
		cc.t.Fatalf("got command 0x%04x length %d, want 0x%04x length %d", cmd, length, wantCmd, wantLen)
	}
	if ts := int64(binary.BigEndian.Uint64(body[0:])); ts < time.Now().Unix()-5 || ts > time.Now().Unix()+5 {
		cc.t.Errorf("frame timestamp %d is not the current Unix time", ts)
	}
	fields := make([]uint32, (length-12)/4)
	for i := range fields {
		fields[i] = binary.BigEndian.Uint32(body[8+4*i:])
	}
	return fields
}

// TestClassicClient drives the server as the 10billionhongbaos client and
// control script would.
func TestClassicClient(t *testing.T) {
	const (
		user    = 4242
		packets = 25
	)
	s := startServer(t, func(o *Options) { o.AllowClassic = true; o.Secret = nil })
	cc := classicDial(t, s.Addr())

	// LoginRequest (0x0000, userid) -> LoginResponse (0x0001, userid, 0).
	cc.send(0x0000, user)
	if f := cc.recv(0x0001, 20); f[0] != user || f[1] != 0 {
		t.Fatalf("LoginResponse %v, want [%d 0]", f, user)
	}

	// Before any campaign a shake gets "no packet" (15).
	cc.send(0x0002, user)
	if f := cc.recv(0x0003, 28); f[0] != user || f[1] != 15 {
		t.Fatalf("YaoHongbaoResponse before a campaign: %v, want result 15", f)
	}

	// The control endpoint starts issuing N packets at R per second.
	if code, b := httpDo(t, s, "GET", fmt.Sprintf("/yaohongbao?qps=%d&sum=%d", 1000, packets), ""); code/100 != 2 {
		t.Fatalf("/yaohongbao: %d %s", code, b)
	}

	// Shake until all are taken: 14 with an amount for each packet, 15
	// while waiting for the issuer, then 16.
	got := map[uint32]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %d of %d packets, never 'all taken'", len(got), packets)
		}
		cc.send(0x0002, user)
		f := cc.recv(0x0003, 28)
		if f[0] != user {
			t.Fatalf("answer for user %d", f[0])
		}
		switch f[1] {
		case 14:
			if got[f[2]] {
				t.Fatalf("packet %d granted twice", f[2])
			}
			if f[3] < DefaultAmountMin || f[3] > DefaultAmountMax {
				t.Fatalf("packet amount %d outside [%d, %d]", f[3], DefaultAmountMin, DefaultAmountMax)
			}
			got[f[2]] = true
			continue
		case 15:
			if len(got) == packets {
				t.Fatal("'no packet' after the last packet, want 'all taken'")
			}
			time.Sleep(2 * time.Millisecond) // wait for the issuer
			continue
		case 16:
		default:
			t.Fatalf("result %d", f[1])
		}
		break
	}
	if len(got) != packets {
		t.Fatalf("'all taken' after %d of %d packets", len(got), packets)
	}
	cc.send(0x0002, user)
	if f := cc.recv(0x0003, 28); f[1] != 16 {
		t.Fatalf("shake after all taken: %v, want 16", f)
	}

	// GetHongbaoRequest with userid 0 (the session's user) is answered
	// with a GetHongbaoResponse for the packet id.
	cc.send(0x0005, 0, 12345)
	if f := cc.recv(0x0006, 20); f[0] != 12345 {
		t.Fatalf("GetHongbaoResponse %v, want packet id 12345", f)
	}

	// The connection is still alive and serving.
	cc.send(0x0002, user)
	cc.recv(0x0003, 28)
}
