package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"hongbao/internal/adminauth"
	"hongbao/internal/load"
	"hongbao/internal/server"
)

// Admin is a client of an admin HTTP API (server or load client): JSON
// over HTTP with the child's bearer token. ServerAdmin and LoadAdmin give
// each endpoint the orchestrators use a typed method; Get and Post remain
// for tests that probe other paths.
type Admin struct {
	Base  string // http://host:port
	Token string // bearer token sent with every request ("": none)
	hc    http.Client
}

// adminTimeout bounds one admin request: a child too busy to answer within
// it is retried or waited for by the caller, never waited on forever.
const adminTimeout = 5 * time.Second

// NewAdmin returns a client of the admin API at addr (host:port).
func NewAdmin(addr string) *Admin {
	return &Admin{Base: "http://" + addr, hc: http.Client{Timeout: adminTimeout}}
}

// Addr is the admin API's host:port.
func (a *Admin) Addr() string { return strings.TrimPrefix(a.Base, "http://") }

// Get decodes the JSON at path into v.
func (a *Admin) Get(path string, v any) error { return a.do(http.MethodGet, path, nil, v) }

// Post sends body as JSON to path and decodes the answer into v.
func (a *Admin) Post(path string, body, v any) error { return a.do(http.MethodPost, path, body, v) }

func (a *Admin) do(method, path string, body, v any) error {
	b, err := a.raw(method, path, body)
	if err != nil || v == nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// raw sends the request and returns the body of a 2xx answer; any other
// status is an error carrying the body (the child's reason).
func (a *Admin) raw(method, path string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.Base+path, r)
	if err != nil {
		return nil, err
	}
	adminauth.SetHeader(req, a.Token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// Healthz reports whether GET /healthz answers 200 (a draining server
// answers 503).
func (a *Admin) Healthz() error {
	_, err := a.raw(http.MethodGet, "/healthz", nil)
	return err
}

// WaitHealthy polls /healthz until it answers 200, the child exits, or d passes.
func (a *Admin) WaitHealthy(p *Proc, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := a.Healthz()
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited before it was ready: %v", p.Name, p.exitErr())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v", p.Name, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ServerAdmin is the typed client of a server's admin API.
type ServerAdmin struct{ *Admin }

// NewServerAdmin returns a client of the server admin API at addr with token.
func NewServerAdmin(addr, token string) *ServerAdmin {
	a := NewAdmin(addr)
	a.Token = token
	return &ServerAdmin{a}
}

// ServerStats reads GET /api/stats.
func (a *ServerAdmin) ServerStats() (server.Stats, error) {
	var s server.Stats
	return s, a.Get("/api/stats", &s)
}

// StartCampaign starts a shake campaign (POST /api/campaigns).
func (a *ServerAdmin) StartCampaign(spec server.CampaignSpec) (server.CampaignInfo, error) {
	var info server.CampaignInfo
	return info, a.Post("/api/campaigns", spec, &info)
}

// StopCampaign stops campaign id and returns its final figures.
func (a *ServerAdmin) StopCampaign(id uint32) (server.CampaignInfo, error) {
	var info server.CampaignInfo
	return info, a.Post(fmt.Sprintf("/api/campaigns/%d/stop", id), nil, &info)
}

// Campaigns lists the server's campaigns (GET /api/campaigns).
func (a *ServerAdmin) Campaigns() ([]server.CampaignInfo, error) {
	var out []server.CampaignInfo
	return out, a.Get("/api/campaigns", &out)
}

// StartGenerator starts a group-packet generator (POST /api/generators).
func (a *ServerAdmin) StartGenerator(spec server.GeneratorSpec) (server.GeneratorInfo, error) {
	var info server.GeneratorInfo
	return info, a.Post("/api/generators", spec, &info)
}

// Generators lists the server's generators (GET /api/generators).
func (a *ServerAdmin) Generators() ([]server.GeneratorInfo, error) {
	var out []server.GeneratorInfo
	return out, a.Get("/api/generators", &out)
}

// Audit reads the live audit of the server's ledger (GET /api/audit).
func (a *ServerAdmin) Audit() (server.AuditReport, error) {
	var r server.AuditReport
	return r, a.Get("/api/audit", &r)
}

// Balance reads user's balance in cents (GET /api/balance/{user}).
func (a *ServerAdmin) Balance(user uint32) (int64, error) {
	var b struct {
		Balance *int64 `json:"balance"`
	}
	if err := a.Get(fmt.Sprintf("/api/balance/%d", user), &b); err != nil {
		return 0, err
	}
	if b.Balance == nil {
		return 0, fmt.Errorf("GET /api/balance/%d: no balance in the answer", user)
	}
	return *b.Balance, nil
}

// PauseMonitor pauses (or resumes) the server's per-second samples to its
// monitor; the cost benchmark compares windows with and without them.
func (a *ServerAdmin) PauseMonitor(paused bool) error {
	v := "0"
	if paused {
		v = "1"
	}
	_, err := a.raw(http.MethodPost, "/debug/monitor?paused="+v, nil)
	return err
}

// Metrics reads the server's Prometheus text (GET /metrics).
func (a *ServerAdmin) Metrics() ([]byte, error) { return a.raw(http.MethodGet, "/metrics", nil) }

// LoadAdmin is the typed client of a load client's admin API.
type LoadAdmin struct{ *Admin }

// NewLoadAdmin returns a client of the load admin API at addr with token.
func NewLoadAdmin(addr, token string) *LoadAdmin {
	a := NewAdmin(addr)
	a.Token = token
	return &LoadAdmin{a}
}

// SetQPS sets the global rate over all client processes (POST /qps).
func (a *LoadAdmin) SetQPS(q int) error {
	_, err := a.raw(http.MethodPost, "/qps?qps="+strconv.Itoa(q), nil)
	return err
}

// QPS reads the rate in force (GET /qps, which answers "qps=N").
func (a *LoadAdmin) QPS() (int, error) {
	b, err := a.raw(http.MethodGet, "/qps", nil)
	if err != nil {
		return 0, err
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "qps=")
	q, err := strconv.Atoi(v)
	if !ok || err != nil {
		return 0, fmt.Errorf("GET /qps: answer %q is not qps=N", b)
	}
	return q, nil
}

// LoadStats reads the load client's live state (GET /api/stats).
func (a *LoadAdmin) LoadStats() (load.Snapshot, error) {
	var s load.Snapshot
	return s, a.Get("/api/stats", &s)
}
