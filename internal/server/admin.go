package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// adminHandler serves the admin API. Handlers are thin: each calls one
// method of the Server and writes its result as JSON.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	s.mountObservability(mux) // /metrics, /debug/pprof (observe.go)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.Health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /api/campaigns", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Campaigns())
	})
	mux.HandleFunc("POST /api/campaigns", func(w http.ResponseWriter, r *http.Request) {
		var spec CampaignSpec
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("campaign JSON: %w", err))
			return
		}
		s.startCampaign(w, spec)
	})
	mux.HandleFunc("POST /api/campaigns/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 32)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("campaign id: %w", err))
			return
		}
		info, err := s.StopCampaign(uint32(id))
		if errors.Is(err, ErrNoCampaign) {
			writeError(w, http.StatusNotFound, err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	// The classic control endpoints of the original server.
	mux.HandleFunc("/yaohongbao", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rate, err1 := strconv.ParseUint(q.Get("qps"), 10, 32)
		sum, err2 := strconv.ParseUint(q.Get("sum"), 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("want /yaohongbao?qps=R&sum=N: %w", err))
			return
		}
		s.startCampaign(w, CampaignSpec{Count: uint32(sum), Rate: uint32(rate), Min: s.opts.AmountMin, Max: s.opts.AmountMax})
	})
	mux.HandleFunc("/fahongbao", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var v [4]uint64
		var errs []error
		for i, name := range []string{"qps", "sum", "min", "max"} {
			var err error
			v[i], err = strconv.ParseUint(q.Get(name), 10, 32)
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("want /fahongbao?qps=R&sum=N&min=A&max=B (users A..B): %w", err))
			return
		}
		s.startGenerator(w, GeneratorSpec{Rate: uint32(v[0]), Count: uint32(v[1]), From: uint32(v[2]), To: uint32(v[3])})
	})
	mux.HandleFunc("POST /api/generators", func(w http.ResponseWriter, r *http.Request) {
		var spec GeneratorSpec
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("generator JSON: %w", err))
			return
		}
		s.startGenerator(w, spec)
	})
	mux.HandleFunc("GET /api/generators", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Generators())
	})
	mux.HandleFunc("GET /api/audit", func(w http.ResponseWriter, _ *http.Request) {
		rep, err := s.Audit()
		if errors.Is(err, ErrNoLedger) {
			writeError(w, http.StatusNotFound, err)
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /api/topup", func(w http.ResponseWriter, r *http.Request) { s.serveTransfer(w, r, s.TopUp) })
	mux.HandleFunc("POST /api/withdraw", func(w http.ResponseWriter, r *http.Request) { s.serveTransfer(w, r, s.Withdraw) })
	mux.HandleFunc("GET /api/balance/{user}", func(w http.ResponseWriter, r *http.Request) {
		u, err := strconv.ParseUint(r.PathValue("user"), 10, 32)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("user id: %w", err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]int64{"balance": s.money.Balance(uint32(u))})
	})
	return s.guardAdmin(mux)
}

// transferRequest is the body of POST /api/topup and /api/withdraw.
type transferRequest struct {
	User  uint32 `json:"user"`
	Cents uint64 `json:"cents"`
	Key   string `json:"key"`
}

// serveTransfer decodes a top-up or withdrawal, runs it with do and
// answers once it is durable: 200 with the transfer (a repeated key
// answers the first one's, "repeat": true), 400 malformed, 409 refused
// (balance short, or the key used for another transfer), 503 too many keys
// or the ledger failed.
func (s *Server) serveTransfer(w http.ResponseWriter, r *http.Request, do func(uint32, uint64, string) (Transfer, error)) {
	var req transferRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<12))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("transfer JSON {\"user\":U,\"cents\":N,\"key\":\"...\"}: %w", err))
		return
	}
	t, err := do(req.User, req.Cents, req.Key)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, t)
	case errors.Is(err, ErrBadTransfer):
		writeError(w, http.StatusBadRequest, err)
	case errors.Is(err, ErrInsufficientFunds), errors.Is(err, ErrKeyReused):
		writeError(w, http.StatusConflict, err)
	default:
		writeError(w, http.StatusServiceUnavailable, err)
	}
}

func (s *Server) startGenerator(w http.ResponseWriter, spec GeneratorSpec) {
	info, err := s.StartGenerator(spec)
	if err != nil {
		writeError(w, startStatus(err), err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) startCampaign(w http.ResponseWriter, spec CampaignSpec) {
	info, err := s.StartCampaign(spec)
	if err != nil {
		writeError(w, startStatus(err), err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

// startStatus is the HTTP status of a refused campaign or generator: 429
// when as many run as allowed (it may start once one ends), 400 otherwise.
func startStatus(err error) int {
	if errors.Is(err, ErrTooManyCampaigns) {
		return http.StatusTooManyRequests
	}
	return http.StatusBadRequest
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
