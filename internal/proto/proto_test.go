package proto_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"hongbao/internal/proto"
)

const stamp uint64 = 1_700_000_000

var testToken = proto.Token{User: 42, Expiry: 1<<40 + 7, MAC: [32]byte{1, 2, 3, 30: 0xfe, 31: 0xff}}

// frameCase is one encoder of every command, with what its decoding must give.
type frameCase struct {
	name   string
	encode func(dst []byte) []byte
	cmd    proto.Cmd
	fields []uint32 // uint32 payload fields; nil for CmdTokenLogin
}

func frameCases() []frameCase {
	return []frameCase{
		{"login", func(d []byte) []byte { return proto.AppendLogin(d, stamp, 7) }, proto.CmdLogin, []uint32{7}},
		{"login resp", func(d []byte) []byte { return proto.AppendLoginResp(d, stamp, 7, proto.ResultOK) }, proto.CmdLoginResp, []uint32{7, 0}},
		{"shake", func(d []byte) []byte { return proto.AppendShake(d, stamp, 1<<32-1) }, proto.CmdShake, []uint32{1<<32 - 1}},
		{"shake resp", func(d []byte) []byte { return proto.AppendShakeResp(d, stamp, 9, proto.ResultGot, 123, 456) }, proto.CmdShakeResp, []uint32{9, 14, 123, 456}},
		{"classic push", func(d []byte) []byte { return proto.AppendFrame(d, proto.CmdClassicPush, stamp, 5, 300, 3, 1, 2, 3) }, proto.CmdClassicPush, []uint32{5, 300, 3, 1, 2, 3}},
		{"classic open", func(d []byte) []byte { return proto.AppendFrame(d, proto.CmdClassicOpen, stamp, 0, 5) }, proto.CmdClassicOpen, []uint32{0, 5}},
		{"classic open resp", func(d []byte) []byte { return proto.AppendFrame(d, proto.CmdClassicOpenR, stamp, 5, 77) }, proto.CmdClassicOpenR, []uint32{5, 77}},
		{"token login", func(d []byte) []byte { return proto.AppendTokenLogin(d, stamp, 42, &testToken) }, proto.CmdTokenLogin, nil},
		{"error", func(d []byte) []byte { return proto.AppendError(d, stamp, proto.ReasonReplaced, proto.CmdTokenLogin) }, proto.CmdError, []uint32{10, 0x0100}},
		{"ping", func(d []byte) []byte { return proto.AppendPing(d, proto.CmdPing, stamp, 0xdeadbeef) }, proto.CmdPing, []uint32{0xdeadbeef}},
		{"pong", func(d []byte) []byte { return proto.AppendPing(d, proto.CmdPong, stamp, 0xdeadbeef) }, proto.CmdPong, []uint32{0xdeadbeef}},
		{"send resp", func(d []byte) []byte { return proto.AppendFrame(d, proto.CmdSendResp, stamp, 0, 9, 0, 1) }, proto.CmdSendResp, []uint32{0, 9, 0, 1}},
		{"push", func(d []byte) []byte { return proto.AppendFrame(d, proto.CmdPush, stamp, 9, 5, 300, 3) }, proto.CmdPush, []uint32{9, 5, 300, 3}},
		{"open", func(d []byte) []byte { return proto.AppendFrame(d, proto.CmdOpen, stamp, 9) }, proto.CmdOpen, []uint32{9}},
		{"open resp", func(d []byte) []byte { return proto.AppendFrame(d, proto.CmdOpenResp, stamp, 9, 0, 120) }, proto.CmdOpenResp, []uint32{9, 0, 120}},
		{"list", func(d []byte) []byte { return proto.AppendFrame(d, proto.CmdList, stamp, 1) }, proto.CmdList, []uint32{1}},
		{"refund", func(d []byte) []byte { return proto.AppendFrame(d, proto.CmdRefund, stamp, 9, 40) }, proto.CmdRefund, []uint32{9, 40}},
		{"send, no recipients", func(d []byte) []byte { return proto.AppendSend(d, stamp, 300, 3, 1<<40|5, nil) }, proto.CmdSend, []uint32{300, 3, 1 << 8, 5, 0}},
		{"list resp, empty", func(d []byte) []byte { return proto.AppendListResp(d, stamp, 4, nil) }, proto.CmdListResp, []uint32{4, 0}},
	}
}

