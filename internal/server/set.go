package server

import (
	"sync"
	"sync/atomic"

	"hongbao/internal/money"
)

// A set is one partition of the users (a SET in the seed's design): the
// sessions of its users, guarded by its own mutex. The money engine keeps
// the SET's waiting shake packets apart, under a lock of their own;
// money.SetOf decides the SET of a user for both.
type set struct {
	mu       sync.Mutex
	sessions map[uint32]*session

	online atomic.Int64 // logged-in users, read by the issuer without the lock
	_      [64]byte     // keep neighbouring sets off this cache line
}

// setOf is the set that holds user.
func (s *Server) setOf(user uint32) *set { return &s.sets[money.SetOf(user, len(s.sets))] }

// session is user's session, or nil when the user is not logged in here.
func (s *set) session(user uint32) *session {
	s.mu.Lock()
	ss := s.sessions[user]
	s.mu.Unlock()
	return ss
}

// login records ss as the session of its user and returns the session it
// replaces, if any.
func (s *set) login(ss *session) (old *session) {
	s.mu.Lock()
	old = s.sessions[ss.user]
	s.sessions[ss.user] = ss
	s.mu.Unlock()
	if old == nil {
		s.online.Add(1)
	}
	return old
}

// logout forgets ss unless a newer session of the same user replaced it.
func (s *set) logout(ss *session) {
	s.mu.Lock()
	cur := s.sessions[ss.user]
	if cur == ss {
		delete(s.sessions, ss.user)
	}
	s.mu.Unlock()
	if cur == ss {
		s.online.Add(-1)
	}
}
