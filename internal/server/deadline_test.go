package server

import (
	"errors"
	"io"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/proto"
)

// dribble writes b one byte every gap until it is all sent or stop closes
// (a slowloris client).
func dribble(c *client.Conn, b []byte, gap time.Duration, stop <-chan struct{}) {
	for i := range b {
		if c.Send(b[i:i+1]) != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(gap):
		}
	}
}

// pinger pings every gap until stop closes.
func pinger(c *client.Conn, gap time.Duration, stop <-chan struct{}) {
	for i := uint32(0); ; i++ {
		if c.Send(proto.AppendPing(nil, proto.CmdPing, now64(), i)) != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(gap):
		}
	}
}

// closedAfter reads c until the server's error frame and returns its
// reason and the time since start; other frames (pongs) are skipped. The
// stream must end right after the error frame.
func closedAfter(t *testing.T, c *client.Conn, start time.Time) (proto.Reason, time.Duration) {
	t.Helper()
	c.Timeout = 10 * time.Second
	for {
		_, err := c.Read()
		var se *client.ServerError
		if errors.As(err, &se) {
			d := time.Since(start)
			if f, err := c.Read(); err != io.EOF && !isReset(err) {
				t.Fatalf("after the error frame: frame %+v, err %v; want the end of the stream", f.Header, err)
			}
			return se.Reason, d
		}
		if err != nil {
			t.Fatalf("no error frame before %v (after %v)", err, time.Since(start))
		}
	}
}

// TestDeadlinesCloseWithReason: a connection that never logs in, one that
// sends an incomplete frame a byte at a time (before or after login), and
// a logged-in one that goes silent are each closed, within their deadline,
// with an error frame naming the reason, and counted by it. Pings before
// login do not extend the login deadline.
func TestDeadlinesCloseWithReason(t *testing.T) {
	const (
		loginT = 2 * time.Second
		frameT = time.Second
		idleT  = 2 * time.Second
	)
	s := startServer(t, func(o *Options) { o.LoginTimeout, o.FrameTimeout, o.IdleTimeout = loginT, frameT, idleT })
	tests := []struct {
		name string
		user uint32 // log in first (0: stay anonymous)
		act  func(c *client.Conn, stop <-chan struct{})
		want proto.Reason
		t    time.Duration
	}{
		{"never logs in", 0, nil, proto.ReasonLoginTimeout, loginT},
		{"pings but never logs in", 0, func(c *client.Conn, stop <-chan struct{}) { pinger(c, 300*time.Millisecond, stop) },
			proto.ReasonLoginTimeout, loginT},
		{"slowloris login frame", 0, func(c *client.Conn, stop <-chan struct{}) {
			dribble(c, proto.AppendTokenLogin(nil, now64(), 7, new(token(t, 7, time.Hour))), 400*time.Millisecond, stop)
		}, proto.ReasonFrameTimeout, frameT},
		{"slowloris shake after login", 8, func(c *client.Conn, stop <-chan struct{}) {
			dribble(c, proto.AppendShake(nil, now64(), 8), 400*time.Millisecond, stop)
		}, proto.ReasonFrameTimeout, frameT},
		{"silent after login", 9, nil, proto.ReasonIdleTimeout, idleT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c *client.Conn
			if tc.user != 0 {
				c = login(t, s, tc.user)
			} else {
				c = dial(t, s)
			}
			start := time.Now()
			stop := make(chan struct{})
			defer close(stop)
			if tc.act != nil {
				go tc.act(c, stop)
			}
			why, after := closedAfter(t, c, start)
			if why != tc.want {
				t.Fatalf("closed with %q after %v, want %q", why, after, tc.want)
			}
			// The sweep runs once a second on a coarse clock: a deadline of
			// T closes between T and T+2 s; allow for a busy machine.
			if after < tc.t/2 || after > tc.t+3*time.Second {
				t.Fatalf("closed after %v, want about %v", after, tc.t)
			}
			t.Logf("closed with %q after %v", why, after.Round(time.Millisecond))
		})
	}
	t.Cleanup(func() {
		d := s.Stats().Totals.Disconnects
		for r, want := range map[proto.Reason]uint64{proto.ReasonLoginTimeout: 2, proto.ReasonFrameTimeout: 2, proto.ReasonIdleTimeout: 1} {
			if got := d[int(r)-1]; got != want {
				t.Errorf("disconnects_%s = %d, want %d", r.Name(), got, want)
			}
		}
	})
}

// TestDeadlinesSpareActiveConnections: a logged-in client that pings more
// often than the idle timeout, and one that sends each frame in two parts
// within the frame timeout, outlive both deadlines several times over;
// with every deadline off, a connection that never logs in is kept.
func TestDeadlinesSpareActiveConnections(t *testing.T) {
	const hold = 4 * time.Second
	on := startServer(t, func(o *Options) { o.LoginTimeout, o.FrameTimeout, o.IdleTimeout = time.Second, time.Second, time.Second })
	off := startServer(t, func(o *Options) { o.LoginTimeout, o.FrameTimeout, o.IdleTimeout = -1, -1, -1 })
	tests := []struct {
		name string
		s    *Server
		user uint32
		act  func(c *client.Conn, stop <-chan struct{})
	}{
		{"pings every 300 ms", on, 1, func(c *client.Conn, stop <-chan struct{}) { pinger(c, 300*time.Millisecond, stop) }},
		{"frames in two parts 300 ms apart", on, 2, func(c *client.Conn, stop <-chan struct{}) {
			for i := uint32(0); ; i++ {
				p := proto.AppendPing(nil, proto.CmdPing, now64(), i)
				for _, part := range [][]byte{p[:5], p[5:]} {
					if c.Send(part) != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(300 * time.Millisecond):
					}
				}
			}
		}},
		{"deadlines off: never logs in", off, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c *client.Conn
			if tc.user != 0 {
				c = login(t, tc.s, tc.user)
			} else {
				c = dial(t, tc.s)
			}
			stop := make(chan struct{})
			if tc.act != nil {
				go tc.act(c, stop)
			}
			c.Timeout = 100 * time.Millisecond
			for end := time.Now().Add(hold); time.Now().Before(end); {
				f, err := c.Read()
				var ne interface{ Timeout() bool }
				switch {
				case errors.As(err, &ne) && ne.Timeout():
				case err != nil:
					t.Fatalf("closed: %v", err)
				case f.Cmd != proto.CmdPong:
					t.Fatalf("unexpected frame %+v", f.Header)
				}
			}
			close(stop)
		})
	}
}