func TestRoundTripEveryCommand(t *testing.T) {
	seen := map[proto.Cmd]bool{}
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			seen[tc.cmd] = true
			prefix := []byte("keep")
			b := tc.encode(append([]byte(nil), prefix...))
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("encoder clobbered the bytes already in dst: % x", b)
			}
			b = b[len(prefix):]
			size, ok := proto.PayloadSize(tc.cmd)
			if !ok {
				t.Fatalf("PayloadSize(%#04x) unknown", uint16(tc.cmd))
			}
			if len(b) != proto.HeaderSize+size {
				t.Fatalf("frame is %d bytes, want %d", len(b), proto.HeaderSize+size)
			}
			if tc.fields != nil && size != 4*len(tc.fields) {
				t.Fatalf("PayloadSize %d, want %d fields", size, len(tc.fields))
			}
			h, p, err := proto.Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if h.Len != uint16(len(b)) || h.Cmd != tc.cmd || h.Time != stamp {
				t.Fatalf("header %+v, want len %d cmd %#04x time %d", h, len(b), uint16(tc.cmd), stamp)
			}
			if len(p) != size || &p[0] != &b[proto.HeaderSize] {
				t.Fatalf("payload of %d bytes not aliasing the frame", len(p))
			}
			if tc.cmd == proto.CmdTokenLogin {
				var tok proto.Token
				if user := proto.DecodeTokenLogin(p, &tok); user != 42 || tok != testToken {
					t.Fatalf("token login decoded as user %d token %+v", user, tok)
				}
				return
			}
			for i, want := range tc.fields {
				if got := proto.U32(p, i); got != want {
					t.Errorf("field %d = %d, want %d", i, got, want)
				}
			}
			if again := proto.AppendFrame(nil, h.Cmd, h.Time, tc.fields...); !bytes.Equal(again, b) {
				t.Fatalf("AppendFrame re-encoding differs:\n got % x\nwant % x", again, b)
			}
		})
	}
	// Every id PayloadSize knows must have been covered above.
	for c := 0; c <= 0xffff; c++ {
		if _, ok := proto.PayloadSize(proto.Cmd(c)); ok && !seen[proto.Cmd(c)] {
			t.Errorf("command %#04x has no round-trip case", c)
		}
	}
}

// TestHeaderLayout pins the byte layout against classic-protocol.md.
func TestHeaderLayout(t *testing.T) {
	b := proto.AppendShakeResp(nil, 0x0102030405060708, 0xa1a2a3a4, 14, 0xb1b2b3b4, 0xc1c2c3c4)
	want := []byte{
		0, 28, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8,
		0xa1, 0xa2, 0xa3, 0xa4, 0, 0, 0, 14, 0xb1, 0xb2, 0xb3, 0xb4, 0xc1, 0xc2, 0xc3, 0xc4,
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("got  % x\nwant % x", b, want)
	}
}

func frame(length uint16, cmd proto.Cmd, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint16(b, length)
	if size >= 4 {
		binary.BigEndian.PutUint16(b[2:], uint16(cmd))
	}
	return b
}

