package server

import (
	"fmt"
	"net/http"

	"hongbao/internal/adminauth"
	"hongbao/internal/auth"
)

// openAdminPaths are the admin endpoints anyone who reaches the listener
// may GET: health, metrics, stats and the lists of campaigns and
// generators. Everything else (pprof, every POST, the classic
// /yaohongbao and /fahongbao, the audit and balances) needs the token.
var openAdminPaths = []string{"/healthz", "/metrics", "/api/stats", "/api/campaigns", "/api/generators"}

// checkAdmin validates the admin and token options and sets their defaults.
func (o *Options) checkAdmin() error {
	if o.MaxTokenTTL == 0 {
		o.MaxTokenTTL = auth.DefaultMaxTTL
	}
	if o.MaxTokenTTL < 0 {
		return fmt.Errorf("%w: max token TTL must be positive", ErrBadOptions)
	}
	if o.Admin == "" {
		return nil
	}
	if o.AdminAuthOff {
		if err := adminauth.CheckOff(o.Admin); err != nil {
			return fmt.Errorf("%w: %w", ErrBadOptions, err)
		}
		return nil
	}
	if o.AdminToken == "" {
		return fmt.Errorf("%w: an admin token is required (or admin auth off on a loopback admin address)", ErrBadOptions)
	}
	if err := adminauth.Check(o.AdminToken); err != nil {
		return fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	return nil
}

// guardAdmin puts the admin token in front of the admin mux.
func (s *Server) guardAdmin(h http.Handler) http.Handler {
	if s.opts.AdminAuthOff {
		return h
	}
	return adminauth.Wrap(h, s.opts.AdminToken, openAdminPaths...)
}

// warnExposed warns about each listener other hosts can reach.
func (s *Server) warnExposed() {
	log := s.opts.Logger
	adminauth.WarnExposed(log, "client", s.addr, "the client protocol: logins (token-checked"+classicNote(s.opts.AllowClassic)+"), shakes, group packets")
	if s.adminLn != nil {
		what := "/healthz, /metrics, /api/stats and the campaign and generator lists to anyone; pprof, audit, balances and every state-changing endpoint to holders of the admin token"
		adminauth.WarnExposed(log, "admin", s.AdminAddr(), what)
	}
}

func classicNote(classic bool) string {
	if classic {
		return "; classic bare user-id login ALLOWED: anyone may log in as any user"
	}
	return ""
}
