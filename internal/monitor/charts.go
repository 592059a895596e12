package monitor

import (
	"sort"
)

// Chart is one chart of the live dashboard and of `hongbao plot`'s report:
// both draw Charts, the dashboard from the seconds it polls (web/charts.js
// reads a Series as Series.Value does), the report from the columns
// Lines/Value give.
type Chart struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Unit  string `json:"unit"` // of the y axis
	// Phases shades the seconds of each load phase (ramp, load, drain).
	Phases bool `json:"phases,omitempty"`
	// PerProc charts draw their one series for each process of the
	// seconds, labelled "name Label".
	PerProc bool     `json:"per_proc,omitempty"`
	Series  []Series `json:"series"`
}

// Series is one line: the figure Key of part From of a Second, times Scale.
type Series struct {
	Label string `json:"label"`
	// From is the part of a Second: "server" or "client" (a key of the
	// merged counters and gauges), "latency" (a field of sample.Latency),
	// "net" (of sample.NetDev) or "proc" (of a ProcSecond's
	// sample.ProcStats, the process named Proc); Key is the field's JSON
	// name.
	From  string  `json:"from"`
	Key   string  `json:"key"`
	Scale float64 `json:"scale,omitempty"` // 0 means 1
	Unit  string  `json:"unit"`
	Proc  string  `json:"proc,omitempty"` // set by Lines
}

// Charts are the charts, in the order shown.
var Charts = []Chart{
	{ID: "rate", Title: "Shakes per second: sent by clients vs. answered by the server (phases shaded)", Unit: "/s", Phases: true, Series: []Series{
		cli("client shakes sent", "sent", "/s"), srv("server shakes answered", "shakes", "/s"), srv("server got", "got", "/s"),
		srv("server none", "none", "/s"), srv("server all taken", "all_taken", "/s"), srv("server overloaded", "overloaded", "/s"),
		cli("client timeouts", "timeouts", "/s"),
	}},
	{ID: "packets", Title: "Packets per second: issued vs. granted vs. received (shake and group)", Unit: "/s", Series: []Series{
		srv("packets issued (server)", "issued", "/s"), srv("packets granted (server)", "got", "/s"),
		cli("packets received (clients)", "got", "/s"), srv("packets waiting (server)", "waiting", ""),
		srv("group packets sent (server)", "group_sent", "/s"), srv("group shares granted (server)", "group_shares", "/s"),
		srv("group refunds (server)", "group_refunds", "/s"), srv("group pushes sent (server)", "group_pushes", "/s"),
		cli("group pushes received (clients)", "pushes", "/s"), cli("group opens (clients)", "opens", "/s"),
	}},
	{ID: "amounts", Title: "Amounts per second (cents, shake and group)", Unit: "¢/s", Series: []Series{
		srv("cents issued (server)", "issued_cents", "¢/s"), srv("cents granted (server)", "granted_cents", "¢/s"),
		cli("cents received (clients)", "amount_cents", "¢/s"), srv("group cents sent (server)", "group_sent_cents", "¢/s"),
		srv("group cents granted (server)", "group_shares_cents", "¢/s"), srv("group cents refunded (server)", "group_refunded_cents", "¢/s"),
		cli("group cents opened (clients)", "opened_cents", "¢/s"),
	}},
	{ID: "connections", Title: "Connections", Unit: "", Series: []Series{
		srv("server connections", "connections", ""), srv("server users online", "online", ""), cli("client connections", "connections", ""),
	}},
	{ID: "requests", Title: "Requests and disconnects per second (server)", Unit: "/s", Series: []Series{
		srv("requests", "requests", "/s"), srv("logins", "logins", "/s"), srv("errors", "errors", "/s"), srv("disconnects", "closed", "/s"),
		srv("client hang-ups", "disconnects_hangup", "/s"), srv("replaced", "disconnects_replaced", "/s"),
		srv("slow readers", "disconnects_slow_reader", "/s"),
		srv("shed, server full", "disconnects_over_limit", "/s"),
	}},
	{ID: "latency", Title: "Client latency (ms, merged over clients)", Unit: "ms", Series: []Series{
		{Label: "latency p50", From: "latency", Key: "p50_us", Scale: 1e-3, Unit: "ms"},
		{Label: "latency p99", From: "latency", Key: "p99_us", Scale: 1e-3, Unit: "ms"},
		{Label: "latency p99.9", From: "latency", Key: "p999_us", Scale: 1e-3, Unit: "ms"},
	}},
	{ID: "cpu", Title: "CPU per process (cores)", Unit: "cores", PerProc: true, Series: []Series{
		{Label: "CPU", From: "proc", Key: "cpu_s", Unit: "cores"},
	}},
	{ID: "memory", Title: "Resident memory per process (MB)", Unit: "MB", PerProc: true, Series: []Series{
		{Label: "RSS", From: "proc", Key: "rss_bytes", Scale: 1.0 / (1 << 20), Unit: "MB"},
	}},
	{ID: "network", Title: "Machine network traffic (/proc/net/dev)", Unit: "/s", Series: []Series{
		{Label: "rx MB/s", From: "net", Key: "rx_bytes", Scale: 1e-6, Unit: "MB/s"},
		{Label: "tx MB/s", From: "net", Key: "tx_bytes", Scale: 1e-6, Unit: "MB/s"},
		{Label: "rx kpackets/s", From: "net", Key: "rx_packets", Scale: 1e-3, Unit: "k/s"},
		{Label: "tx kpackets/s", From: "net", Key: "tx_packets", Scale: 1e-3, Unit: "k/s"},
	}},
}

