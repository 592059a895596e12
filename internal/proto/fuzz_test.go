package proto_test

import (
	"bytes"
	"errors"
	"testing"

	"hongbao/internal/proto"
)

// seedFrames adds a valid frame of every command, a pipelined stream of
// them, and some garbage.
func seedFrames(f *testing.F) {
	var stream []byte
	for _, tc := range frameCases() {
		b := tc.encode(nil)
		f.Add(b)
		stream = append(stream, b...)
	}
	f.Add(proto.AppendSend(nil, 1, 300, 3, 77, []uint32{1, 2, 3}))
	f.Add(proto.AppendListResp(nil, 1, 9, []uint32{4, 5}))
	f.Add(stream)
	f.Add(stream[:len(stream)-3])
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(frame(14, proto.CmdShake, 14))
	f.Add(frame(16, 0x7777, 16))
	f.Add(frame(5, proto.CmdShake, 12))
	f.Add(frame(proto.MaxFrame+1, proto.CmdShake, proto.MaxFrame+1))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
}

// FuzzParse: Parse never panics, and any frame it accepts is consistent
// with its command's size and re-encodes to the same bytes.
func FuzzParse(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := proto.Parse(b)
		if err != nil {
			if p != nil {
				t.Fatalf("payload returned with error %v", err)
			}
			if !errors.Is(err, proto.ErrBadLength) && !errors.Is(err, proto.ErrUnknownCommand) && !errors.Is(err, proto.ErrBadPayload) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if int(h.Len) != len(b) || len(b) < proto.HeaderSize || len(b) > proto.MaxFrame {
			t.Fatalf("accepted frame of %d bytes with length field %d", len(b), h.Len)
		}
		size, ok := proto.PayloadSize(h.Cmd)
		if ok && proto.IsVariable(h.Cmd) && len(p) >= size && (len(p)-size)%4 == 0 &&
			int(proto.U32(p, size/4-1)) == (len(p)-size)/4 {
			size = len(p) // fixed part plus exactly count items
		}
		if !ok || len(p) != size || proto.HeaderSize+size != len(b) {
			t.Fatalf("accepted cmd %#04x with payload %d, PayloadSize %d %v", uint16(h.Cmd), len(p), size, ok)
		}
		var again []byte
		if h.Cmd == proto.CmdTokenLogin {
			var tok proto.Token
			user := proto.DecodeTokenLogin(p, &tok)
			again = proto.AppendTokenLogin(nil, h.Time, user, &tok)
		} else {
			fields := make([]uint32, size/4)
			for i := range fields {
				fields[i] = proto.U32(p, i)
			}
			again = proto.AppendFrame(nil, h.Cmd, h.Time, fields...)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got % x\nwant % x", again, b)
		}
		// A frame Parse accepts is also one Split cuts whole.
		fr, rest, err := proto.Split(b)
		if err != nil || !bytes.Equal(fr, b) || len(rest) != 0 {
			t.Fatalf("Split of an accepted frame: %x %x %v", fr, rest, err)
		}
	})
}

// FuzzSplit: cutting any byte stream never panics, every frame cut has the
// length its header says within [HeaderSize, MaxFrame], and the frames plus
// what is left are exactly the input.
func FuzzSplit(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var joined []byte
		rest := b
		for {
			fr, r, err := proto.Split(rest)
			if err != nil {
				if !errors.Is(err, proto.ErrBadLength) || fr != nil || len(r) != len(rest) {
					t.Fatalf("error %v with frame %x, rest %d of %d", err, fr, len(r), len(rest))
				}
				break
			}
			if fr == nil {
				if len(r) != len(rest) {
					t.Fatalf("need-more consumed bytes")
				}
				if len(rest) >= 2 {
					if n, _ := proto.PeekLength(rest); n <= len(rest) {
						t.Fatalf("need-more with %d bytes buffered for a %d-byte frame", len(rest), n)
					}
				}
				break
			}
			n, err := proto.PeekLength(fr)
			if err != nil || n != len(fr) || n < proto.HeaderSize || n > proto.MaxFrame {
				t.Fatalf("cut a %d-byte frame whose length field is %d (%v)", len(fr), n, err)
			}
			if len(fr)+len(r) != len(rest) {
				t.Fatalf("lost bytes: frame %d + rest %d != %d", len(fr), len(r), len(rest))
			}
			joined = append(joined, fr...)
			rest = r
			// Parse must not panic on whatever was cut.
			_, _, _ = proto.Parse(fr)
		}
		if joined = append(joined, rest...); !bytes.Equal(joined, b) {
			t.Fatal("frames and rest do not reassemble the input")
		}
	})
}
