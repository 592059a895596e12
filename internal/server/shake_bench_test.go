package server

import (
	"testing"
	"time"

	"hongbao/internal/proto"
)

// BenchmarkShake measures the shake path on the event loop, in process and
// without a connection: admission, a take from the user's SET, the grant
// (balance and ledger record) and the answer. got: a packet waits for every
// shake (no ledger, so the answer is immediate); none: no campaign ran;
// overloaded: the loop's admission window is full.
//
//	go test -run '^$' -bench Shake -benchmem ./internal/server/
func BenchmarkShake(b *testing.B) {
	cases := []struct {
		name string
		want uint32
	}{{"got", proto.ResultGot}, {"none", proto.ResultNone}, {"overloaded", proto.ResultOverloaded}}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := startServer(b, func(o *Options) {
				o.Sets, o.Budget = 1, 1<<30
				if c.want == proto.ResultOverloaded {
					o.Budget = 1
				}
				o.MaxWaiting, o.MaxCampaignRate = b.N, 1<<30
			})
			if c.want == proto.ResultGot {
				if _, err := s.StartCampaign(CampaignSpec{Count: uint32(b.N), Rate: 1 << 30, Min: 1, Max: 9}); err != nil {
					b.Fatal(err)
				}
				for deadline := time.Now().Add(10 * time.Second); s.Campaigns()[0].State != StateDone; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d packets issued in 10 s", s.Campaigns()[0].Issued, b.N)
					}
				}
			}
			ss := newSession(nil, s.loops[0])
			ss.user, ss.set = 5, &s.sets[0]
			now := s.sec.Load()
			out := make([]byte, 0, 256)
			if c.want == proto.ResultOverloaded {
				s.shake(ss, now, out) // the window's one admitted shake
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				out = s.shake(ss, now, out[:0])
			}
			b.StopTimer()
			if r := proto.U32(out[proto.HeaderSize:], 1); r != c.want {
				b.Fatalf("the last shake was answered %d, want %d", r, c.want)
			}
		})
	}
}