func srv(label, key, unit string) Series {
	return Series{Label: label, From: "server", Key: key, Unit: unit}
}
func cli(label, key, unit string) Series {
	return Series{Label: label, From: "client", Key: key, Unit: unit}
}

// Lines are the lines c draws over secs: its series, or for a per-process
// chart its series for each process name in secs, sorted by name.
func (c Chart) Lines(secs []Second) []Series {
	if !c.PerProc {
		return c.Series
	}
	seen := map[string]bool{}
	for _, s := range secs {
		for _, p := range s.Procs {
			seen[p.Name] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Series
	for _, n := range names {
		for _, s := range c.Series {
			s.Label, s.Proc = n+" "+s.Label, n
			out = append(out, s)
		}
	}
	return out
}

// Value is the series' figure in sec; false when sec has none (a key no
// process reported, no latency, a process missing).
func (s Series) Value(sec Second) (float64, bool) {
	v, ok := s.raw(sec)
	if s.Scale != 0 {
		v *= s.Scale
	}
	return v, ok
}

func (s Series) raw(sec Second) (float64, bool) {
	switch s.From {
	case "server":
		v, ok := sec.Server[s.Key]
		return v, ok
	case "client":
		v, ok := sec.Client[s.Key]
		return v, ok
	case "latency":
		if l := sec.Latency; l != nil {
			switch s.Key {
			case "count":
				return float64(l.Count), true
			case "p50_us":
				return l.P50, true
			case "p99_us":
				return l.P99, true
			case "p999_us":
				return l.P999, true
			case "max_us":
				return l.Max, true
			}
		}
	case "net":
		switch s.Key {
		case "rx_bytes":
			return float64(sec.Net.RxBytes), true
		case "tx_bytes":
			return float64(sec.Net.TxBytes), true
		case "rx_packets":
			return float64(sec.Net.RxPackets), true
		case "tx_packets":
			return float64(sec.Net.TxPackets), true
		}
	case "proc":
		for i := range sec.Procs {
			if p := &sec.Procs[i]; p.Name == s.Proc {
				switch s.Key {
				case "cpu_s":
					return p.CPU, true
				case "rss_bytes":
					return float64(p.RSS), true
				case "goroutines":
					return float64(p.Goroutines), true
				case "gc_pause_s":
					return p.GCPause, true
				case "heap_bytes":
					return float64(p.HeapBytes), true
				}
			}
		}
	}
	return 0, false
}
