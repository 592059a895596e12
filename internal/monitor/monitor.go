package monitor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"hongbao/internal/sample"
)

// Options configure a Monitor.
type Options struct {
	// Grace is how long after a second ends the monitor waits for late
	// samples before closing it (default 2s).
	Grace time.Duration
	// Retire: a process that sent nothing for this long is no longer
	// expected (default 10s). A process that says goodbye is retired at once.
	Retire time.Duration
	// Keep is how many seconds of series the monitor holds (default 21600,
	// six hours; the file has them all).
	Keep int
	// Amend is how long after a second closed a late sample still amends
	// it (default 10 minutes: twice the backlog a sample.Pusher keeps, so
	// that what a pusher delivers after an outage is taken). A later sample
	// is dropped and counted (ProcInfo.TooLate).
	Amend time.Duration
	// File, if set, receives every closed second as one JSON line when it
	// closes and, if late samples amended it, once more with its final
	// figures when it can no longer be amended (Amend later) or at Close.
	File string
	// CSV, if set, receives every second as one CSV row (csv.go).
	CSV    string
	Logger *slog.Logger
	// Now is the clock (tests replace it).
	Now func() time.Time
}

// ProcInfo is what the monitor knows of a process.
type ProcInfo struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Pid      int    `json:"pid"`
	First    int64  `json:"first"`    // first second it reported
	LastT    int64  `json:"last"`     // last second it reported
	Samples  uint64 `json:"samples"`  // samples received
	Late     uint64 `json:"late"`     // samples received after their second closed
	TooLate  uint64 `json:"too_late"` // of those, samples past amending: dropped
	Gone     bool   `json:"gone"`     // said goodbye or retired
	lastSeen time.Time
	bye      bool // said goodbye: a late copy of an old sample does not revive it
}

// Monitor merges samples into seconds.
type Monitor struct {
	o Options

	mu       sync.Mutex
	procs    map[string]*ProcInfo
	pending  map[int64]map[string]sample.Sample // open seconds
	recent   map[int64]*closed                  // closed seconds still amendable
	window   int64                              // Amend in seconds
	closedTo int64                              // every second <= closedTo is closed (0: none yet)
	series   []Second
	index    map[int64]int // t -> position in series
	received uint64
	file     *os.File
	w        *bufio.Writer
	csv      *csvOut
	// remergeAt (by the real clock, not Options.Now) is when flushAmended
	// may merge an amended second again.
	remergeAt time.Time

	stop    chan struct{}
	done    chan struct{}
	started atomic.Bool // Start was called: Close waits for its loop
}

// amendable is the default Options.Amend in seconds. It is long: on a
// saturated box a monitor took nothing for three minutes, and a window of
// 10 s lost those minutes for good. An amendable second costs little: its
// samples without their histograms (their counters are shared with the
// series), and an amendment is only filed, merged later (flushAmended,
// finalizeUpTo).
const amendable = 600

// remergeDuty bounds the work of keeping amended seconds up to date in
// memory: flushAmended merges one at a time and then waits remergeDuty-1
// times as long as that took, so it takes at most 1/remergeDuty of the
// monitor's time however far behind the pushers are. (A second of 52 load
// clients costs about 100 ms to merge in full on a 2-core box, mostly
// decoding histograms; merging the same second again for each late sample
// made a monitor behind its pushers the box's biggest consumer of CPU.)
const remergeDuty = 10

// closed is a closed second that late samples can still amend.
//
// The file gets a second when it closes and, if it was amended, once more
// when it leaves the amendable window (or at Close), with its final
// figures: at most two records. Writing it again for every amendment made
// the file grow by gigabytes when a hundred pushers fell behind together.
// In memory an amended second is merged again at a bounded rate
// (flushAmended), and in any case before it is written.
type closed struct {
	// raw are its samples. Their histograms are in sec once merged and are
	// dropped from raw (they are most of a sample's size), so that a
	// merge again decodes only the new ones.
	raw      map[string]sample.Sample
	expected []string        // who was expected when it closed
	late     map[string]bool // whose sample came after it closed: amended if any
	sec      *Second         // its latest merge; nil if it closed with no one expected
	unmerged []*sample.Latency
	dirty    bool // amended since sec was merged
}

