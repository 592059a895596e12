package main

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/harness"
	"hongbao/internal/procstat"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

// metric reads one sample of the server's /metrics, e.g.
// `hongbao_disconnects_total{reason="slow_reader"}` (0 when absent).
func metric(t testing.TB, admin *harness.Admin, name string) float64 {
	t.Helper()
	resp, err := http.Get(admin.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// pipeline writes the frames made by frame(i), i < n, in batches while it
// reads n answers of command want, and returns each answer's field.
func pipeline(t testing.TB, c *client.Conn, n int, frame func(b []byte, i int) []byte, want proto.Cmd, field int) []uint32 {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		var b []byte
		for i := range n {
			b = frame(b, i)
			if len(b) > 16<<10 || i == n-1 {
				if err := c.Send(b); err != nil {
					errc <- err
					return
				}
				b = b[:0]
			}
		}
		errc <- nil
	}()
	out := make([]uint32, 0, n)
	c.Timeout = 30 * time.Second
	for len(out) < n {
		f, err := c.Read()
		if err != nil {
			t.Fatalf("after %d answers: %v", len(out), err)
		}
		if f.Cmd != want {
			continue // a push or refund
		}
		out = append(out, f.Field(field))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNonReadingRecipientBoundedRSS: 200,000 group packets are sent to a
// recipient that logged in and never reads. The server (a child process)
// closes it as a slow reader once 64 KiB wait for it beyond what the
// kernel holds (the kernel's send buffer grows to 4 MB: about 150,000
// pushes), and its RSS grows by less than 50 MB more than when the same
// packets go to a recipient that is offline (the packets' own state, about
// 100 MB here, is the same in both). After reconnecting, the recipient
// lists its packets and opens every one of them: nothing was lost with the
// pushes. The server exits 0 on SIGTERM afterwards.
func TestNonReadingRecipientBoundedRSS(t *testing.T) {
	const packets = 200_000
	run := func(rcpt uint32, after func(srv *harness.ServerProc, secret string, ids []uint32)) (grown int64) {
		dir := t.TempDir()
		secret := harness.NewSecret()
		srv, err := harness.StartServer(bin, dir, harness.ServerSpec{Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		conns := loginAll(t, srv.Addr, secret, []uint32{1, 2})
		before, err := procstat.Read(srv.Pid())
		if err != nil {
			t.Fatal(err)
		}
		to := []uint32{rcpt}
		ids := pipeline(t, conns[0], packets, func(b []byte, i int) []byte {
			return proto.AppendSend(b, uint64(time.Now().Unix()), 10, 1, uint64(i+1), to)
		}, proto.CmdSendResp, 1)
		if rcpt == 2 {
			wait.For(t, 10*time.Second, "the recipient closed as slow_reader", func() bool {
				return metric(t, srv.Admin, `hongbao_disconnects_total{reason="slow_reader"}`) == 1
			})
		}
		now, err := procstat.Read(srv.Pid())
		if err != nil {
			t.Fatal(err)
		}
		grown = now.RSS - before.RSS
		t.Logf("%d packets to user %d: %.0f pushes queued; server RSS %d -> %d MB (+%.1f MB)", packets, rcpt,
			metric(t, srv.Admin, "hongbao_group_pushes_total"), before.RSS>>20, now.RSS>>20, float64(grown)/(1<<20))
		if after != nil {
			after(srv, secret, ids)
		}
		if err := srv.Stop(10 * time.Second); err != nil {
			t.Errorf("server after SIGTERM: %v", err)
		}
		return grown
	}
	base := run(3, nil) // user 3 is offline
	grown := run(2, func(srv *harness.ServerProc, secret string, ids []uint32) {
		if pushes := metric(t, srv.Admin, "hongbao_group_pushes_total"); pushes >= packets {
			t.Errorf("all %.0f pushes were queued: the non-reader was never cut off", pushes)
		}
		again := loginAll(t, srv.Addr, secret, []uint32{2})[0]
		listed, err := again.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(listed) != proto.MaxListed {
			t.Fatalf("listed %d packets after reconnecting, want %d", len(listed), proto.MaxListed)
		}
		results := pipeline(t, again, packets, func(b []byte, i int) []byte {
			return proto.AppendFrame(b, proto.CmdOpen, uint64(time.Now().Unix()), ids[i])
		}, proto.CmdOpenResp, 1)
		for i, r := range results {
			if r != proto.ResultOK {
				t.Fatalf("open of packet %d (%d of %d): result %d", ids[i], i, packets, r)
			}
		}
		if rest, err := again.List(); err != nil || len(rest) != 0 {
			t.Fatalf("after opening everything the list has %d packets (%v)", len(rest), err)
		}
		t.Logf("all %d packets listed and opened after reconnecting", len(results))
	})
	t.Logf("RSS growth with a non-reading recipient %+.1f MB, with an offline one %+.1f MB", float64(grown)/(1<<20), float64(base)/(1<<20))
	if grown-base >= 50<<20 {
		t.Errorf("the non-reading recipient cost the server %.1f MB of RSS, want < 50 MB", float64(grown-base)/(1<<20))
	}
}
