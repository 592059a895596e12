package server

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

// sendMany pipelines n group sends of 10 cents in one share from c to the
// recipients and returns the packet ids, in order.
func sendMany(t testing.TB, c *client.Conn, n int, key0 uint64, to ...uint32) []uint32 {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		var b []byte
		for i := range n {
			b = proto.AppendSend(b, now64(), 10, 1, key0+uint64(i), to)
			if len(b) > 32<<10 || i == n-1 {
				if err := c.Send(b); err != nil {
					errc <- err
					return
				}
				b = b[:0]
			}
		}
		errc <- nil
	}()
	ids := make([]uint32, 0, n)
	for range n {
		f, err := c.Read()
		if err != nil {
			t.Fatalf("after %d answers: %v", len(ids), err)
		}
		if f.Cmd == proto.CmdPush { // the sender is not a recipient here
			t.Fatalf("unexpected push %+v", f.Header)
		}
		if f.Cmd != proto.CmdSendResp || f.Field(0) != proto.ResultOK {
			t.Fatalf("send answer %+v result %d", f.Header, f.Field(0))
		}
		ids = append(ids, f.Field(1))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestNonReadingRecipientIsClosedAndLosesNothing: pushes to a recipient
// that never reads count against the 64 KiB bound although it sends
// nothing itself; past the bound it is closed as a slow reader. After
// reconnecting, the recipient lists its packets and opens them: a push is
// only a hint. A recipient that reads gets every push and stays connected.
// Both push paths run: from the sender's loop (no ledger) and from the
// ledger's writer once the packet is durable. (cmd/hongbao's
// TestNonReadingRecipientBoundedRSS does this at 200,000 packets against a
// server process and measures its RSS.)
func TestNonReadingRecipientIsClosedAndLosesNothing(t *testing.T) {
	const pushes = 20_000 // 560 KB of push frames
	for _, ledger := range []bool{false, true} {
		t.Run(fmt.Sprintf("ledger=%v", ledger), func(t *testing.T) {
			s := startServer(t, func(o *Options) {
				if ledger {
					o.DataDir = t.TempDir()
				}
				o.MaxLivePerSender, o.MaxSenderRate = pushes, 1<<30 // one sender sends them all at once
			})
			slow := login(t, s, 2)
			// Small socket buffers at both ends, so that the kernel holds
			// little (the server's send buffer grows to 4 MB by itself).
			if err := slow.NetConn().(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
				t.Fatal(err)
			}
			st := &s.sets[2%len(s.sets)]
			st.mu.Lock()
			ss := st.sessions[2]
			st.mu.Unlock()
			if err := ss.conn.SetWriteBuffer(4 << 10); err != nil {
				t.Fatal(err)
			}
			reader := login(t, s, 3)
			got := make(chan int, 1)
			go func() { // the reading recipient counts its pushes
				n := 0
				reader.Timeout = 10 * time.Second
				for n < pushes {
					f, err := reader.Read()
					if err != nil {
						break
					}
					if f.Cmd == proto.CmdPush {
						n++
					}
				}
				got <- n
			}()
			sender := login(t, s, 1)
			ids := sendMany(t, sender, pushes, 1, 2, 3)
			wait.For(t, 5*time.Second, "the non-reader closed as slow_reader", func() bool {
				return s.Stats().Totals.Disconnects[int(proto.ReasonSlowReader)-1] == 1
			})
			if n := <-got; n != pushes {
				t.Errorf("the reading recipient got %d pushes of %d", n, pushes)
			}
			stats := s.Stats()
			t.Logf("pushes queued %d of %d", stats.Groups.Pushes, 2*pushes)
			if stats.Groups.Pushes >= 2*pushes {
				t.Errorf("every push was queued (%d): the non-reader was never cut off", stats.Groups.Pushes)
			}
			// A frame posted to the closed session is refused and counted,
			// on /metrics.
			dropped := func() float64 {
				d := scrape(t, s)["hongbao_outbox_dropped_total"]
				if d == nil || len(d.v) != 1 {
					t.Fatalf("hongbao_outbox_dropped_total %+v", d)
				}
				return d.v[0]
			}
			before := dropped()
			if ss.post(proto.AppendFrame(nil, proto.CmdPush, 0, ids[0], 1, 10, 1), false) {
				t.Error("a push was queued to a closed session")
			}
			if after := dropped(); after != before+1 {
				t.Errorf("hongbao_outbox_dropped_total went from %v to %v, want one more", before, after)
			}

			again := login(t, s, 2)
			listed, err := again.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(listed) != proto.MaxListed {
				t.Fatalf("listed %d packets after reconnecting, want %d", len(listed), proto.MaxListed)
			}
			for _, id := range listed {
				if _, ok := slices.BinarySearch(ids, id); !ok {
					t.Fatalf("listed packet %d was not sent to it", id)
				}
			}
			// The first packet and the last (the earliest cut off and the
			// latest) and every listed one open.
			toOpen := listed
			for _, id := range []uint32{ids[0], ids[len(ids)-1]} {
				if !slices.Contains(listed, id) {
					toOpen = append(toOpen, id)
				}
			}
			for _, id := range toOpen {
				if r := open(t, again, id); r.Result != proto.ResultOK || r.Amount != 10 {
					t.Fatalf("open %d: result %d amount %d", id, r.Result, r.Amount)
				}
			}
		})
	}
}