// New creates a monitor; Start runs its closing loop.
func New(o Options) (*Monitor, error) {
	if o.Grace <= 0 {
		o.Grace = 2 * time.Second
	}
	if o.Retire <= 0 {
		o.Retire = 10 * time.Second
	}
	if o.Keep <= 0 {
		o.Keep = 21600
	}
	if o.Amend <= 0 {
		o.Amend = amendable * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Monitor{o: o, procs: map[string]*ProcInfo{}, pending: map[int64]map[string]sample.Sample{},
		recent: map[int64]*closed{}, window: max(int64(o.Amend/time.Second), 1), index: map[int64]int{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if o.File != "" {
		f, err := os.OpenFile(o.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("monitor: %w", err)
		}
		m.file, m.w = f, bufio.NewWriter(f)
	}
	if o.CSV != "" {
		c, err := openCSV(o.CSV)
		if err != nil {
			if m.file != nil {
				m.file.Close()
			}
			return nil, err
		}
		m.csv = c
	}
	return m, nil
}

// Start closes seconds as their grace passes, until Close.
func (m *Monitor) Start() {
	m.started.Store(true)
	go func() {
		defer close(m.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.Tick()
			}
		}
	}()
}

// Close stops the loop, closes every open second, writes the final figures
// of the amended ones and flushes the files.
func (m *Monitor) Close() error {
	select {
	case <-m.stop:
	default:
		close(m.stop)
		if m.started.Load() {
			<-m.done
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closeUpTo(m.maxPending())
	m.finalizeUpTo(math.MaxInt64)
	var err error
	if m.csv != nil {
		err = m.csv.close()
		m.csv = nil
	}
	if m.file == nil {
		return err
	}
	if e := m.w.Flush(); err == nil {
		err = e
	}
	if e := m.file.Close(); err == nil {
		err = e
	}
	m.file = nil
	return err
}

// Add takes samples received from processes. It does little work per
// sample (a late one is only filed, see amend), so that a monitor behind
// its pushers takes their backlog as fast as it comes.
func (m *Monitor) Add(ss ...sample.Sample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.Now()
	for _, s := range ss {
		if s.Name == "" {
			continue
		}
		p := m.procs[s.Name]
		if p == nil {
			if s.Bye {
				continue
			}
			p = &ProcInfo{Name: s.Name, Kind: s.Kind, First: s.T}
			m.procs[s.Name] = p
		}
		p.lastSeen = now
		if s.Bye {
			p.Gone, p.bye = true, true
			continue
		}
		// A process retired for its silence is back. One that said goodbye
		// is back only with a second it had not reported: an older one is
		// a post that timed out at its pusher, sent again before the goodbye
		// and taken after it.
		if !p.bye || s.T > p.LastT {
			p.Gone, p.bye = false, false
		}
		p.Pid = s.Pid
		p.Samples++
		m.received++
		p.LastT = max(p.LastT, s.T)
		p.First = min(p.First, s.T)
		if m.closedTo != 0 && s.T <= m.closedTo {
			p.Late++
			m.amend(p, s)
			continue
		}
		sec := m.pending[s.T]
		if sec == nil {
			sec = map[string]sample.Sample{}
			m.pending[s.T] = sec
		}
		sec[s.Name] = s
	}
}

// amend files a late sample with its closed second, to be merged by
// flushAmended or finalizeUpTo; a copy of a sample the second has is
// ignored.
func (m *Monitor) amend(p *ProcInfo, s sample.Sample) {
	c := m.recent[s.T]
	if c == nil {
		if s.T <= m.closedTo-m.window {
			p.TooLate++
			m.o.Logger.Debug("monitor: sample too late to amend", "proc", s.Name, "t", s.T)
			return
		}
		// The second closed with no one expected: every process had been
		// silent for Retire (a monitor that took nothing for a while). It
		// gets a record now.
		c = &closed{raw: map[string]sample.Sample{}}
		m.recent[s.T] = c
	}
	if _, ok := c.raw[s.Name]; ok {
		return // a copy: its pusher sent it again after a post timed out
	}
	if s.Latency != nil && s.Latency.Hist != "" {
		c.unmerged = append(c.unmerged, s.Latency)
		s.Latency = nil
	}
	c.raw[s.Name] = s
	if c.late == nil {
		c.late = map[string]bool{}
	}
	c.late[s.Name] = true
	c.dirty = true
}

// flushAmended merges again the oldest amended second, if remergeDuty
// allows: Tick calls it ten times a second and Series once per call, so
// an amendment shows in memory soon when there are few, and the work stays
// bounded when a hundred pushers deliver minutes of backlog together.
func (m *Monitor) flushAmended() {
	start := time.Now()
	if start.Before(m.remergeAt) {
		return
	}
	var (
		t int64
		c *closed
	)
	for s, x := range m.recent {
		if x.dirty && (c == nil || s < t) {
			t, c = s, x
		}
	}
	if c == nil {
		return
	}
	m.remerge(t, c)
	m.remergeAt = time.Now().Add(time.Since(start) * (remergeDuty - 1))
}

// remerge merges amended second t again, in memory (series and CSV): its
// counters from its samples, its histogram from the last merge's and the
// late samples'. Who is expected is who was when it closed and, now, every
// process that reported since (one that was retired during a silence and
// came back with its backlog is expected again).
func (m *Monitor) remerge(t int64, c *closed) {
	var base *sample.Latency
	if c.sec != nil {
		base = c.sec.Latency
	}
	sec := merge(t, c.raw, union(c.expected, m.expectedAt(t)), c.late, base, c.unmerged)
	recorded := c.sec != nil
	c.sec, c.unmerged, c.dirty = &sec, nil, false
	if i, ok := m.index[t]; ok {
		m.series[i] = sec
	} else if !recorded { // a new record (one trimmed by Keep stays out)
		i := sort.Search(len(m.series), func(i int) bool { return m.series[i].T > t })
		m.series = slices.Insert(m.series, i, sec)
		for j := i; j < len(m.series); j++ {
			m.index[m.series[j].T] = j
		}
	}
	if m.csv != nil {
		m.csv.amend(sec)
	}
}

// finalizeUpTo ends the amending of the closed seconds up to t: an amended
// one is merged (if flushAmended has not yet) and written to the file with
// its final figures.
func (m *Monitor) finalizeUpTo(t int64) {
	var ts []int64
	for s := range m.recent {
		if s <= t {
			ts = append(ts, s)
		}
	}
	slices.Sort(ts)
	for _, s := range ts {
		c := m.recent[s]
		delete(m.recent, s)
		if len(c.late) == 0 {
			continue // written when it closed, and never amended
		}
		// Merged again even if not dirty: it costs the counters only, and
		// brings Missing up to date with the processes that came back.
		m.remerge(s, c)
		m.write(*c.sec)
	}
}

// union is a ∪ b, sorted.
func union(a, b []string) []string {
	u := slices.Concat(a, b)
	slices.Sort(u)
	return slices.Compact(u)
}

// Tick closes the seconds whose grace has passed; Start calls it ten times
// a second, tests call it with a fake clock.
func (m *Monitor) Tick() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.Now()
	for _, p := range m.procs {
		if !p.Gone && now.Sub(p.lastSeen) > m.o.Retire {
			p.Gone = true
		}
	}
	// Second t has ended at t+1; it closes at t+1+Grace.
	m.closeUpTo(now.Add(-m.o.Grace).Unix() - 1)
	m.flushAmended()
}

func (m *Monitor) maxPending() int64 {
	var mx int64
	for t := range m.pending {
		mx = max(mx, t)
	}
	return mx
}

// expectedAt lists, sorted, the processes expected in second s: known
// since before s, and still reporting or reported past s.
func (m *Monitor) expectedAt(s int64) []string {
	var exp []string
	for _, p := range m.procs {
		if p.First <= s && (!p.Gone || p.LastT >= s) {
			exp = append(exp, p.Name)
		}
	}
	sort.Strings(exp)
	return exp
}

// closeUpTo closes every second up to t that has samples or, after the
// first, every second in between that has expected processes (so gaps show
// as missing processes), and ends the amending of those that leave the
// amendable window.
func (m *Monitor) closeUpTo(t int64) {
	if m.closedTo == 0 {
		// Start at the earliest second that has samples.
		first := int64(0)
		for s := range m.pending {
			if first == 0 || s < first {
				first = s
			}
		}
		if first == 0 || first > t {
			return
		}
		m.closedTo = first - 1
	}
	for s := m.closedTo + 1; s <= t; s++ {
		raw := m.pending[s]
		delete(m.pending, s)
		exp := m.expectedAt(s)
		if len(raw) == 0 && len(exp) == 0 {
			m.closedTo = s
			continue
		}
		if raw == nil {
			raw = map[string]sample.Sample{}
		}
		sec := merge(s, raw, exp, nil, nil, nil)
		for n, smp := range raw {
			if smp.Latency != nil { // merged into sec: not needed again
				smp.Latency = nil
				raw[n] = smp
			}
		}
		m.recent[s] = &closed{raw: raw, expected: exp, sec: &sec}
		m.index[s] = len(m.series)
		m.series = append(m.series, sec)
		m.write(sec)
		if m.csv != nil {
			m.csv.add(sec)
		}
		m.closedTo = s
	}
	m.finalizeUpTo(m.closedTo - m.window)
	if m.csv != nil {
		// Seconds past amending are final.
		if err := m.csv.writeUpTo(m.closedTo - m.window); err != nil {
			m.o.Logger.Error("monitor: writing the CSV", "err", err)
		}
	}
	if over := len(m.series) - m.o.Keep; over > 0 {
		for _, s := range m.series[:over] {
			delete(m.index, s.T)
		}
		m.series = append(m.series[:0:0], m.series[over:]...)
		for i, s := range m.series {
			m.index[s.T] = i
		}
	}
	if m.w != nil {
		_ = m.w.Flush()
	}
}

func (m *Monitor) write(s Second) {
	if m.w == nil {
		return
	}
	b, err := json.Marshal(s)
	if err != nil {
		return
	}
	_, _ = m.w.Write(append(b, '\n'))
}

// Series returns the closed seconds after since (all with since = 0). An
// amended second shows its late samples once flushAmended has merged it
// again: at once when few are waiting, at its bounded rate when many are.
func (m *Monitor) Series(since int64) []Second {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flushAmended()
	i := sort.Search(len(m.series), func(i int) bool { return m.series[i].T > since })
	return append([]Second{}, m.series[i:]...)
}

// Status is the monitor's view of its processes.
type Status struct {
	Now      int64      `json:"now"`
	ClosedTo int64      `json:"closed_to"`
	Received uint64     `json:"received"`
	Procs    []ProcInfo `json:"procs"`
	Latest   *Second    `json:"latest,omitempty"`
}

// Status reports the processes and the latest closed second.
func (m *Monitor) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Now: m.o.Now().Unix(), ClosedTo: m.closedTo, Received: m.received, Procs: []ProcInfo{}}
	for _, p := range m.procs {
		st.Procs = append(st.Procs, *p)
	}
	sort.Slice(st.Procs, func(i, j int) bool { return st.Procs[i].Name < st.Procs[j].Name })
	if n := len(m.series); n > 0 {
		l := m.series[n-1]
		st.Latest = &l
	}
	return st
}

// ReadFile reads a recorded series (NDJSON of Second), keeping the last
// record of each second, in time order.
func ReadFile(path string) ([]Second, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	by := map[int64]Second{}
	if err := eachRecord(f, func(s Second) { by[s.T] = s }); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]Second, 0, len(by))
	for _, s := range by {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].T < out[j].T })
	return out, nil
}

// eachRecord calls fn for every record of a series file, in file order
// (an amended second comes again after its first record).
func eachRecord(r io.Reader, fn func(Second)) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	for dec.More() {
		var s Second
		if err := dec.Decode(&s); err != nil {
			return err
		}
		fn(s)
	}
	return nil
}
