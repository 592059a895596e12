package runner

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"hongbao/internal/load"
	"hongbao/internal/monitor"
	"hongbao/internal/plot"
	"hongbao/internal/procstat"
	"hongbao/internal/scenario"
	"hongbao/internal/server"
)

// Summary is the JSON summary of a run (summary.json in the report directory).
type Summary struct {
	Users       int     `json:"users"`
	Plan        Plan    `json:"plan"`
	System      System  `json:"system"`
	Interrupted bool    `json:"interrupted"`
	Error       string  `json:"error,omitempty"`
	WallSeconds float64 `json:"wall_seconds"`
	Connect     Connect `json:"connect"`
	// Phases 2 and 3 (those that started).
	Phases  []PhaseResult `json:"phases"`
	Packets Packets       `json:"packets"`
	Audit   AuditResult   `json:"audit"`
	// Sums checks the monitor's series against the nodes' own counters.
	Sums      SumCheck     `json:"monitor_sums"`
	Nodes     []NodeResult `json:"nodes"`
	Processes []ProcUsage  `json:"processes"`
	Total     ProcUsage    `json:"total"`
	// MachineMemUsed is MemTotal - MemAvailable at the end of the load
	// (kernel socket memory included).
	MachineMemUsed uint64 `json:"machine_memory_used_bytes"`
	// Kernel is what the kernel's network stack dropped and resent during
	// the run (the whole machine's counters).
	Kernel  KernelNet   `json:"kernel_net"`
	Targets []TargetRow `json:"targets"`
	OK      bool        `json:"ok"` // every target met

	campaignInfos []server.CampaignInfo
	nodes         []*scenario.Node
	nodeStats     []server.Stats // by node; nodesRead of them could be read
	nodesRead     int
	clientSums    []load.Summary
	kernel0       KernelNet // at the start
}

// Connect is phase 1.
type Connect struct {
	Start       float64 `json:"start_unix"`
	Established int64   `json:"established"` // users online when the ramp ended
	Seconds     float64 `json:"seconds"`     // time to establish them all (0: never)
	HeldFrom    float64 `json:"held_from_unix"`
	MinHeld     int64   `json:"min_held"` // fewest users online at any progress tick after the ramp
	HeldToEnd   bool    `json:"held_to_end"`
	Disconnects uint64  `json:"disconnects"` // connections lost, all clients, whole run
}

