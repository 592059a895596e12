package load

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"hongbao/internal/adminauth"
)

// adminHandler serves the control endpoints:
//
//	GET|POST /qps?qps=Q  set the global rate (the classic client's endpoint)
//	GET /api/stats       live Snapshot as JSON
//	GET /healthz         "ok"
//
// /qps and pprof need the admin token (Options.AdminToken); health,
// metrics and stats are open.
func (c *Client) adminHandler() http.Handler {
	mux := http.NewServeMux()
	c.mountObservability(mux) // /metrics, /debug/pprof (observe.go)
	mux.HandleFunc("GET /qps", c.handleQPS)
	mux.HandleFunc("POST /qps", c.handleQPS)
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(c.Stats()); err != nil {
			c.log.Debug("admin: write stats", "err", err)
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	if c.o.AdminAuthOff {
		return mux
	}
	return adminauth.Wrap(mux, c.o.AdminToken, "/healthz", "/metrics", "/api/stats")
}

// checkAdmin validates the admin token options.
func checkAdmin(o *Options) error {
	switch {
	case o.Admin == "":
		return nil
	case o.AdminAuthOff:
		if err := adminauth.CheckOff(o.Admin); err != nil {
			return fmt.Errorf("%w: %w", ErrOptions, err)
		}
	case o.AdminToken == "":
		return fmt.Errorf("%w: an admin token is required with an admin listener (or admin auth off on a loopback address)", ErrOptions)
	default:
		if err := adminauth.Check(o.AdminToken); err != nil {
			return fmt.Errorf("%w: %w", ErrOptions, err)
		}
	}
	return nil
}

// handleQPS sets the rate from the qps parameter (query string or form
// body). Without it, it reports the current rate.
func (c *Client) handleQPS(w http.ResponseWriter, r *http.Request) {
	v := r.FormValue("qps")
	if v == "" {
		_, _ = fmt.Fprintf(w, "qps=%d\n", c.QPS())
		return
	}
	q, err := strconv.Atoi(v)
	if err != nil || q < 0 {
		http.Error(w, fmt.Sprintf("bad qps %q: want a non-negative integer", v), http.StatusBadRequest)
		return
	}
	old := c.QPS()
	c.SetQPS(q)
	c.log.Info("rate changed by admin request", "from", old, "to", q, "remote", r.RemoteAddr)
	_, _ = fmt.Fprintf(w, "qps=%d\n", q)
}
