package plot

import (
	"fmt"
	"math"
	"strconv"

	"github.com/HdrHistogram/hdrhistogram-go"

	"hongbao/internal/monitor"
)

// A run's phases as the seed named them: phase 1 connects every user and
// holds them with no shakes; each later phase is a rate the clients were
// set to (phase 2 at 30,000/s and phase 3 at 60,000/s in the seed); after
// the last, the rate goes back to 0 and the run settles.
const (
	phaseConnect = "phase 1: connect + hold"
	phaseSettle  = "settle"
)

// phaseWindow is how many seconds from a change of the clients' rate
// decide whether it opens a phase: the new rate must be that of most of
// them. A phase lasts more than a second or two; a client's stray sample
// must not open one.
const phaseWindow = 3

// Phase is one phase of a run found in its series.
type Phase struct {
	Name    string `json:"name"`
	Rate    int    `json:"rate"` // shakes/s the clients were set to (0: none)
	First   int    `json:"first"`
	Last    int    `json:"last"` // indices of its first and last second
	Seconds int    `json:"seconds"`
	// Seed is the seed's figure for the phase ("": none).
	Seed string `json:"seed,omitempty"`
}

// seedFigure is what the seed's run showed in its phase n (1-based).
func seedFigure(n int) string {
	switch n {
	case 1:
		return "1,000,000 connections held"
	case 2:
		return "30,000/s, stable"
	case 3:
		return "60,000/s reached, with jitter"
	}
	return ""
}

// clientRate is the rate the load clients were set to in sec: the largest
// "qps" gauge of a load process (every client holds the global rate; the
// largest is the newest while they switch), else the summed gauge over
// the load processes; -1 when no client said.
func clientRate(sec monitor.Second) int {
	best, n := -1.0, 0
	for _, p := range sec.Procs {
		if p.Kind != "load" {
			continue
		}
		n++
		if v, ok := p.Gauges["qps"]; ok && v > best {
			best = v
		}
	}
	if best >= 0 {
		return int(math.Round(best))
	}
	if v, ok := sec.Client["qps"]; ok && n > 0 {
		return int(math.Round(v / float64(n)))
	}
	return -1
}

// RunPhases labels each second of secs with its phase and lists the
// phases in order. Phase 1 lasts until the clients' rate first becomes
// positive; each new rate that then holds (see phaseWindow) opens the
// next phase ("phase 2: 30,000/s"); once the rate is back to 0 after a
// load phase the run settles, and no later second starts a phase again (a
// late sample of the last rate is part of the settling). A second no
// client spoke for keeps the phase it is in.
func RunPhases(secs []monitor.Second) (labels []string, phases []Phase) {
	labels = make([]string, len(secs))
	cur := -1 // index in phases
	open := func(name string, rate, i int) {
		phases = append(phases, Phase{Name: name, Rate: rate, First: i, Last: i})
		cur = len(phases) - 1
	}
	rates := make([]int, len(secs))
	for i, s := range secs {
		rates[i] = clientRate(s)
	}
	settled := false
	for i := range secs {
		r := rates[i]
		switch {
		case cur < 0:
			open(phaseConnect, 0, i)
		case settled, r < 0, r == phases[cur].Rate:
		case r == 0:
			open(phaseSettle, 0, i)
			settled = true
		default:
			// A new rate opens a phase if it is the rate of most of the
			// seconds from this one (a stray second opens none).
			n, of := 0, 0
			for j := i; j < min(i+phaseWindow, len(secs)); j++ {
				of++
				if rates[j] == r {
					n++
				}
			}
			if 2*n > of {
				open(fmt.Sprintf("phase %d: %s/s", len(phases)+1, thousands(r)), r, i)
			}
		}
		phases[cur].Last = i
		labels[i] = phases[cur].Name
	}
	for k := range phases {
		p := &phases[k]
		p.Seconds = p.Last - p.First + 1
		if p.Name != phaseSettle {
			p.Seed = seedFigure(k + 1)
		}
	}
	return labels, phases
}

// thousands writes n with commas: 30000 -> "30,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// PhaseSecond is one second of a phase in the report's table.
type PhaseSecond struct {
	T        int64 // seconds since the series began
	N        int   // second of its phase, from 1
	Sent     float64
	Answered float64 // by the server (shakes answered)
	Within   bool    // sent within 1% of the phase's rate
	P50, P99 float64 // ms; negative: no latency that second
	Timeouts float64
	Online   float64 // users online at the server
}

// PhaseTable is a phase with its seconds and its totals.
type PhaseTable struct {
	Phase
	Rows []PhaseSecond
	// Over the phase: mean rates, the share of seconds within 1% of the
	// rate, p50 and p99 of every answer in it (merged histograms, ms;
	// negative: none) and the timeouts.
	MeanSent, MeanAnswered float64
	Within                 float64
	P50, P99               float64
	Timeouts               float64
}

// phaseTables tabulates each phase of secs, second by second.
func phaseTables(secs []monitor.Second, phases []Phase) []PhaseTable {
	var out []PhaseTable
	for _, p := range phases {
		t := PhaseTable{Phase: p, P50: -1, P99: -1}
		var h *hdrhistogram.Histogram
		within := 0
		for i := p.First; i <= p.Last; i++ {
			s := secs[i]
			r := PhaseSecond{T: s.T - secs[0].T, N: i - p.First + 1, Sent: s.Client["sent"], Answered: s.Server["shakes"],
				Timeouts: s.Client["timeouts"], Online: s.Server["online"], P50: -1, P99: -1}
			r.Within = p.Rate > 0 && math.Abs(r.Sent-float64(p.Rate)) <= 0.01*float64(p.Rate)
			if r.Within {
				within++
			}
			if l := s.Latency; l != nil && l.Count > 0 {
				r.P50, r.P99 = l.P50/1000, l.P99/1000
				if sh, err := l.Decode(); err == nil && sh != nil {
					if h == nil {
						h = hdrhistogram.New(1, sh.HighestTrackableValue(), 3)
					}
					h.Merge(sh)
				}
			}
			t.MeanSent += r.Sent
			t.MeanAnswered += r.Answered
			t.Timeouts += r.Timeouts
			t.Rows = append(t.Rows, r)
		}
		if n := float64(len(t.Rows)); n > 0 {
			t.MeanSent /= n
			t.MeanAnswered /= n
			t.Within = float64(within) / n
		}
		if h != nil && h.TotalCount() > 0 {
			t.P50, t.P99 = float64(h.ValueAtQuantile(50))/1000, float64(h.ValueAtQuantile(99))/1000
		}
		out = append(out, t)
	}
	return out
}
