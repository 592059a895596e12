package load

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/proto"
)

// fakeServer is a tiny hongbao server for the tests: a goroutine per
// connection (fine here, never in the real thing) speaking the protocol
// through package proto, with switches for the behaviours under test.
type fakeServer struct {
	ln net.Listener

	// Behaviour, set before start.
	secret      []byte        // verify token logins with it (nil: accept any)
	refuse      proto.Reason  // answer every login with this error and close
	dropFirst   bool          // close each user's first connection on its first shake, unanswered
	answerDelay time.Duration // answer shakes this late
	push        bool          // after login, push a group packet and a ping

	mu        sync.Mutex
	perSec    map[int64]int         // shakes received per Unix second
	logins    map[uint32]int        // successful logins per user
	loginCmds map[proto.Cmd]int     // login frames by command
	badTokens int                   // token logins that failed to verify
	shakes    int                   // shakes received
	got       int                   // "got" results sent
	opens     map[uint32]uint32     // packet id -> userid field of its open
	pongs     map[uint32]int        // pong nonces received
	dropped   map[uint32]bool       // users whose first connection was dropped
	conns     map[net.Conn]struct{} // open connections, closed on stop
	wg        sync.WaitGroup
}

func startServer(t *testing.T, cfg func(*fakeServer)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{
		ln:        ln,
		perSec:    map[int64]int{},
		logins:    map[uint32]int{},
		loginCmds: map[proto.Cmd]int{},
		opens:     map[uint32]uint32{},
		pongs:     map[uint32]int{},
		dropped:   map[uint32]bool{},
		conns:     map[net.Conn]struct{}{},
	}
	if cfg != nil {
		cfg(s)
	}
	s.wg.Go(s.serve)
	t.Cleanup(s.stop)
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) serve() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[nc] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() { s.handle(nc) })
	}
}

func (s *fakeServer) stop() {
	_ = s.ln.Close()
	s.mu.Lock()
	for nc := range s.conns {
		_ = nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) handle(nc net.Conn) {
	defer func() {
		_ = nc.Close()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
	}()
	var wmu sync.Mutex // delayed answers write from timer goroutines
	write := func(b []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = nc.Write(b)
	}
	var signer *auth.Signer
	if s.secret != nil {
		signer, _ = auth.NewSigner(s.secret)
	}
	r := bufio.NewReader(nc)
	buf := make([]byte, proto.MaxFrame)
	var user uint32
	firstConn := false
	for {
		if _, err := io.ReadFull(r, buf[:2]); err != nil {
			return
		}
		n, err := proto.PeekLength(buf)
		if err != nil {
			return
		}
		if _, err := io.ReadFull(r, buf[2:n]); err != nil {
			return
		}
		h, p, err := proto.Parse(buf[:n])
		now := uint64(time.Now().Unix())
		if err != nil {
			write(proto.AppendError(nil, now, proto.ReasonBadPayload, h.Cmd))
			return
		}
		switch h.Cmd {
		case proto.CmdLogin, proto.CmdTokenLogin:
			s.mu.Lock()
			s.loginCmds[h.Cmd]++
			s.mu.Unlock()
			if s.refuse != 0 {
				write(proto.AppendError(nil, now, s.refuse, h.Cmd))
				return
			}
			if h.Cmd == proto.CmdTokenLogin {
				var tok proto.Token
				user = proto.DecodeTokenLogin(p, &tok)
				if signer != nil && signer.Verify(&tok, user, time.Now()) != nil {
					s.mu.Lock()
					s.badTokens++
					s.mu.Unlock()
					write(proto.AppendError(nil, now, proto.ReasonBadToken, h.Cmd))
					return
				}
			} else {
				user = proto.U32(p, 0)
			}
			s.mu.Lock()
			s.logins[user]++
			firstConn = !s.dropped[user]
			s.mu.Unlock()
			write(proto.AppendLoginResp(nil, now, user, proto.ResultOK))
			if s.push {
				write(proto.AppendFrame(nil, proto.CmdClassicPush, now, 1000+user, 50, 3, user, 0, 0))
				write(proto.AppendPing(nil, proto.CmdPing, now, 7000+user))
			}
		case proto.CmdShake:
			s.mu.Lock()
			s.perSec[time.Now().Unix()]++
			s.shakes++
			drop := s.dropFirst && firstConn
			if drop {
				s.dropped[user] = true
			}
			result, amount := proto.ResultNone, uint32(0)
			if s.shakes%2 == 0 {
				result, amount = proto.ResultGot, 5
				s.got++
			}
			s.mu.Unlock()
			if drop {
				return
			}
			resp := proto.AppendShakeResp(nil, now, proto.U32(p, 0), result, 1, amount)
			if s.answerDelay > 0 {
				time.AfterFunc(s.answerDelay, func() { write(resp) })
			} else {
				write(resp)
			}
		case proto.CmdClassicOpen:
			s.mu.Lock()
			s.opens[proto.U32(p, 1)] = proto.U32(p, 0)
			s.mu.Unlock()
			write(proto.AppendFrame(nil, proto.CmdClassicOpenR, now, proto.U32(p, 1), 17))
		case proto.CmdPong:
			s.mu.Lock()
			s.pongs[proto.U32(p, 0)]++
			s.mu.Unlock()
		default:
			write(proto.AppendError(nil, now, proto.ReasonNotForClient, h.Cmd))
			return
		}
	}
}

// rates returns the shakes received in each second strictly between the
// first and the last second that saw any (the partial edges left out).
func (s *fakeServer) rates() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	lo, hi := int64(1<<62), int64(0)
	for sec := range s.perSec {
		lo, hi = min(lo, sec), max(hi, sec)
	}
	var out []int
	for sec := lo + 1; sec < hi; sec++ {
		out = append(out, s.perSec[sec])
	}
	return out
}
