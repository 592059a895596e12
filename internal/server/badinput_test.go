package server

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"hongbao/internal/client"
	"hongbao/internal/proto"
	"hongbao/internal/wait"
)

// rawFrame builds a frame whose length field and real size may disagree
// with its command: length is the header's length field, size the bytes sent.
func rawFrame(length uint16, cmd proto.Cmd, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint16(b, length)
	binary.BigEndian.PutUint16(b[2:], uint16(cmd))
	binary.BigEndian.PutUint64(b[4:], uint64(time.Now().Unix()))
	return b
}

func now64() uint64 { return uint64(time.Now().Unix()) }

// TestBadInputClosesOnlyThatConnection: every malformed or forbidden input
// is answered by an error frame with its specific reason, then the
// connection is closed; a logged-in bystander is served before and after.
func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	s := startServer(t, nil)
	other := mint(t, []byte("not the server's secret"), 0, time.Now().Add(time.Hour))
	tests := []struct {
		name  string
		user  uint32 // log this user in first (0: stay anonymous)
		send  func(t *testing.T) []byte
		want  proto.Reason
		cause proto.Cmd
	}{
		{"length field below header size", 0, func(*testing.T) []byte { return rawFrame(5, proto.CmdShake, 12) }, proto.ReasonBadLength, 0},
		{"length field zero", 0, func(*testing.T) []byte { return rawFrame(0, proto.CmdShake, 16) }, proto.ReasonBadLength, 0},
		{"length field above MaxFrame", 0, func(*testing.T) []byte { return rawFrame(proto.MaxFrame+1, proto.CmdShake, 16) }, proto.ReasonBadLength, 0},
		{"length field 0xffff", 0, func(*testing.T) []byte { return rawFrame(0xffff, proto.CmdShake, 16) }, proto.ReasonBadLength, 0},
		{"unknown command", 0, func(*testing.T) []byte { return rawFrame(16, 0x7777, 16) }, proto.ReasonUnknownCommand, 0x7777},
		{"unknown command after login", 101, func(*testing.T) []byte { return rawFrame(16, 0x7777, 16) }, proto.ReasonUnknownCommand, 0x7777},
		{"truncated shake (length 14)", 102, func(*testing.T) []byte { return rawFrame(14, proto.CmdShake, 14) }, proto.ReasonBadPayload, proto.CmdShake},
		{"shake with no payload", 103, func(*testing.T) []byte { return rawFrame(12, proto.CmdShake, 12) }, proto.ReasonBadPayload, proto.CmdShake},
		{"shake payload too long", 104, func(*testing.T) []byte { return rawFrame(20, proto.CmdShake, 20) }, proto.ReasonBadPayload, proto.CmdShake},
		{"truncated token login", 0, func(t *testing.T) []byte {
			b := proto.AppendTokenLogin(nil, now64(), 105, new(token(t, 105, time.Hour)))
			b = b[:len(b)-4]
			binary.BigEndian.PutUint16(b, uint16(len(b)))
			return b
		}, proto.ReasonBadPayload, proto.CmdTokenLogin},
		{"shake before login", 0, func(*testing.T) []byte { return proto.AppendShake(nil, now64(), 106) }, proto.ReasonNotLoggedIn, proto.CmdShake},
		{"classic open before login", 0, func(*testing.T) []byte { return proto.AppendFrame(nil, proto.CmdClassicOpen, now64(), 0, 1) }, proto.ReasonNotLoggedIn, proto.CmdClassicOpen},
		{"garbage (HTTP request)", 0, func(*testing.T) []byte { return []byte("GET / HTTP/1.1\r\n\r\n") }, proto.ReasonBadLength, 0},
		{"forged token (MAC bit flipped)", 0, func(t *testing.T) []byte {
			tok := token(t, 107, time.Hour)
			tok.MAC[5] ^= 0x10
			return proto.AppendTokenLogin(nil, now64(), 107, &tok)
		}, proto.ReasonBadToken, proto.CmdTokenLogin},
		{"token signed with another secret", 0, func(t *testing.T) []byte {
			tok := mint(t, []byte("not the server's secret"), 108, time.Now().Add(time.Hour))
			return proto.AppendTokenLogin(nil, now64(), 108, &tok)
		}, proto.ReasonBadToken, proto.CmdTokenLogin},
		{"expired token", 0, func(t *testing.T) []byte {
			return proto.AppendTokenLogin(nil, now64(), 109, new(token(t, 109, -time.Minute)))
		}, proto.ReasonTokenExpired, proto.CmdTokenLogin},
		{"token of another user", 0, func(t *testing.T) []byte {
			return proto.AppendTokenLogin(nil, now64(), 110, new(token(t, 111, time.Hour)))
		}, proto.ReasonTokenOtherUser, proto.CmdTokenLogin},
		{"classic login not allowed", 0, func(*testing.T) []byte { return proto.AppendLogin(nil, now64(), 112) }, proto.ReasonClassicRefused, proto.CmdLogin},
		{"login twice on one connection", 113, func(t *testing.T) []byte {
			return proto.AppendTokenLogin(nil, now64(), 113, new(token(t, 113, time.Hour)))
		}, proto.ReasonAlreadyLogged, proto.CmdTokenLogin},
		{"login as another user on a logged-in connection", 114, func(t *testing.T) []byte {
			return proto.AppendTokenLogin(nil, now64(), 115, new(token(t, 115, time.Hour)))
		}, proto.ReasonAlreadyLogged, proto.CmdTokenLogin},
		{"server-to-client shake response", 116, func(*testing.T) []byte {
			return proto.AppendShakeResp(nil, now64(), 116, proto.ResultGot, 1, 1)
		}, proto.ReasonNotForClient, proto.CmdShakeResp},
		{"server-to-client login response", 0, func(*testing.T) []byte { return proto.AppendLoginResp(nil, now64(), 117, 0) }, proto.ReasonNotForClient, proto.CmdLoginResp},
		{"server-to-client error frame", 0, func(*testing.T) []byte {
			return proto.AppendError(nil, now64(), proto.ReasonShutdown, 0)
		}, proto.ReasonNotForClient, proto.CmdError},
		{"server-to-client classic push", 118, func(*testing.T) []byte {
			return proto.AppendFrame(nil, proto.CmdClassicPush, now64(), 1, 100, 3, 118, 2, 3)
		}, proto.ReasonNotForClient, proto.CmdClassicPush},
		{"user id 0 (token for 0)", 0, func(t *testing.T) []byte {
			return proto.AppendTokenLogin(nil, now64(), 0, new(token(t, 0, time.Hour)))
		}, proto.ReasonBadUser, proto.CmdTokenLogin},
		{"user id 0 (forged token for 0)", 0, func(*testing.T) []byte {
			return proto.AppendTokenLogin(nil, now64(), 0, &other)
		}, proto.ReasonBadToken, proto.CmdTokenLogin},
		{"shake carrying another user's id", 119, func(*testing.T) []byte { return proto.AppendShake(nil, now64(), 120) }, proto.ReasonBadUser, proto.CmdShake},
		{"good frames, then a bad one", 121, func(*testing.T) []byte {
			b := proto.AppendPing(nil, proto.CmdPing, now64(), 0)
			b = proto.AppendPing(b, proto.CmdPing, now64(), 1)
			return append(b, rawFrame(16, 0x7777, 16)...)
		}, proto.ReasonUnknownCommand, 0x7777},
	}

	bystander := login(t, s, 1000)
	shakeOK := func(t *testing.T, when string) {
		t.Helper()
		r, err := bystander.Shake()
		if err != nil || r.Result != proto.ResultNone {
			t.Fatalf("bystander shake %s: %+v %v, want an answer 'none'", when, r, err)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			shakeOK(t, "before")
			var c *client.Conn
			if tc.user != 0 {
				c = login(t, s, tc.user)
			} else {
				c = dial(t, s)
			}
			b := tc.send(t)
			if err := c.Send(b); err != nil {
				t.Fatal(err)
			}
			// Pings ahead of the bad frame are answered before the error.
			pings := 0
			for f, rest, _ := proto.Split(b); f != nil; f, rest, _ = proto.Split(rest) {
				if h, _, err := proto.Parse(f); err != nil || h.Cmd != proto.CmdPing {
					break
				}
				pings++
			}
			for i := range pings {
				f, err := c.Read()
				if err != nil || f.Cmd != proto.CmdPong || f.Field(0) != uint32(i) {
					t.Fatalf("pong %d before the error: %+v %v", i, f.Header, err)
				}
			}
			f, err := c.Read()
			var se *client.ServerError
			if !errors.As(err, &se) {
				t.Fatalf("want error frame, got %+v %v", f.Header, err)
			}
			if se.Reason != tc.want || se.Cause != tc.cause {
				t.Fatalf("closed with %q cause %#04x, want %q cause %#04x", se.Reason, uint16(se.Cause), tc.want, uint16(tc.cause))
			}
			expectEOF(t, c)
			shakeOK(t, "after")
		})
	}
	// Every bad connection is gone; the bystander alone is left.
	wait.For(t, 2*time.Second, "bad connections closed", func() bool {
		st := s.Stats()
		return st.Connections == 1 && st.LoggedIn == 1
	})
	if st := s.Stats(); st.Totals.Errors != uint64(len(tests)) {
		t.Errorf("server counted %d errors, want %d", st.Totals.Errors, len(tests))
	}
}

