package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"hongbao/internal/wait"
)

func TestAdminHealthz(t *testing.T) {
	s := startServer(t, nil)
	code, body := httpDo(t, s, "GET", "/healthz", "")
	if code != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, _ := httpDo(t, s, "POST", "/healthz", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d, want 405", code)
	}
}

func TestAdminCampaigns(t *testing.T) {
	s := startServer(t, nil)

	// A valid spec of each kind is created and shown.
	var c1, c2 CampaignInfo
	if code := httpJSON(t, s, "POST", "/api/campaigns", `{"count":1000000,"rate":1000,"min":1,"max":200}`, &c1); code != http.StatusCreated {
		t.Fatalf("POST min/max campaign: %d", code)
	}
	if c1.ID == 0 || c1.Count != 1_000_000 || c1.Rate != 1000 || c1.Min != 1 || c1.Max != 200 || c1.State != StateRunning {
		t.Fatalf("created %+v", c1)
	}
	if code := httpJSON(t, s, "POST", "/api/campaigns", `{"count":50,"rate":1000,"budget":5000}`, &c2); code != http.StatusCreated {
		t.Fatalf("POST budget campaign: %d", code)
	}
	if c2.ID == c1.ID || c2.Budget != 5000 || c2.Count != 50 {
		t.Fatalf("created %+v after %+v", c2, c1)
	}

	// Both are listed; the budget one finishes issuing.
	wait.For(t, 3*time.Second, "budget campaign issued", func() bool {
		var list []CampaignInfo
		httpJSON(t, s, "GET", "/api/campaigns", "", &list)
		return len(list) == 2 && list[1].State == StateDone && list[1].Issued == 50
	})
	var list []CampaignInfo
	if code := httpJSON(t, s, "GET", "/api/campaigns", "", &list); code != http.StatusOK {
		t.Fatalf("GET /api/campaigns: %d", code)
	}
	if list[0].ID != c1.ID || list[1].ID != c2.ID || list[1].AmountIssued != 5000 {
		t.Fatalf("listed %+v", list)
	}

	// Stopping: the running one becomes stopped, a finished one stays done,
	// an unknown or malformed id is an error.
	var stopped CampaignInfo
	if code := httpJSON(t, s, "POST", fmt.Sprintf("/api/campaigns/%d/stop", c1.ID), "", &stopped); code != http.StatusOK || stopped.State != StateStopped {
		t.Fatalf("stop %d: %d %+v", c1.ID, code, stopped)
	}
	issued := stopped.Issued
	if code := httpJSON(t, s, "POST", fmt.Sprintf("/api/campaigns/%d/stop", c2.ID), "", &stopped); code != http.StatusOK || stopped.State != StateDone {
		t.Fatalf("stop a finished campaign: %d %+v", code, stopped)
	}
	var e struct{ Error string }
	if code := httpJSON(t, s, "POST", "/api/campaigns/999/stop", "", &e); code != http.StatusNotFound || e.Error == "" {
		t.Fatalf("stop unknown campaign: %d %+v, want 404 with an error", code, e)
	}
	if code := httpJSON(t, s, "POST", "/api/campaigns/abc/stop", "", &e); code != http.StatusBadRequest || e.Error == "" {
		t.Fatalf("stop campaign 'abc': %d %+v, want 400", code, e)
	}
	// A stopped campaign issues no more.
	time.Sleep(100 * time.Millisecond) // a running campaign would issue about 100 more
	if ci := s.Campaigns()[0]; ci.Issued != issued || ci.State != StateStopped {
		t.Fatalf("after stop: %+v, issued was %d", ci, issued)
	}
}

