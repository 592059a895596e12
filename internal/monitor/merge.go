// Package monitor is `hongbao monitor`: it receives the per-second samples
// that servers and load clients push (package sample), merges them by
// second, keeps the series in memory, appends it to an NDJSON file, and
// serves a live dashboard and the series as JSON.
//
// Merging: second t is closed Grace after it ends (t+1+Grace by the
// monitor's clock), so that processes whose samples travel late still land
// in their own second. Every process known at that time that sent nothing
// for t is listed in the second's Missing: its figures are absent, not
// zero. A sample that arrives after its second was closed, up to
// Options.Amend later, amends it: the process is listed in Late, and the
// second is merged again (at a bounded rate while many arrive) and appended
// to the file once more when it can no longer be amended, or at Close;
// readers keep the last record of each second. A second that closed with no
// process expected (all silent for Retire: the monitor took nothing for a
// while) has no record until a late sample brings one. When an amended
// second is merged again, a process that has reported since it closed (one
// retired during a silence that came back with its backlog) is expected in
// it too, and listed in Missing if its sample for the second never comes.
package monitor

import (
	"sort"

	"github.com/HdrHistogram/hdrhistogram-go"

	"hongbao/internal/sample"
)

// Second is the merge of every process's sample for one Unix second.
type Second struct {
	T int64 `json:"t"`
	// Server and Client sum the counters (events in the second) and gauges
	// (levels at its end) of the server processes and of the load clients.
	Server map[string]float64 `json:"server"`
	Client map[string]float64 `json:"client"`
	// Latency merges the load clients' histograms exactly (µs).
	Latency *sample.Latency `json:"latency,omitempty"`
	// Phase is the load clients' phase (the furthest along when they differ).
	Phase string        `json:"phase,omitempty"`
	Procs []ProcSecond  `json:"procs"`
	Net   sample.NetDev `json:"net"` // the machines' traffic (each host counted once)
	// Missing lists the processes expected in this second that sent nothing.
	Missing []string `json:"missing,omitempty"`
	// Late lists the processes whose sample came after the second closed.
	Late []string `json:"late,omitempty"`
}

// ProcSecond is one process's part of a second.
type ProcSecond struct {
	Name     string             `json:"name"`
	Kind     string             `json:"kind"`
	Pid      int                `json:"pid"`
	Counters map[string]uint64  `json:"counters,omitempty"`
	Gauges   map[string]float64 `json:"gauges,omitempty"`
	// Latency is a load client's own count and percentiles (without its
	// histogram, which is in the second's): which client saw the slow
	// answers of a second.
	Latency *sample.Latency `json:"latency,omitempty"`
	sample.ProcStats
}

// phaseOrder ranks the phases: sample.Phases' order.
var phaseOrder = func() map[string]int {
	m := map[string]int{}
	for i, p := range sample.Phases {
		m[p] = i
	}
	return m
}()

// merge builds second t from its samples; expected are the processes that
// should have sent one, late those whose sample came after the close. The
// latency histogram merges base (that of an earlier merge of t), the
// samples' own and more (late samples' whose own were dropped from
// samples): decoding a histogram is most of a merge's cost, so that of a
// sample is decoded once, when it is first merged.
func merge(t int64, samples map[string]sample.Sample, expected []string, late map[string]bool, base *sample.Latency, more []*sample.Latency) Second {
	s := Second{T: t, Server: map[string]float64{}, Client: map[string]float64{}, Procs: []ProcSecond{}}
	names := make([]string, 0, len(samples))
	for n := range samples {
		names = append(names, n)
	}
	sort.Strings(names)
	var hists []*sample.Latency
	if base != nil && base.Hist != "" {
		hists = append(hists, base)
	}
	hosts := map[string]sample.NetDev{}
	for _, n := range names {
		smp := samples[n]
		dst := s.Client
		if smp.Kind == sample.KindServer {
			dst = s.Server
		}
		for k, v := range smp.Counters {
			dst[k] += float64(v)
		}
		for k, v := range smp.Gauges {
			dst[k] += v
		}
		if smp.Latency != nil && smp.Latency.Hist != "" {
			hists = append(hists, smp.Latency)
		}
		if smp.Phase != "" && (s.Phase == "" || phaseOrder[smp.Phase] > phaseOrder[s.Phase]) {
			s.Phase = smp.Phase
		}
		// Processes on one host read the same /proc/net/dev: count it once
		// (the largest reading, in case their seconds are cut differently).
		h := hosts[smp.Host]
		h.RxBytes, h.TxBytes = max(h.RxBytes, smp.Net.RxBytes), max(h.TxBytes, smp.Net.TxBytes)
		h.RxPackets, h.TxPackets = max(h.RxPackets, smp.Net.RxPackets), max(h.TxPackets, smp.Net.TxPackets)
		hosts[smp.Host] = h
		ps := ProcSecond{Name: n, Kind: smp.Kind, Pid: smp.Pid,
			Counters: smp.Counters, Gauges: smp.Gauges, ProcStats: smp.Process}
		if smp.Latency != nil {
			l := *smp.Latency
			l.Hist = ""
			ps.Latency = &l
		}
		s.Procs = append(s.Procs, ps)
		if late[n] {
			s.Late = append(s.Late, n)
		}
	}
	for _, h := range hosts {
		s.Net.RxBytes += h.RxBytes
		s.Net.TxBytes += h.TxBytes
		s.Net.RxPackets += h.RxPackets
		s.Net.TxPackets += h.TxPackets
	}
	for _, l := range more {
		if l != nil && l.Hist != "" {
			hists = append(hists, l)
		}
	}
	s.Latency = mergeLatency(hists)
	for _, n := range expected {
		if _, ok := samples[n]; !ok {
			s.Missing = append(s.Missing, n)
		}
	}
	sort.Strings(s.Missing)
	return s
}

// mergeLatency merges the histograms of ls; the result carries the merged
// histogram, so that reports merge seconds into phases exactly. A single
// one is its own merge (no decoding: the percentiles are its own).
func mergeLatency(ls []*sample.Latency) *sample.Latency {
	if len(ls) == 1 {
		return ls[0]
	}
	var hist *hdrhistogram.Histogram
	for _, l := range ls {
		h, err := l.Decode()
		if err != nil {
			continue
		}
		if hist == nil {
			hist = h
		} else {
			hist.Merge(h)
		}
	}
	if hist == nil {
		return nil
	}
	return sample.LatencyOf(hist)
}