// TestPingPong: a ping is answered with the same nonce, logged in or not.
func TestPingPong(t *testing.T) {
	s := startServer(t, nil)
	for _, c := range []*client.Conn{dial(t, s), login(t, s, 5)} {
		for _, nonce := range []uint32{0, 1, 0xffffffff} {
			if err := c.Send(proto.AppendPing(nil, proto.CmdPing, now64(), nonce)); err != nil {
				t.Fatal(err)
			}
			f, err := c.Read()
			if err != nil || f.Cmd != proto.CmdPong || f.Field(0) != nonce {
				t.Fatalf("ping %d: %+v %v", nonce, f.Header, err)
			}
		}
	}
}

// TestUsersBound: with Options.Users set, ids above it are refused.
func TestUsersBound(t *testing.T) {
	s := startServer(t, func(o *Options) { o.Users = 10 })
	login(t, s, 10)
	c := dial(t, s)
	if err := c.Send(proto.AppendTokenLogin(nil, now64(), 11, new(token(t, 11, time.Hour)))); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, proto.ReasonBadUser)
}

// TestSecondLoginReplacesFirst: the same user logging in on a new
// connection closes the old one with ReasonReplaced; the new one works and
// the user is counted once.
func TestSecondLoginReplacesFirst(t *testing.T) {
	s := startServer(t, nil)
	first := login(t, s, 77)
	if r, err := first.Shake(); err != nil || r.Result != proto.ResultNone {
		t.Fatalf("first shake: %+v %v", r, err)
	}
	if n := s.Stats().LoggedIn; n != 1 {
		t.Fatalf("logged in = %d after the first login", n)
	}
	second := login(t, s, 77)
	if n := s.Stats().LoggedIn; n != 1 {
		t.Fatalf("logged in = %d after the second login, want 1", n)
	}
	f, err := first.Read()
	var se *client.ServerError
	if !errors.As(err, &se) || se.Reason != proto.ReasonReplaced || se.Cause != proto.CmdTokenLogin {
		t.Fatalf("first connection: %+v %v, want ReasonReplaced", f.Header, err)
	}
	expectEOF(t, first)
	wait.For(t, 2*time.Second, "old connection closed", func() bool { return s.Stats().Connections == 1 })
	if n := s.Stats().LoggedIn; n != 1 {
		t.Fatalf("logged in = %d after the old connection closed, want 1", n)
	}
	for range 3 {
		if r, err := second.Shake(); err != nil || r.Result != proto.ResultNone {
			t.Fatalf("second connection shake: %+v %v", r, err)
		}
	}
	// The user's packets reach the new session: a packet issued now is
	// granted to it.
	if _, err := s.StartCampaign(CampaignSpec{Count: 1, Rate: 1000, Min: 5, Max: 5}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 2*time.Second, "packet issued", func() bool { return s.Stats().Waiting == 1 })
	if r, err := second.Shake(); err != nil || r.Result != proto.ResultGot || r.Amount != 5 {
		t.Fatalf("second connection after issue: %+v %v", r, err)
	}
	second.Close()
	wait.For(t, 2*time.Second, "user logged out", func() bool { return s.Stats().LoggedIn == 0 })
}

// TestClassicServerRefusals: a server that allows classic logins still
// refuses bad user ids, and without a secret it cannot accept tokens.
func TestClassicServerRefusals(t *testing.T) {
	s := startServer(t, func(o *Options) { o.AllowClassic = true; o.Secret = nil; o.Users = 100 })
	tests := []struct {
		name string
		send []byte
		want proto.Reason
	}{
		{"classic login as user 0", proto.AppendLogin(nil, now64(), 0), proto.ReasonBadUser},
		{"classic login above Users", proto.AppendLogin(nil, now64(), 101), proto.ReasonBadUser},
		{"token login without a secret", proto.AppendTokenLogin(nil, now64(), 5, new(token(t, 5, time.Hour))), proto.ReasonBadToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s)
			if err := c.Send(tc.send); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c, tc.want)
		})
	}
	c := dial(t, s)
	if err := c.LoginClassic(100); err != nil {
		t.Fatalf("classic login of user 100: %v", err)
	}
	if r, err := c.Shake(); err != nil || r.Result != proto.ResultNone {
		t.Fatalf("classic shake: %+v %v", r, err)
	}
}
