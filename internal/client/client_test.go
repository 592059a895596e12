package client_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/client"
	"hongbao/internal/proto"
	"hongbao/internal/server"
	"hongbao/internal/testutil/servertest"
)

var secret = []byte("client-test-secret")

func startServer(t *testing.T) *server.Server {
	t.Helper()
	return startServerWith(t, server.Options{})
}

func startServerWith(t *testing.T, o server.Options) *server.Server {
	t.Helper()
	o.Listen, o.Secret, o.Sets, o.Loops = "127.0.0.1:0", secret, 4, 1
	return servertest.Start(t, o)
}

func dial(t *testing.T, addr string) *client.Conn {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mint(t *testing.T, user uint32) proto.Token {
	t.Helper()
	sg, err := auth.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return sg.Mint(user, time.Now().Add(time.Hour))
}

func TestLoginShakePipelined(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	if err := c.LoginToken(7, mint(t, 7)); err != nil {
		t.Fatal(err)
	}
	if c.User != 7 {
		t.Fatalf("User = %d after login", c.User)
	}
	if r, err := c.Shake(); err != nil || r.Result != proto.ResultNone {
		t.Fatalf("Shake: %+v %v", r, err)
	}
	const n = 50
	for range n {
		if err := c.SendShake(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if r, err := c.ReadShake(); err != nil || r.Result != proto.ResultNone {
			t.Fatalf("answer %d: %+v %v", i, r, err)
		}
	}
	// A frame of another command where a shake answer is expected.
	if err := c.Send(proto.AppendPing(nil, proto.CmdPing, 0, 9)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadShake(); !errors.Is(err, client.ErrUnexpected) {
		t.Fatalf("ReadShake on a pong: %v, want ErrUnexpected", err)
	}
}

func TestServerErrorIsReported(t *testing.T) {
	s := startServer(t)
	tests := []struct {
		name  string
		login func(c *client.Conn) error
		want  proto.Reason
		cause proto.Cmd
	}{
		{"classic refused", func(c *client.Conn) error { return c.LoginClassic(3) }, proto.ReasonClassicRefused, proto.CmdLogin},
		{"token of another user", func(c *client.Conn) error { return c.LoginToken(3, mint(t, 4)) }, proto.ReasonTokenOtherUser, proto.CmdTokenLogin},
		{"shake before login", func(c *client.Conn) error { _, err := c.Shake(); return err }, proto.ReasonNotLoggedIn, proto.CmdShake},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s.Addr())
			err := tc.login(c)
			var se *client.ServerError
			if !errors.As(err, &se) || se.Reason != tc.want || se.Cause != tc.cause {
				t.Fatalf("got %v, want ServerError %q cause %#04x", err, tc.want, uint16(tc.cause))
			}
			if se.Error() == "" {
				t.Fatal("empty error text")
			}
			if _, err := c.Read(); err != io.EOF {
				t.Fatalf("after the error: %v, want EOF", err)
			}
		})
	}
}

// TestReadRejectsBadFrames: the client validates what it reads, from a
// fake peer that sends bad frames.
func TestReadRejectsBadFrames(t *testing.T) {
	tests := []struct {
		name string
		peer []byte
		want error
	}{
		{"length below header", []byte{0, 4, 0, 3}, proto.ErrBadLength},
		{"unknown command", proto.AppendFrame(nil, 0x7777, 0, 1), proto.ErrUnknownCommand},
		{"truncated shake answer", proto.AppendFrame(nil, proto.CmdShakeResp, 0, 1, 2), proto.ErrBadPayload},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				pc, err := ln.Accept()
				if err != nil {
					return
				}
				defer pc.Close()
				_, _ = pc.Write(tc.peer)
				_, _ = io.Copy(io.Discard, pc)
			}()
			c := dial(t, ln.Addr().String())
			c.Timeout = 2 * time.Second
			if _, err := c.Read(); !errors.Is(err, tc.want) {
				t.Fatalf("Read: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestKeepAliveOutlivesIdleTimeout: a connection that only waits for
// pushes stays logged in past the server's idle timeout while it pings
// (the pongs never reach the caller), and is closed for idleness when it
// does not.
func TestKeepAliveOutlivesIdleTimeout(t *testing.T) {
	s := startServerWith(t, server.Options{IdleTimeout: 2 * time.Second})
	pinging, silent := dial(t, s.Addr()), dial(t, s.Addr())
	pinging.SetKeepAlive(500 * time.Millisecond)
	silent.SetKeepAlive(0)
	for i, c := range []*client.Conn{pinging, silent} {
		if err := c.LoginToken(uint32(i+1), mint(t, uint32(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 2)
	for _, c := range []*client.Conn{pinging, silent} {
		go func() {
			c.Timeout = 5 * time.Second
			_, err := c.ReadPush()
			errs <- err
		}()
	}
	var se *client.ServerError
	if err := <-errs; !errors.As(err, &se) || se.Reason != proto.ReasonIdleTimeout {
		t.Fatalf("first to end: %v, want the silent one closed for idleness", err)
	}
	var ne net.Error
	if err := <-errs; !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("the pinging connection: %v, want a read timeout after 5 s", err)
	}
	if r, err := pinging.Shake(); err != nil || r.Result != proto.ResultNone {
		t.Fatalf("shake after 5 s of pings: %+v %v", r, err)
	}
}
