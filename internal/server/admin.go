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
		if s.draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
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
	mux.HandleFunc("/fahongbao", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotImplemented, errors.New("group packets are not available yet"))
	})
	return mux
}

func (s *Server) startCampaign(w http.ResponseWriter, spec CampaignSpec) {
	info, err := s.StartCampaign(spec)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
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
