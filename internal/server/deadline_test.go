package server

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
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

// kickTicker wakes s's ticker, so that a second set on its clock (a fakeClock)
// is swept now rather than at the next real second.
func kickTicker(s *Server) {
	select {
	case s.kickTick <- struct{}{}:
	default:
	}
}

// stepSeconds moves clk, s's clock, a second on every gap of real time and
// wakes s's ticker, until stop closes: a test of deadlines in seconds
// waits on the server's seconds, not on real ones.
func stepSeconds(s *Server, clk *fakeClock, gap time.Duration, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(gap):
		}
		clk.Add(time.Second)
		kickTicker(s)
	}
}

// closedAfter reads c until the server's error frame and returns its
// reason and the time since start on clk; other frames (pongs) are
// skipped. The stream must end right after the error frame.
func closedAfter(c *client.Conn, clk *fakeClock, start time.Time) (proto.Reason, time.Duration, error) {
	c.Timeout = 10 * time.Second
	for {
		_, err := c.Read()
		var se *client.ServerError
		if errors.As(err, &se) {
			d := clk.Now().Sub(start)
			if f, err := c.Read(); err != io.EOF && !isReset(err) {
				return se.Reason, d, fmt.Errorf("after the error frame: frame %+v, err %v; want the end of the stream", f.Header, err)
			}
			return se.Reason, d, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("no error frame before %w (after %v)", err, clk.Now().Sub(start))
		}
	}
}

// TestDeadlinesCloseWithReason: a connection that never logs in, one that
// sends an incomplete frame a byte at a time (before or after login), and
// a logged-in one that goes silent are each closed, within their deadline,
// with an error frame naming the reason, and counted by it. Pings before
// login do not extend the login deadline, and an idle timeout shorter
// than the login timeout applies from the login on. The cases run at the
// same time (subtests in parallel would run two at a time on two cores),
// on a server clock that moves a second every stepGap of real time.
func TestDeadlinesCloseWithReason(t *testing.T) {
	const (
		loginT  = 3 * time.Second
		frameT  = time.Second
		idleT   = time.Second
		stepGap = 200 * time.Millisecond
	)
	clk := newFakeClock()
	s := startServer(t, func(o *Options) {
		o.Now = clk.Now
		o.LoginTimeout, o.FrameTimeout, o.IdleTimeout = loginT, frameT, idleT
	})
	loginFrame := proto.AppendTokenLogin(nil, now64(), 7, new(token(t, 7, time.Hour)))
	tests := []struct {
		name string
		user uint32 // log in first (0: stay anonymous)
		act  func(c *client.Conn, stop <-chan struct{})
		want proto.Reason
		t    time.Duration
	}{
		{"never logs in", 0, nil, proto.ReasonLoginTimeout, loginT},
		{"pings but never logs in", 0, func(c *client.Conn, stop <-chan struct{}) { pinger(c, stepGap/3, stop) },
			proto.ReasonLoginTimeout, loginT},
		{"slowloris login frame", 0, func(c *client.Conn, stop <-chan struct{}) { dribble(c, loginFrame, stepGap/2, stop) },
			proto.ReasonFrameTimeout, frameT},
		{"slowloris shake after login", 8, func(c *client.Conn, stop <-chan struct{}) {
			dribble(c, proto.AppendShake(nil, now64(), 8), stepGap/2, stop)
		}, proto.ReasonFrameTimeout, frameT},
		{"silent after login", 9, nil, proto.ReasonIdleTimeout, idleT},
	}
	type result struct {
		why   proto.Reason
		after time.Duration
		err   error
	}
	results := make([]chan result, len(tests))
	stop := make(chan struct{})
	defer close(stop)
	for i, tc := range tests {
		var c *client.Conn
		if tc.user != 0 {
			c = login(t, s, tc.user)
		} else {
			c = dial(t, s)
		}
		results[i] = make(chan result, 1)
		start := clk.Now()
		if tc.act != nil {
			go tc.act(c, stop)
		}
		go func() {
			why, after, err := closedAfter(c, clk, start)
			results[i] <- result{why, after, err}
		}()
	}
	go stepSeconds(s, clk, stepGap, stop)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := <-results[i]
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.why != tc.want {
				t.Fatalf("closed with %q after %v, want %q", r.why, r.after, tc.want)
			}
			// The sweep runs once a second on a coarse clock: a deadline of
			// T closes between T and T+2 s; the reader may see the close
			// a step late on a busy machine.
			if r.after < tc.t/2 || r.after > tc.t+5*time.Second/2 {
				t.Fatalf("closed after %v, want about %v", r.after, tc.t)
			}
			t.Logf("closed with %q after %v", r.why, r.after.Round(time.Millisecond))
		})
	}
	d := s.Stats().Totals.Disconnects
	for r, want := range map[proto.Reason]uint64{proto.ReasonLoginTimeout: 2, proto.ReasonFrameTimeout: 2, proto.ReasonIdleTimeout: 1} {
		if got := d[int(r)-1]; got != want {
			t.Errorf("disconnects_%s = %d, want %d", r.Name(), got, want)
		}
	}
}