func TestParseRejects(t *testing.T) {
	shake := proto.AppendShake(nil, stamp, 1)
	tokenLogin := proto.AppendTokenLogin(nil, stamp, 1, &testToken)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, proto.ErrBadLength},
		{"shorter than a header", shake[:11], proto.ErrBadLength},
		{"length field below header size", frame(5, proto.CmdShake, 12), proto.ErrBadLength},
		{"length field says more than given", frame(16, proto.CmdShake, 12), proto.ErrBadLength},
		{"length field says less than given", append(append([]byte(nil), shake...), 0), proto.ErrBadLength},
		{"length above MaxFrame", frame(proto.MaxFrame+1, proto.CmdShake, proto.MaxFrame+1), proto.ErrBadLength},
		{"length 0xffff", frame(0xffff, proto.CmdShake, 0xffff), proto.ErrBadLength},
		{"unknown command", frame(16, 0x7777, 16), proto.ErrUnknownCommand},
		{"unassigned group command", frame(16, 0x011f, 16), proto.ErrUnknownCommand},
		{"send truncated", frame(16, proto.CmdSend, 16), proto.ErrBadPayload},
		{"command between classic and ours", frame(16, 0x0007, 16), proto.ErrUnknownCommand},
		{"shake truncated to 14", frame(14, proto.CmdShake, 14), proto.ErrBadPayload},
		{"shake with empty payload", frame(12, proto.CmdShake, 12), proto.ErrBadPayload},
		{"shake padded to 20", frame(20, proto.CmdShake, 20), proto.ErrBadPayload},
		{"shake resp truncated", frame(24, proto.CmdShakeResp, 24), proto.ErrBadPayload},
		{"token login truncated", frame(uint16(len(tokenLogin)-1), proto.CmdTokenLogin, len(tokenLogin)-1), proto.ErrBadPayload},
		{"error frame too long", frame(24, proto.CmdError, 24), proto.ErrBadPayload},
		{"max-size frame of a small command", frame(proto.MaxFrame, proto.CmdPing, proto.MaxFrame), proto.ErrBadPayload},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, p, err := proto.Parse(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse err = %v, want %v", err, tc.want)
			}
			if p != nil {
				t.Fatalf("payload %x returned with an error", p)
			}
			var r proto.Reason
			if !errors.As(err, &r) || !proto.IsReason(fmt.Errorf("wrapped: %w", err), r) {
				t.Fatalf("error %v is not a proto.Reason", err)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	var stream []byte
	var want [][]byte
	for _, tc := range frameCases() {
		f := tc.encode(nil)
		want = append(want, f)
		stream = append(stream, f...)
	}
	// Whole stream: every frame in order, nothing left.
	rest := stream
	for i := 0; ; i++ {
		f, r, err := proto.Split(rest)
		if err != nil {
			t.Fatal(err)
		}
		if f == nil {
			if i != len(want) || len(r) != 0 {
				t.Fatalf("stopped after %d frames with %d bytes left", i, len(r))
			}
			break
		}
		if !bytes.Equal(f, want[i]) {
			t.Fatalf("frame %d = % x, want % x", i, f, want[i])
		}
		rest = r
	}
	// Every prefix of the first frame: more bytes needed, buffer untouched.
	first := want[0]
	for n := 0; n < len(first); n++ {
		f, r, err := proto.Split(first[:n])
		if f != nil || err != nil || len(r) != n {
			t.Fatalf("prefix %d: frame %x rest %d err %v, want more-needed", n, f, len(r), err)
		}
	}

	bad := []struct {
		name string
		b    []byte
	}{
		{"length 0", []byte{0, 0}},
		{"length 11", []byte{0, 11, 0, 2}},
		{"length MaxFrame+1", frame(proto.MaxFrame+1, proto.CmdShake, 4)},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n")},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			f, _, err := proto.Split(tc.b)
			if !errors.Is(err, proto.ErrBadLength) || f != nil {
				t.Fatalf("Split = %x, %v; want ErrBadLength", f, err)
			}
		})
	}
}

func TestReasonText(t *testing.T) {
	for r := proto.ReasonNone; r < proto.NumReasons; r++ {
		if s := r.String(); s == "" || strings.HasPrefix(s, "reason(") {
			t.Errorf("reason %d has no text: %q", r, s)
		}
	}
	if got := proto.Reason(999).String(); got != "reason(999)" {
		t.Errorf("unknown reason text %q", got)
	}
	if proto.IsReason(errors.New("x"), proto.ReasonBadLength) || proto.IsReason(nil, proto.ReasonNone) {
		t.Error("IsReason true for a non-reason")
	}
}

func TestZeroAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	shake := proto.AppendShake(nil, stamp, 1)
	resp := proto.AppendShakeResp(nil, stamp, 1, proto.ResultGot, 2, 3)
	stream := append(append([]byte(nil), shake...), resp...)
	var sink int
	tests := []struct {
		name string
		fn   func()
	}{
		{"AppendShake", func() { buf = proto.AppendShake(buf[:0], stamp, 7) }},
		{"AppendShakeResp", func() { buf = proto.AppendShakeResp(buf[:0], stamp, 7, proto.ResultGot, 1, 2) }},
		{"AppendLoginResp", func() { buf = proto.AppendLoginResp(buf[:0], stamp, 7, 0) }},
		{"AppendError", func() { buf = proto.AppendError(buf[:0], stamp, proto.ReasonBadUser, proto.CmdShake) }},
		{"Parse", func() {
			h, p, err := proto.Parse(resp)
			if err != nil {
				panic(err)
			}
			sink += int(h.Len) + int(proto.U32(p, 3))
		}},
		{"Parse error", func() {
			_, _, err := proto.Parse(shake[:14])
			if err == nil {
				panic("no error")
			}
		}},
		{"Split", func() {
			rest := stream
			for {
				f, r, err := proto.Split(rest)
				if err != nil || f == nil {
					break
				}
				sink += len(f)
				rest = r
			}
		}},
	}
	for _, tc := range tests {
		if n := testing.AllocsPerRun(200, tc.fn); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tc.name, n)
		}
	}
	_ = sink
}