// PhaseResult is one load phase, from the monitor's full seconds inside it.
type PhaseResult struct {
	Name        string  `json:"name"`
	TargetQPS   int     `json:"target_qps"`
	Start       float64 `json:"start_unix"`
	End         float64 `json:"end_unix"`
	Seconds     int     `json:"seconds"` // full seconds measured
	AchievedQPS float64 `json:"achieved_qps"`
	Within1Pct  float64 `json:"share_of_seconds_within_1pct"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	P999ms      float64 `json:"p999_ms"`
	Maxms       float64 `json:"max_ms"`
	Errors      uint64  `json:"errors"`
	Timeouts    uint64  `json:"timeouts"`
	Overloaded  uint64  `json:"overloaded"`
	Disconnects uint64  `json:"disconnects"`
	ServerErrs  uint64  `json:"server_errors"`
}

// Packets are the money that moved: shake packets (campaigns) and group packets.
type Packets struct {
	ShakeIssued       uint64 `json:"shake_issued"`
	ShakeIssuedCents  uint64 `json:"shake_issued_cents"`
	ShakeGranted      uint64 `json:"shake_granted"` // by the nodes
	ShakeGrantedCents uint64 `json:"shake_granted_cents"`
	ShakeReceived     uint64 `json:"shake_received"` // by the clients
	ShakeReceivedCts  uint64 `json:"shake_received_cents"`
	GroupSent         uint64 `json:"group_sent"`
	GroupFundedCents  uint64 `json:"group_funded_cents"`
	GroupOpens        uint64 `json:"group_opens"` // answered by the nodes
	GroupGrantedCents uint64 `json:"group_granted_cents"`
	GroupPushes       uint64 `json:"group_pushes_received"` // by the clients
	GroupOpened       uint64 `json:"group_opens_received"`
	GroupOpenedCents  uint64 `json:"group_opened_cents"`
}

// AuditResult is the audit of every node's ledger, summed.
type AuditResult struct {
	OK     bool                `json:"ok"`
	Report *server.AuditReport `json:"report,omitempty"`
	Errors []string            `json:"errors,omitempty"`
}

// SumCheck compares the monitor's sums over all nodes with the nodes' own counters.
type SumCheck struct {
	NodeShakes    uint64 `json:"node_shakes"`
	MonitorShakes uint64 `json:"monitor_shakes"`
	NodeGot       uint64 `json:"node_got"`
	MonitorGot    uint64 `json:"monitor_got"`
	NodeLogins    uint64 `json:"node_logins"`
	MonitorLogins uint64 `json:"monitor_logins"`
	Equal         bool   `json:"equal"`
}

// NodeResult is one node's own counters at the end of the load.
type NodeResult struct {
	Name       string `json:"name"`
	From       uint32 `json:"from"`
	To         uint32 `json:"to"`
	LoggedIn   int64  `json:"logged_in"`
	Logins     uint64 `json:"logins"`
	Shakes     uint64 `json:"shakes"`
	Got        uint64 `json:"got"`
	Errors     uint64 `json:"errors"`
	GroupSent  uint64 `json:"group_sent"`
	GroupOpens uint64 `json:"group_opens"`
}

// ProcUsage is a process's CPU and memory over the run.
type ProcUsage struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSS    int64   `json:"peak_rss_bytes"`
}

// TargetRow is a line of the table beside the seed's figures.
type TargetRow struct {
	Metric   string `json:"metric"`
	Seed     string `json:"seed"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	OK       bool   `json:"ok"`
}

func newSummary(o Options, p Plan, sys System) *Summary {
	return &Summary{Users: p.Users, Plan: p, System: sys, Connect: Connect{MinHeld: -1}, Phases: []PhaseResult{}, kernel0: ReadKernelNet()}
}

// fromResults fills phase 1 and the load phases from the scenario's results.
func (s *Summary) fromResults(rs []*scenario.Result) {
	unix := func(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }
	for _, r := range rs {
		switch ph := r.Phase.(type) {
		case scenario.Connect:
			s.Connect.Start, s.Connect.Established = unix(r.Start), r.Online
			if r.Connected > 0 {
				s.Connect.Seconds, s.Connect.HeldFrom = r.Connected.Seconds(), unix(r.End)
			}
		case scenario.Rate:
			s.Phases = append(s.Phases, PhaseResult{Name: r.Name, TargetQPS: ph.QPS, Start: unix(r.Start), End: unix(r.End)})
		}
		switch r.Phase.(type) {
		case scenario.Hold, scenario.Rate: // the fewest users online after the ramp
			if r.MinOnline >= 0 && (s.Connect.MinHeld < 0 || r.MinOnline < s.Connect.MinHeld) {
				s.Connect.MinHeld = r.MinOnline
			}
		}
	}
}

