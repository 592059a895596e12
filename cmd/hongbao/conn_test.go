package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/harness"
	"hongbao/internal/load"
	"hongbao/internal/procstat"
	"hongbao/internal/proto"
	"hongbao/internal/server"
	"hongbao/internal/wait"
)

// metric reads one sample of the server's /metrics, e.g.
// `hongbao_disconnects_total{reason="slow_reader"}` (0 when absent).
func metric(t testing.TB, admin *harness.ServerAdmin, name string) float64 {
	t.Helper()
	body, err := admin.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
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

// topUp credits user with cents through the server's POST /api/topup: a
// user sends group packets only from what it holds.
func topUp(t testing.TB, a *harness.ServerAdmin, user uint32, cents uint64) {
	t.Helper()
	topUps++
	var tr server.Transfer
	if err := a.Post("/api/topup", map[string]any{"user": user, "cents": cents, "key": fmt.Sprintf("test-%d-%d", user, topUps)}, &tr); err != nil || tr.Cents != cents {
		t.Fatalf("top-up of %d cents to user %d: %+v %v", cents, user, tr, err)
	}
}

var topUps int

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
		srv, err := harness.StartServer(bin, dir, harness.ServerSpec{Secret: secret,
			Extra: []string{"--max-live-per-sender", strconv.Itoa(packets), "--max-sender-rate", "1000000000"}})
		if err != nil {
			t.Fatal(err)
		}
		topUp(t, srv.Admin, 1, 10*packets)
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

// shutdownCounts are the two sides' counts of a SIGTERM under load.
type shutdownCounts struct {
	conns                       int    // the client's connections when the server was told to stop
	clientAnswers, serverShakes uint64 // shake answers the client received; shakes the server answered
	clientGot, serverGot        uint64
	clientCents, serverCents    uint64
	goodbyes, serverGoodbyes    uint64 // connections closed with "server shutting down", as the client and the server counted them
	otherCloses                 map[string]uint64
	afterGoodbye                uint64 // frames that followed an error frame
	exit                        error
	took                        time.Duration
}

var stoppedLine = regexp.MustCompile(`msg=stopped shakes=(\d+) got=(\d+) granted_amount=(\d+)(?: goodbyes=(\d+))?`)

// sigtermUnderLoad runs server binary b as a child with a ledger and a
// campaign, drives it with an in-process load client of conns users at qps
// shakes/s, sends it SIGTERM after a few seconds of load and returns what
// each side counted.
func sigtermUnderLoad(t *testing.T, b string, conns, qps int) shutdownCounts {
	t.Helper()
	dir := t.TempDir()
	secret := harness.NewSecret()
	srv, err := harness.StartServer(b, dir, harness.ServerSpec{Secret: secret, Users: conns, Extra: []string{"--log-level", "info"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(10 * time.Second)
	// Packets for a third of the shakes: their answers wait for the ledger.
	if _, err := srv.Admin.StartCampaign(server.CampaignSpec{Count: 1 << 20, Rate: uint32(qps / 3), Min: 1, Max: 100}); err != nil {
		t.Fatal(err)
	}
	cl, err := load.New(load.Options{Addr: srv.Addr, Total: conns, QPS: qps, Secret: []byte(secret), Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *load.Summary, 1)
	go func() {
		s, err := cl.Run(ctx)
		if err != nil {
			t.Error(err)
		}
		done <- s
	}()
	wait.For(t, 60*time.Second, "every user connected", func() bool { return cl.Stats().Conns == int64(conns) })
	wait.For(t, 30*time.Second, "three seconds' worth of answers", func() bool {
		s := cl.Stats()
		return s.Got+s.None+s.AllTaken+s.Overloaded >= uint64(3*qps)
	})
	var c shutdownCounts
	c.conns = int(cl.Stats().Conns)
	start := time.Now()
	c.exit = srv.Stop(30 * time.Second)
	c.took = time.Since(start)
	log, err := os.ReadFile(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := stoppedLine.FindSubmatch(log)
	if m == nil {
		t.Fatalf("no final counts in the server's log:\n%s", log)
	}
	c.serverShakes, _ = strconv.ParseUint(string(m[1]), 10, 64)
	c.serverGot, _ = strconv.ParseUint(string(m[2]), 10, 64)
	c.serverCents, _ = strconv.ParseUint(string(m[3]), 10, 64)
	c.serverGoodbyes, _ = strconv.ParseUint(string(m[4]), 10, 64)
	// The server is gone; the client may still be reading what it sent to
	// connections it accepted while draining (users reconnect at once).
	wait.For(t, 20*time.Second, "the client seeing every connection closed", func() bool { return cl.Stats().Conns == 0 })
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cl.Stats().ClosedByServer[proto.ReasonShutdown.String()] >= c.serverGoodbyes {
			break
		}
	}
	cancel()
	var sum *load.Summary
	select {
	case sum = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the load client did not stop")
	}
	c.clientAnswers = sum.Got + sum.None + sum.AllTaken + sum.Overloaded
	c.clientGot, c.clientCents = sum.Got, sum.Amount
	c.afterGoodbye = sum.AfterError
	c.otherCloses = map[string]uint64{}
	for r, n := range sum.ClosedByServer {
		if r == proto.ReasonShutdown.String() {
			c.goodbyes = n
		} else {
			c.otherCloses[r] = n
		}
	}
	t.Logf("SIGTERM at %d shakes/s over %d connections: exit %v after %v; client answers %d, server shakes %d; got %d / %d; cents %d / %d; goodbyes %d / %d, frames after a goodbye %d, other closes %v",
		qps, c.conns, c.exit, c.took.Round(time.Millisecond), c.clientAnswers, c.serverShakes, c.clientGot, c.serverGot,
		c.clientCents, c.serverCents, c.goodbyes, c.serverGoodbyes, c.afterGoodbye, c.otherCloses)
	return c
}

// TestSIGTERMUnderLoad: SIGTERM to a server holding 10,000 connections
// that send 5,000 shakes/s (a third of them granted a packet, answered once
// the ledger has the grant): every connection gets the answers to what the
// server read, then exactly one "server shutting down" frame and nothing
// after it; the client's counts equal the server's; the server exits 0.
// (Users the server closes reconnect at once; a connection accepted while
// it drains is told goodbye too, so there are more goodbyes than the
// connections held at the signal: each side counts every one.)
func TestSIGTERMUnderLoad(t *testing.T) {
	c := sigtermUnderLoad(t, bin, 10_000, 5_000)
	if c.exit != nil {
		t.Errorf("server after SIGTERM: %v", c.exit)
	}
	if c.goodbyes < uint64(c.conns) || c.goodbyes != c.serverGoodbyes || len(c.otherCloses) != 0 {
		t.Errorf("%d goodbyes received (the server sent %d) for %d connections; other closes %v",
			c.goodbyes, c.serverGoodbyes, c.conns, c.otherCloses)
	}
	if c.afterGoodbye != 0 {
		t.Errorf("%d frames after a goodbye", c.afterGoodbye)
	}
	if c.clientAnswers != c.serverShakes || c.clientGot != c.serverGot || c.clientCents != c.serverCents {
		t.Errorf("client answers %d, got %d, cents %d; server %d, %d, %d",
			c.clientAnswers, c.clientGot, c.clientCents, c.serverShakes, c.serverGot, c.serverCents)
	}
	if c.clientGot == 0 {
		t.Error("no packet granted: the ledger's answers were not exercised")
	}
}