func BenchmarkAppendParseShake(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = proto.AppendShake(buf[:0], stamp, uint32(i))
		h, p, err := proto.Parse(buf)
		if err != nil || h.Cmd != proto.CmdShake || proto.U32(p, 0) != uint32(i) {
			b.Fatal("bad round trip")
		}
	}
}

func BenchmarkAppendParseShakeResp(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = proto.AppendShakeResp(buf[:0], stamp, uint32(i), proto.ResultGot, 1, 2)
		h, p, err := proto.Parse(buf)
		if err != nil || h.Cmd != proto.CmdShakeResp || proto.U32(p, 0) != uint32(i) {
			b.Fatal("bad round trip")
		}
	}
}

// BenchmarkSplitParseStream is the server's read path: a buffer of
// pipelined shakes cut into frames and parsed.
func BenchmarkSplitParseStream(b *testing.B) {
	var stream []byte
	for i := 0; i < 64; i++ {
		stream = proto.AppendShake(stream, stamp, uint32(i))
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		rest := stream
		for {
			f, r, err := proto.Split(rest)
			if err != nil {
				b.Fatal(err)
			}
			if f == nil {
				break
			}
			if _, _, err := proto.Parse(f); err != nil {
				b.Fatal(err)
			}
			rest = r
		}
	}
}

func TestVariableFrames(t *testing.T) {
	to := []uint32{3, 1, 4, 1, 5}
	b := proto.AppendSend(nil, stamp, 500, 2, 0xabcdef0123, to)
	h, p, err := proto.Parse(b)
	if err != nil || h.Cmd != proto.CmdSend {
		t.Fatalf("Parse send: %v %#04x", err, uint16(h.Cmd))
	}
	if proto.U32(p, 0) != 500 || proto.U32(p, 1) != 2 || proto.U64(p, 2) != 0xabcdef0123 || proto.U32(p, 4) != 5 {
		t.Fatalf("send fields wrong: % x", p)
	}
	items := proto.Items(h.Cmd, p)
	for i, u := range to {
		if proto.U32(items, i) != u {
			t.Fatalf("recipient %d = %d, want %d", i, proto.U32(items, i), u)
		}
	}
	// A count that disagrees with the length, either way, is a bad payload.
	for _, n := range []uint32{4, 6, proto.MaxRecipients + 1} {
		bad := append([]byte(nil), b...)
		bad[proto.HeaderSize+16], bad[proto.HeaderSize+17], bad[proto.HeaderSize+18], bad[proto.HeaderSize+19] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		if _, _, err := proto.Parse(bad); !errors.Is(err, proto.ErrBadPayload) {
			t.Errorf("count %d for 5 recipients: err %v, want bad payload", n, err)
		}
	}
	// Shorter than the fixed part.
	short := proto.AppendFrame(nil, proto.CmdSend, stamp, 1, 2, 3)
	if _, _, err := proto.Parse(short); !errors.Is(err, proto.ErrBadPayload) {
		t.Errorf("truncated send: %v", err)
	}
	// The largest send fits in a frame.
	big := proto.AppendSend(nil, stamp, 1, 1, 1, make([]uint32, proto.MaxRecipients))
	if _, _, err := proto.Parse(big); err != nil || len(big) > proto.MaxFrame {
		t.Fatalf("max send of %d bytes: %v", len(big), err)
	}
	l := proto.AppendListResp(nil, stamp, 7, []uint32{10, 11})
	h, p, err = proto.Parse(l)
	if err != nil || proto.U32(p, 1) != 2 || proto.U32(proto.Items(h.Cmd, p), 1) != 11 {
		t.Fatalf("list resp: %v % x", err, p)
	}
}

func TestParseVariableAllocatesNothing(t *testing.T) {
	b := proto.AppendSend(nil, stamp, 500, 2, 1, []uint32{1, 2, 3})
	if n := testing.AllocsPerRun(100, func() { _, _, _ = proto.Parse(b) }); n != 0 {
		t.Fatalf("Parse allocates %v per frame", n)
	}
}

func TestReasonNamesAreDenseAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for r := proto.Reason(0); r < proto.NumReasons; r++ {
		n := r.Name()
		if n == "" || seen[n] || strings.ContainsAny(n, " -;") || strings.HasPrefix(r.String(), "reason(") {
			t.Errorf("reason %d: name %q empty, repeated or not snake_case, or no text", r, n)
		}
		seen[n] = true
	}
	if n := proto.Reason(proto.NumReasons).Name(); n != fmt.Sprintf("reason_%d", proto.NumReasons) {
		t.Errorf("unknown reason named %q", n)
	}
}