func (r *run) writeReport() error {
	s := r.sum
	secs, err := monitor.ReadFile(r.series)
	if err != nil {
		return err
	}
	for i := range s.Phases {
		phaseFromSeries(&s.Phases[i], secs)
	}
	// Client and node totals.
	for _, c := range s.clientSums {
		s.Connect.Disconnects += c.Disconnects
		s.Packets.ShakeReceived += c.Got
		s.Packets.ShakeReceivedCts += c.Amount
		s.Packets.GroupPushes += c.Pushes
		s.Packets.GroupOpened += c.Opens
		s.Packets.GroupOpenedCents += c.OpenedAmount
	}
	for _, c := range s.campaignInfos {
		s.Packets.ShakeIssued += uint64(c.Issued)
		s.Packets.ShakeIssuedCents += c.AmountIssued
	}
	s.Nodes = []NodeResult{}
	for k, st := range s.nodeStats {
		n := s.nodes[k]
		s.Nodes = append(s.Nodes, NodeResult{Name: n.Name, From: n.From, To: n.To, LoggedIn: st.LoggedIn, Logins: st.Totals.Logins,
			Shakes: st.Totals.Shakes, Got: st.Totals.Got, Errors: st.Totals.Errors, GroupSent: st.Groups.Sent, GroupOpens: st.Groups.Opens})
		s.Packets.ShakeGranted += st.Totals.Got
		s.Packets.ShakeGrantedCents += st.Totals.GrantedAmount
		s.Packets.GroupSent += st.Groups.Sent
		s.Packets.GroupFundedCents += st.Groups.FundedAmount
		s.Packets.GroupOpens += st.Groups.Opens
		s.Packets.GroupGrantedCents += st.Groups.GrantedAmount
		s.Sums.NodeShakes += st.Totals.Shakes
		s.Sums.NodeGot += st.Totals.Got
		s.Sums.NodeLogins += st.Totals.Logins
	}
	for _, sec := range secs {
		s.Sums.MonitorShakes += uint64(sec.Server["shakes"])
		s.Sums.MonitorGot += uint64(sec.Server["got"])
		s.Sums.MonitorLogins += uint64(sec.Server["logins"])
	}
	s.Sums.Equal = s.nodesRead == r.plan.Nodes && s.Sums.NodeShakes == s.Sums.MonitorShakes &&
		s.Sums.NodeGot == s.Sums.MonitorGot && s.Sums.NodeLogins == s.Sums.MonitorLogins
	s.Connect.HeldToEnd = s.Connect.MinHeld == int64(r.plan.Users) && s.Connect.Disconnects == 0
	s.Processes, s.Total = usage(secs)
	s.Targets, s.OK = targets(s, r.plan)
	if err := writeJSON(filepath.Join(r.o.Dir, "summary.json"), s); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.o.Dir, "summary.md"), []byte(markdown(s)), 0o644); err != nil {
		return err
	}
	fmt.Fprint(r.o.Out, "\n"+markdown(s))
	if len(secs) > 0 {
		out, err := plot.Render(r.series, r.o.Dir)
		if err != nil {
			return fmt.Errorf("plots: %w", err)
		}
		fmt.Fprintf(r.o.Out, "\nreport: %s, summary: %s\n", out.Report, filepath.Join(r.o.Dir, "summary.json"))
	}
	return nil
}

// phaseFromSeries fills p from the monitor's full seconds inside it. The
// first full second is skipped: the rate changes at a client when its
// admin request arrives, a few ms apart over the clients.
func phaseFromSeries(p *PhaseResult, secs []monitor.Second) {
	from := int64(math.Ceil(p.Start)) + 1
	to := int64(math.Floor(p.End)) - 1 // last full second is [to, to+1)
	var h *hdrhistogram.Histogram
	var sent float64
	within := 0
	for _, sec := range secs {
		if sec.T < from || sec.T > to {
			continue
		}
		p.Seconds++
		n := sec.Client["sent"]
		sent += n
		if math.Abs(n-float64(p.TargetQPS)) <= 0.01*float64(p.TargetQPS) {
			within++
		}
		p.Errors += uint64(sec.Client["errors"])
		p.Timeouts += uint64(sec.Client["timeouts"])
		p.Overloaded += uint64(sec.Client["overloaded"])
		p.Disconnects += uint64(sec.Client["disconnects"])
		p.ServerErrs += uint64(sec.Server["errors"])
		if sec.Latency != nil {
			if sh, err := sec.Latency.Decode(); err == nil && sh != nil {
				if h == nil {
					h = hdrhistogram.New(1, sh.HighestTrackableValue(), 3)
				}
				h.Merge(sh)
			}
		}
	}
	if p.Seconds > 0 {
		p.AchievedQPS = sent / float64(p.Seconds)
		p.Within1Pct = float64(within) / float64(p.Seconds)
	}
	if h != nil {
		p.P50ms = float64(h.ValueAtQuantile(50)) / 1000
		p.P99ms = float64(h.ValueAtQuantile(99)) / 1000
		p.P999ms = float64(h.ValueAtQuantile(99.9)) / 1000
		p.Maxms = float64(h.Max()) / 1000
	}
}

