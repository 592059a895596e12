package load

import (
	"testing"
	"time"

	"hongbao/internal/proto"
	"hongbao/internal/server"
	"hongbao/internal/testutil/servertest"
)

// TestPingsKeepIdleUsersConnected: against a real server with a 3 s idle
// timeout, users who send no shake for 6 s stay connected when the client
// pings after 1 s of silence, and are closed by the server for idleness
// when it does not ping.
func TestPingsKeepIdleUsersConnected(t *testing.T) {
	const users = 40
	idle := proto.ReasonIdleTimeout.String()
	for _, tc := range []struct {
		name     string
		pingIdle time.Duration
		closed   bool
	}{
		{"pinging", time.Second, false},
		{"not pinging", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The cases wait on the server's idle clock in real seconds:
			// each has its own server so that they wait at the same time.
			t.Parallel()
			srv := servertest.Start(t, server.Options{Listen: "127.0.0.1:0", Secret: testSecret, IdleTimeout: 3 * time.Second})
			c := newClient(t, Options{Addr: srv.Addr(), Total: users, QPS: 0, Duration: 6 * time.Second, PingIdle: tc.pingIdle})
			s := run(t, c, nil)
			if s.Connected != users {
				t.Fatalf("connected %d of %d", s.Connected, users)
			}
			if got := s.ClosedByServer[idle]; tc.closed != (got > 0) {
				t.Errorf("%d connections closed for idleness (pings sent %d)", got, s.Pings)
			}
			if !tc.closed && (s.Pings < users || s.Disconnects != 0 || s.AfterError != 0) {
				t.Errorf("pings %d disconnects %d after_error %d", s.Pings, s.Disconnects, s.AfterError)
			}
			t.Logf("pings %d, closed by the server %v; summary %+v; server %+v", s.Pings, s.ClosedByServer, s.Counts, srv.Stats().Totals)
		})
	}
}
