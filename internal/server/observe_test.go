package server

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"hongbao/internal/metric"
	"hongbao/internal/proto"
	"hongbao/internal/sample"
	"hongbao/internal/wait"
)

// TestCountersVocabulary: the dense command and disconnect indexes match
// the names the samples and /metrics use, and a server sample's counter
// keys are exactly Metrics.Counters (the monitor's CSV columns).
func TestCountersVocabulary(t *testing.T) {
	if len(commandNames) != numCommands || len(disconnectNames) != numDisconnects {
		t.Fatalf("%d command names for %d counters, %d disconnect names for %d counters",
			len(commandNames), numCommands, len(disconnectNames), numDisconnects)
	}
	for cmd, want := range map[proto.Cmd]string{
		proto.CmdShake: "shake", proto.CmdLogin: "login", proto.CmdTokenLogin: "token_login", proto.CmdClassicOpen: "classic_open",
		proto.CmdPing: "ping", proto.CmdPong: "pong", proto.CmdSend: "send", proto.CmdOpen: "open", proto.CmdList: "list",
		proto.CmdShakeResp: "other", proto.CmdPush: "other", 0x7777: "other",
	} {
		if got := commandNames[commandIndex(cmd)]; got != want {
			t.Errorf("command %#04x counts as %q, want %q", uint16(cmd), got, want)
		}
	}
	for r := proto.Reason(1); r < proto.NumReasons; r++ {
		if got := disconnectNames[disconnectIndex(r, nil)]; got != r.Name() {
			t.Errorf("reason %v counts as %q", r, got)
		}
	}
	for err, want := range map[error]string{
		nil: "stopped", errors.New("read: EOF"): "io_error",
	} {
		if got := disconnectNames[disconnectIndex(0, err)]; got != want {
			t.Errorf("close with %v counts as %q, want %q", err, got, want)
		}
	}
	var keys []string
	s := startServer(t, nil)
	c, _ := Metrics.Sample(Metrics.Read(s.read()), metric.Reading{})
	for k := range c {
		keys = append(keys, k)
	}
	want := Metrics.Counters()
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("sample counters %v\nwant Metrics.Counters %v", keys, want)
	}
}

// TestDisconnectsAndRequestsByLabel closes connections for several reasons
// and reads them back from /metrics, with the requests by command.
func TestDisconnectsAndRequestsByLabel(t *testing.T) {
	s := startServer(t, nil)
	// A client that hangs up.
	c1 := login(t, s, 11)
	if _, err := c1.Shake(); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	// A shake before login: not_logged_in.
	c2 := dial(t, s)
	if err := c2.Send(proto.AppendShake(nil, now64(), 12)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c2, proto.ReasonNotLoggedIn)
	// A frame length out of range: bad_length (no request counted).
	c3 := dial(t, s)
	if err := c3.Send(rawFrame(5, proto.CmdShake, 12)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c3, proto.ReasonBadLength)
	// The same user logging in again replaces the first session.
	c4 := login(t, s, 13)
	login(t, s, 13)
	expectClosed(t, c4, proto.ReasonReplaced)

	want := map[string]float64{"hangup": 1, "not_logged_in": 1, "bad_length": 1, "replaced": 1}
	var fams map[string]*dto
	wait.For(t, 3*time.Second, "the closes counted", func() bool {
		fams = scrape(t, s)
		got := labelled(fams["hongbao_disconnects_total"], "reason")
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	})
	got := labelled(fams["hongbao_disconnects_total"], "reason")
	if len(got) != len(sample.DisconnectReasons()) {
		t.Errorf("%d reasons exposed, want the %d names", len(got), len(sample.DisconnectReasons()))
	}
	for k, v := range got {
		if want[k] != v {
			t.Errorf("disconnects{reason=%q} = %v, want %v", k, v, want[k])
		}
	}
	req := labelled(fams["hongbao_requests_total"], "command")
	if req["token_login"] != 3 || req["shake"] != 2 || req["other"] != 0 || len(req) != numCommands {
		t.Errorf("requests by command %v", req)
	}
	tot, _ := s.totals()
	if tot.Requests != 5 || tot.Closed != 4 {
		t.Errorf("totals: requests %d (want 5), closed %d (want 4)", tot.Requests, tot.Closed)
	}
}

type dto = struct {
	m []map[string]string
	v []float64
}

// scrape reads /metrics into label sets and values per family.
func scrape(t testing.TB, s *Server) map[string]*dto {
	t.Helper()
	resp, err := http.Get("http://" + s.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto{}
	for name, f := range fams {
		d := &dto{}
		for _, m := range f.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			d.m = append(d.m, ls)
			d.v = append(d.v, m.GetCounter().GetValue()+m.GetGauge().GetValue())
		}
		out[name] = d
	}
	return out
}

func labelled(d *dto, label string) map[string]float64 {
	out := map[string]float64{}
	if d == nil {
		return out
	}
	for i, ls := range d.m {
		out[ls[label]] = d.v[i]
	}
	return out
}

// TestGroupPacketCountersInMetrics: a group packet sent to an online
// recipient and opened shows in the group counters and on /metrics.
func TestGroupPacketCountersInMetrics(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := login(t, s, 21), login(t, s, 22)
	id := send(t, alice, 300, 1, 1, 22)
	if p, err := bob.ReadPush(); err != nil || p.Packet != id {
		t.Fatalf("push %+v %v", p, err)
	}
	if r := open(t, bob, id); r.Result != proto.ResultOK || r.Amount != 300 {
		t.Fatalf("open %+v", r)
	}
	g := s.groupStats()
	if g.Sent != 1 || g.FundedAmount != 300 || g.Pushes != 1 || g.Grants != 1 || g.GrantedAmount != 300 || g.Opens != 1 {
		t.Fatalf("group stats %+v", g)
	}
	fams := scrape(t, s)
	for name, want := range map[string]float64{
		"hongbao_group_packets_sent_total": 1, "hongbao_group_packets_sent_cents_total": 300,
		"hongbao_group_shares_granted_total": 1, "hongbao_group_shares_granted_cents_total": 300,
		"hongbao_group_pushes_total": 1, "hongbao_group_opens_total": 1,
		"hongbao_group_refunds_total": 0, "hongbao_group_refunded_cents_total": 0,
	} {
		if d := fams[name]; d == nil || len(d.v) != 1 || d.v[0] != want {
			t.Errorf("%s = %+v, want %v", name, d, want)
		}
	}
	c, _ := Metrics.Sample(Metrics.Read(s.read()), metric.Reading{})
	if c["group_sent_cents"] != 300 || c["group_pushes"] != 1 || c["group_shares"] != 1 {
		t.Errorf("sample counters %v", c)
	}
}
