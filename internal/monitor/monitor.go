package monitor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
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
	// File, if set, receives every closed second as one JSON line.
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
	First    int64  `json:"first"`   // first second it reported
	LastT    int64  `json:"last"`    // last second it reported
	Samples  uint64 `json:"samples"` // samples received
	Late     uint64 `json:"late"`    // samples received after their second closed
	Gone     bool   `json:"gone"`    // said goodbye or retired
	lastSeen time.Time
}

// Monitor merges samples into seconds.
type Monitor struct {
	o Options

	mu       sync.Mutex
	procs    map[string]*ProcInfo
	pending  map[int64]map[string]sample.Sample // open seconds
	recent   map[int64]map[string]sample.Sample // closed seconds still amendable
	lateOf   map[int64]map[string]bool
	dirty    map[int64]bool     // amended seconds not yet merged again (see flushAmended)
	expected map[int64][]string // who was expected when a recent second closed
	closedTo int64              // every second <= closedTo is closed (0: none yet)
	series   []Second
	index    map[int64]int // t -> position in series
	received uint64
	file     *os.File
	w        *bufio.Writer
	csv      *csvOut

	stop    chan struct{}
	done    chan struct{}
	started atomic.Bool // Start was called: Close waits for its loop
}

// amendable is how many closed seconds keep their raw samples for late
// arrivals; a sample later than that is dropped (logged at debug). Each
// amendment re-merges and re-writes its second: with a hundred processes
// whose pushers fell a minute behind on a saturated box, a window of 120 s
// made the series grow by gigabytes, so it is kept short.
const amendable = 10

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
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Monitor{o: o, procs: map[string]*ProcInfo{}, pending: map[int64]map[string]sample.Sample{},
		recent: map[int64]map[string]sample.Sample{}, lateOf: map[int64]map[string]bool{},
		expected: map[int64][]string{}, index: map[int64]int{},
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

// Close stops the loop, closes every open second and flushes the file.
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

// Add takes samples received from processes.
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
			p.Gone = true
			continue
		}
		p.Gone, p.Pid = false, s.Pid
		p.Samples++
		m.received++
		p.LastT = max(p.LastT, s.T)
		p.First = min(p.First, s.T)
		if m.closedTo != 0 && s.T <= m.closedTo {
			p.Late++
			if m.amend(s) {
				if m.dirty == nil {
					m.dirty = map[int64]bool{}
				}
				m.dirty[s.T] = true
			}
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

// flushAmended merges and writes again the seconds that late samples
// amended. It runs at each Tick (ten times a second), not for each late
// sample: on a saturated box a hundred pushers fall behind together, and
// re-merging a second of a hundred processes for each of their late
// samples made the monitor quadratic, the box's biggest consumer of CPU.
func (m *Monitor) flushAmended() {
	if len(m.dirty) == 0 {
		return
	}
	ts := make([]int64, 0, len(m.dirty))
	for t := range m.dirty {
		ts = append(ts, t)
	}
	clear(m.dirty)
	slices.Sort(ts)
	for _, t := range ts {
		if _, ok := m.recent[t]; !ok {
			continue // past amending meanwhile
		}
		sec := merge(t, m.recent[t], m.expected[t], m.lateOf[t])
		if i, ok := m.index[t]; ok {
			m.series[i] = sec
		}
		m.write(sec)
		if m.csv != nil {
			m.csv.amend(sec)
		}
	}
}

// amend records a late sample in its closed second; it reports whether the
// second is still amendable (Add merges it again).
func (m *Monitor) amend(s sample.Sample) bool {
	raw, ok := m.recent[s.T]
	if !ok {
		m.o.Logger.Debug("monitor: sample too late to amend", "proc", s.Name, "t", s.T)
		return false
	}
	raw[s.Name] = s
	if m.lateOf[s.T] == nil {
		m.lateOf[s.T] = map[string]bool{}
	}
	m.lateOf[s.T][s.Name] = true
	return true
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
}

func (m *Monitor) maxPending() int64 {
	var mx int64
	for t := range m.pending {
		mx = max(mx, t)
	}
	return mx
}

// closeUpTo closes every second up to t that has samples or, after the
// first, every second in between (so gaps show as missing processes).
func (m *Monitor) closeUpTo(t int64) {
	m.flushAmended()
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
		var exp []string
		for _, p := range m.procs {
			// Expected: known since before s, and still reporting.
			if p.First <= s && (!p.Gone || p.LastT >= s) {
				exp = append(exp, p.Name)
			}
		}
		sort.Strings(exp)
		if len(raw) == 0 && len(exp) == 0 {
			m.closedTo = s
			continue
		}
		if raw == nil {
			raw = map[string]sample.Sample{}
		}
		sec := merge(s, raw, exp, nil)
		m.recent[s], m.expected[s] = raw, exp
		delete(m.recent, s-amendable)
		delete(m.expected, s-amendable)
		delete(m.lateOf, s-amendable)
		m.index[s] = len(m.series)
		m.series = append(m.series, sec)
		m.write(sec)
		if m.csv != nil {
			m.csv.add(sec)
		}
		m.closedTo = s
	}
	if m.csv != nil {
		// Seconds past amending (their raw samples are gone) are final.
		if err := m.csv.writeUpTo(m.closedTo - amendable); err != nil {
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

// Series returns the closed seconds after since (all with since = 0).
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
	dec := json.NewDecoder(bufio.NewReader(f))
	for dec.More() {
		var s Second
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		by[s.T] = s
	}
	out := make([]Second, 0, len(by))
	for _, s := range by {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].T < out[j].T })
	return out, nil
}