// TestDeadlinesSpareActiveConnections: a logged-in client that pings more
// often than the idle timeout, and one that sends each frame in two parts
// within the frame timeout, outlive both deadlines several times over;
// with every deadline off, a connection that never logs in is kept. The
// servers' clock moves only after the clients have acted, a step at a
// time.
func TestDeadlinesSpareActiveConnections(t *testing.T) {
	const (
		hold = 4 * time.Second
		step = 300 * time.Millisecond
	)
	clk := newFakeClock()
	on := startServer(t, func(o *Options) {
		o.Now = clk.Now
		o.LoginTimeout, o.FrameTimeout, o.IdleTimeout = time.Second, time.Second, time.Second
	})
	off := startServer(t, func(o *Options) { o.Now = clk.Now; o.LoginTimeout, o.FrameTimeout, o.IdleTimeout = -1, -1, -1 })
	// Each act sends what its client sends in step i.
	tests := []struct {
		name string
		s    *Server
		user uint32
		act  func(c *client.Conn, i int) error
	}{
		{"pings every 300 ms", on, 1, func(c *client.Conn, i int) error {
			return c.Send(proto.AppendPing(nil, proto.CmdPing, now64(), uint32(i)))
		}},
		{"frames in two parts 300 ms apart", on, 2, func(c *client.Conn, i int) error {
			p := proto.AppendPing(nil, proto.CmdPing, now64(), uint32(i/2))
			if i%2 == 0 {
				return c.Send(p[:5])
			}
			return c.Send(p[5:])
		}},
		{"deadlines off: never logs in", off, 0, nil},
	}
	conns := make([]*client.Conn, len(tests))
	for i, tc := range tests {
		if tc.user != 0 {
			conns[i] = login(t, tc.s, tc.user)
		} else {
			conns[i] = dial(t, tc.s)
		}
	}
	for i := 0; time.Duration(i)*step < hold; i++ {
		for k, tc := range tests {
			if tc.act != nil {
				if err := tc.act(conns[k], i); err != nil {
					t.Fatalf("%s: step %d: %v", tc.name, i, err)
				}
			}
		}
		// Let the servers read this step's bytes at this step's time.
		time.Sleep(20 * time.Millisecond)
		clk.Add(step)
		for _, s := range []*Server{on, off} {
			kickTicker(s)
			wait.For(t, 5*time.Second, "the server's clock", clk.sec(s))
		}
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := openFor(conns[i], 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// openFor reads c for d and fails if the connection closes or anything but
// a pong arrives.
func openFor(c *client.Conn, d time.Duration) error {
	c.Timeout = 100 * time.Millisecond
	for end := time.Now().Add(d); time.Now().Before(end); {
		f, err := c.Read()
		var ne interface{ Timeout() bool }
		switch {
		case errors.As(err, &ne) && ne.Timeout():
		case err != nil:
			return fmt.Errorf("closed after %v: %w", d-time.Until(end), err)
		case f.Cmd != proto.CmdPong:
			return fmt.Errorf("unexpected frame %+v", f.Header)
		}
	}
	return nil
}

// TestWheelNext: the wheel knows the earliest second a slot holds a
// session, so that the ticker wakes a loop only then; a session leaving
// the slot it was due from (a login, a close) moves that second on.
func TestWheelNext(t *testing.T) {
	var w wheel
	w.at = 1000
	w.next.Store(noDeadline)
	a, b, c := new(session), new(session), new(session)
	steps := []struct {
		name string
		do   func()
		next uint32
	}{
		{"file a at 1011", func() { w.file(a, 1011) }, 1011},
		{"file b at 1011", func() { w.file(b, 1011) }, 1011},
		{"file c at 1301", func() { w.file(c, 1301) }, 1011},
		{"a logs in: refiled at 1305", func() { w.file(a, 1305) }, 1011},
		{"b closes", func() { w.drop(b) }, 1301},
		{"c without a deadline", func() { w.file(c, noDeadline) }, 1305},
		{"a far ahead: its slot comes first", func() { w.file(a, 1000+3*wheelSlots+7) }, 1007},
		{"a closes", func() { w.drop(a) }, noDeadline},
	}
	for _, st := range steps {
		st.do()
		if got := w.next.Load(); got != st.next {
			t.Fatalf("%s: next %d, want %d", st.name, got, st.next)
		}
	}
	n := 0
	w.each(nil, func(*session) { n++ })
	if n != 1 || w.never != c {
		t.Fatalf("%d sessions on the wheel, want c alone on the list without deadline", n)
	}
}