func TestAdminRejectsBadCampaigns(t *testing.T) {
	s := startServer(t, nil)
	tests := []struct {
		name, body string
	}{
		{"count 0", `{"count":0,"rate":10,"min":1,"max":2}`},
		{"count missing", `{"rate":10,"min":1,"max":2}`},
		{"rate 0", `{"count":10,"rate":0,"min":1,"max":2}`},
		{"min above max", `{"count":10,"rate":10,"min":5,"max":2}`},
		{"min 0", `{"count":10,"rate":10,"min":0,"max":2}`},
		{"no amounts at all", `{"count":10,"rate":10}`},
		{"budget below count", `{"count":10,"rate":10,"budget":9}`},
		{"budget and min", `{"count":10,"rate":10,"budget":1000,"min":1}`},
		{"budget and max", `{"count":10,"rate":10,"budget":1000,"max":5}`},
		// Every packet's amount travels as a uint32: a budget that would let
		// one packet exceed 2^32-1 cents must be refused.
		{"budget that overflows a packet amount", `{"count":3,"rate":10,"budget":6442450944}`},
		{"negative count", `{"count":-1,"rate":10,"min":1,"max":2}`},
		{"unknown field", `{"count":10,"rate":10,"min":1,"max":2,"qps":5}`},
		{"not JSON", `count=10`},
		{"empty body", ``},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e struct{ Error string }
			code := httpJSON(t, s, "POST", "/api/campaigns", tc.body, &e)
			if code != http.StatusBadRequest || e.Error == "" {
				t.Fatalf("%s: %d %+v, want 400 with an error message", tc.body, code, e)
			}
		})
	}
	if n := len(s.Campaigns()); n != 0 {
		t.Fatalf("%d campaigns created by bad specs", n)
	}
	// The classic endpoint validates too.
	for _, q := range []string{"", "?qps=10", "?qps=x&sum=5", "?qps=0&sum=5", "?qps=10&sum=0"} {
		var e struct{ Error string }
		if code := httpJSON(t, s, "GET", "/yaohongbao"+q, "", &e); code != http.StatusBadRequest || e.Error == "" {
			t.Errorf("/yaohongbao%s: %d %+v, want 400", q, code, e)
		}
	}
}

// TestAdminLargestBudget: the largest budget the API accepts issues
// packets whose amounts, as sent on the wire, add up to it.
func TestAdminLargestBudget(t *testing.T) {
	s := startServer(t, nil)
	const count = 3
	budget := uint64(1<<32-1) + count - 1
	c := login(t, s, 1) // before the campaign, so that every packet goes to its set
	var ci CampaignInfo
	if code := httpJSON(t, s, "POST", "/api/campaigns", fmt.Sprintf(`{"count":%d,"rate":1000,"budget":%d}`, count, budget), &ci); code != http.StatusCreated {
		t.Fatalf("budget %d: %d", budget, code)
	}
	var sum uint64
	wait.For(t, 3*time.Second, "all packets taken", func() bool {
		r, err := c.Shake()
		if err != nil {
			t.Fatal(err)
		}
		sum += uint64(r.Amount)
		return r.Result == 16
	})
	if sum != budget {
		t.Fatalf("packets granted %d cents, budget %d", sum, budget)
	}
}

func TestAdminMisc(t *testing.T) {
	s := startServer(t, nil)
	var e struct{ Error string }
	if code := httpJSON(t, s, "GET", "/fahongbao?qps=1&sum=1&min=1&max=2", "", &e); code != http.StatusBadRequest || e.Error == "" {
		t.Fatalf("/fahongbao for 2 users: %d %+v, want 400", code, e)
	}

	c := login(t, s, 3)
	if _, err := c.Shake(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartCampaign(CampaignSpec{Count: 5, Rate: 100, Min: 1, Max: 2}); err != nil {
		t.Fatal(err)
	}
	code, body := httpDo(t, s, "GET", "/api/stats", "")
	if code != http.StatusOK {
		t.Fatalf("/api/stats: %d", code)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("/api/stats: %v in %s", err, body)
	}
	for _, k := range []string{"connections", "logged_in", "totals", "rates", "campaigns"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/api/stats has no %q: %s", k, body)
		}
	}
	var st struct {
		Connections int64
		LoggedIn    int64 `json:"logged_in"`
		Totals      map[string]uint64
		Campaigns   []CampaignInfo
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"requests", "shakes", "got", "none", "all_taken", "overloaded", "logins", "errors", "granted_amount"} {
		if _, ok := st.Totals[k]; !ok {
			t.Errorf("/api/stats totals have no %q: %s", k, body)
		}
	}
	if st.Connections != 1 || st.LoggedIn != 1 || st.Totals["shakes"] != 1 || st.Totals["logins"] != 1 ||
		st.Totals["requests"] != 2 || st.Totals["none"] != 1 || len(st.Campaigns) != 1 {
		t.Errorf("/api/stats: %s", body)
	}
}