// usage is each process's CPU (its last total) and peak RSS, and the total
// (CPU summed, RSS the peak of the per-second sum), the runner included.
func usage(secs []monitor.Second) ([]ProcUsage, ProcUsage) {
	by := map[string]*ProcUsage{}
	var peakSum int64
	for _, sec := range secs {
		var sum int64
		for _, p := range sec.Procs {
			u := by[p.Name]
			if u == nil {
				u = &ProcUsage{Name: p.Name, Kind: p.Kind}
				by[p.Name] = u
			}
			u.CPUSeconds = max(u.CPUSeconds, p.TotalCPU)
			u.PeakRSS = max(u.PeakRSS, p.RSS)
			sum += p.RSS
		}
		peakSum = max(peakSum, sum)
	}
	out := make([]ProcUsage, 0, len(by)+1)
	for _, u := range by {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if me, err := procstat.Read(0); err == nil {
		out = append(out, ProcUsage{Name: "runner (monitor)", Kind: "runner", CPUSeconds: me.CPU.Seconds(), PeakRSS: me.RSS})
		peakSum += me.RSS
	}
	tot := ProcUsage{Name: "total", PeakRSS: peakSum}
	for _, u := range out {
		tot.CPUSeconds += u.CPUSeconds
	}
	return out, tot
}

// The seed's figures (the article: one server, 1,000,000 connections, 30,000 then 60,000 shakes/s).
const (
	seedConns = "1,000,000"
	seedQPS2  = "30,000/s"
	seedQPS3  = "60,000/s"
)

func targets(s *Summary, p Plan) ([]TargetRow, bool) {
	var rows []TargetRow
	add := func(metric, seed, target, measured string, ok bool) {
		rows = append(rows, TargetRow{metric, seed, target, measured, ok})
	}
	add("connections held", seedConns, fmt.Sprint(p.Users), fmt.Sprintf("%d (fewest online after the ramp), %d disconnects", s.Connect.MinHeld, s.Connect.Disconnects), s.Connect.HeldToEnd)
	add("time to connect", "-", "<= 60 s", fmt.Sprintf("%.1f s", s.Connect.Seconds), s.Connect.Seconds > 0 && s.Connect.Seconds <= 60)
	seeds := []string{seedQPS2, seedQPS3}
	for i, ph := range s.Phases {
		seed := "-"
		if i < len(seeds) {
			seed = seeds[i]
		}
		add(ph.Name+" rate", seed, fmt.Sprintf("%d/s, every second within 1%%", ph.TargetQPS),
			fmt.Sprintf("%.0f/s, %.0f%% of %d s within 1%%", ph.AchievedQPS, 100*ph.Within1Pct, ph.Seconds), ph.Seconds > 0 && ph.Within1Pct == 1)
		add(ph.Name+" latency", "-", "p99 <= 20 ms", fmt.Sprintf("p50 %.2f, p99 %.2f, p999 %.2f ms", ph.P50ms, ph.P99ms, ph.P999ms), ph.Seconds > 0 && ph.P99ms <= 20)
		bad := ph.Errors + ph.Timeouts + ph.Overloaded + ph.ServerErrs
		add(ph.Name+" errors", "-", "0", fmt.Sprintf("%d errors, %d timeouts, %d overloaded, %d server errors", ph.Errors, ph.Timeouts, ph.Overloaded, ph.ServerErrs), bad == 0)
	}
	add("audit over all nodes", "-", "clean", auditText(s.Audit), s.Audit.OK)
	add("monitor sums = nodes' counts", "-", "equal", fmt.Sprintf("shakes %d/%d, got %d/%d, logins %d/%d", s.Sums.MonitorShakes, s.Sums.NodeShakes,
		s.Sums.MonitorGot, s.Sums.NodeGot, s.Sums.MonitorLogins, s.Sums.NodeLogins), s.Sums.Equal)
	add("packets received = granted", "-", "equal", fmt.Sprintf("shake %d/%d (%d/%d cents), group opens %d/%d",
		s.Packets.ShakeReceived, s.Packets.ShakeGranted, s.Packets.ShakeReceivedCts, s.Packets.ShakeGrantedCents, s.Packets.GroupOpened, s.Packets.GroupOpens),
		s.Packets.ShakeReceived == s.Packets.ShakeGranted && s.Packets.ShakeReceivedCts == s.Packets.ShakeGrantedCents && s.Packets.GroupOpened == s.Packets.GroupOpens)
	add("memory", "-", "<= 20 GiB", fmt.Sprintf("%.2f GiB machine (kernel included), %.2f GiB processes' RSS", gib(s.MachineMemUsed), gib(uint64(s.Total.PeakRSS))), s.MachineMemUsed > 0 && s.MachineMemUsed <= 20<<30)
	ok := !s.Interrupted && s.Error == "" && len(s.Phases) == 2
	for _, r := range rows {
		ok = ok && r.OK
	}
	return rows, ok
}

func auditText(a AuditResult) string {
	if a.Report == nil {
		return "not run: " + strings.Join(a.Errors, "; ")
	}
	t := fmt.Sprintf("%d records, %d packets, %d violations", a.Report.Records, a.Report.Packets, len(a.Report.Violations))
	if len(a.Errors) > 0 {
		t += "; " + strings.Join(a.Errors, "; ")
	}
	return t
}

func markdown(s *Summary) string {
	var b strings.Builder
	state := "complete"
	if s.Interrupted {
		state = "INTERRUPTED (partial report)"
	} else if s.Error != "" {
		state = "FAILED: " + s.Error
	}
	fmt.Fprintf(&b, "hongbao run: %d users, %d nodes, %d client processes, %.0f s wall, %s\n\n", s.Users, s.Plan.Nodes, s.Plan.Clients, s.WallSeconds, state)
	fmt.Fprintln(&b, "| metric | seed | target | measured | ok |")
	fmt.Fprintln(&b, "|---|---|---|---|---|")
	for _, r := range s.Targets {
		ok := "yes"
		if !r.OK {
			ok = "NO"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Metric, r.Seed, r.Target, r.Measured, ok)
	}
	fmt.Fprintf(&b, "\npackets: shake issued %d (%d cents), granted %d (%d cents), received %d (%d cents); group sent %d (%d cents), opens %d (%d cents)\n",
		s.Packets.ShakeIssued, s.Packets.ShakeIssuedCents, s.Packets.ShakeGranted, s.Packets.ShakeGrantedCents, s.Packets.ShakeReceived, s.Packets.ShakeReceivedCts,
		s.Packets.GroupSent, s.Packets.GroupFundedCents, s.Packets.GroupOpens, s.Packets.GroupGrantedCents)
	var nodeCPU, cliCPU float64
	var nodeRSS, cliRSS int64
	for _, p := range s.Processes {
		switch p.Kind {
		case "server":
			nodeCPU, nodeRSS = nodeCPU+p.CPUSeconds, nodeRSS+p.PeakRSS
		case "load":
			cliCPU, cliRSS = cliCPU+p.CPUSeconds, cliRSS+p.PeakRSS
		}
	}
	fmt.Fprintf(&b, "kernel: %d packets dropped at full CPU backlogs, %d TCP segments retransmitted, %d connections dropped at full listen queues\n",
		s.Kernel.BacklogDrops, s.Kernel.Retransmits, s.Kernel.ListenOverflows)
	fmt.Fprintf(&b, "processes: nodes %.0f CPU s, %.2f GiB RSS (sum of peaks); clients %.0f CPU s, %.2f GiB; total %.0f CPU s, peak RSS %.2f GiB; machine memory used %.2f GiB\n",
		nodeCPU, gib(uint64(nodeRSS)), cliCPU, gib(uint64(cliRSS)), s.Total.CPUSeconds, gib(uint64(s.Total.PeakRSS)), gib(s.MachineMemUsed))
	return b.String()
}
