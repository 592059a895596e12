package monitor

import (
	"bufio"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"time"

	"hongbao/internal/adminauth"
	"hongbao/internal/sample"
)

// web is the dashboard: index.html, dashboard.js, charts.js (shared with
// `hongbao plot`'s report), style.css and uPlot (MIT, vendored from npm
// uplot 1.6.32; see web/uPlot.LICENSE). Nothing is loaded from outside the
// binary.
//
//go:embed web
var web embed.FS

// Asset is the file name of the dashboard's web directory (for the report
// `hongbao plot` writes, which inlines uPlot, charts.js and the style).
func Asset(name string) ([]byte, error) { return web.ReadFile("web/" + name) }

// Handler serves the push endpoint, the JSON API and the dashboard:
//
//	POST /api/push           NDJSON samples (package sample)
//	GET  /api/series?since=T closed seconds after T, oldest first (&last=N: only the last N)
//	GET  /api/latest         processes and the latest closed second
//	GET  /api/charts         the charts the dashboard draws (Charts)
//	GET  /                   the live dashboard
func (m *Monitor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+sample.PushPath, func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(bufio.NewReader(http.MaxBytesReader(w, r.Body, 16<<20)))
		var ss []sample.Sample
		for dec.More() {
			var s sample.Sample
			if err := dec.Decode(&s); err != nil {
				http.Error(w, fmt.Sprintf("bad sample: %v", err), http.StatusBadRequest)
				return
			}
			ss = append(ss, s)
		}
		m.Add(ss...)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /api/series", func(w http.ResponseWriter, r *http.Request) {
		var since int64
		if v := r.URL.Query().Get("since"); v != "" {
			var err error
			if since, err = strconv.ParseInt(v, 10, 64); err != nil {
				http.Error(w, "since: want a Unix second", http.StatusBadRequest)
				return
			}
		}
		secs := m.Series(since)
		if v := r.URL.Query().Get("last"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				http.Error(w, "last: want a number of seconds", http.StatusBadRequest)
				return
			}
			secs = secs[max(len(secs)-n, 0):]
		}
		writeJSON(w, secs)
	})
	mux.HandleFunc("GET /api/latest", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, m.Status())
	})
	mux.HandleFunc("GET /api/charts", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, Charts)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	sub, _ := fs.Sub(web, "web")
	mux.Handle("GET /", http.FileServerFS(sub))
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// Running is a monitor serving HTTP.
type Running struct {
	*Monitor
	ln  net.Listener
	srv *http.Server
}

// Listen creates a monitor, starts it and serves its Handler on addr
// ("127.0.0.1:0" picks a port).
func Listen(addr string, o Options) (*Running, error) {
	m, err := New(o)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("monitor listen %s: %w", addr, err)
	}
	r := &Running{Monitor: m, ln: ln, srv: &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}}
	// The monitor holds no secret and changes nothing but its series, so
	// its endpoints stay open; other hosts reaching them is worth a warning.
	adminauth.WarnExposed(m.o.Logger, "monitor", r.Addr(), "the dashboard and the series to anyone, and POST "+sample.PushPath+" lets anyone add samples to the recorded series")
	m.Start()
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Addr is the address the monitor listens on.
func (r *Running) Addr() string { return r.ln.Addr().String() }

// URL is the dashboard's address.
func (r *Running) URL() string { return "http://" + r.Addr() + "/" }

// Stop stops serving, closes the open seconds and the file.
func (r *Running) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	return r.Monitor.Close()
}
