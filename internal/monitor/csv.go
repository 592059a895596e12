package monitor

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"fmt"
	"os"
	"slices"
	"strconv"

	"hongbao/internal/load"
	"hongbao/internal/server"
)

// The CSV form of the series (Options.CSV): one row per second, the same
// columns in the same order for every run (CSVHeader), so that
// spreadsheets, pandas or gnuplot can read it without knowing the NDJSON.
// A figure a second does not have (no process of that kind reported it)
// is an empty cell, not 0. Rows are written once their second can no
// longer be amended by a late sample (Options.Amend after it closed) and,
// for the rest, when the monitor closes: every second has exactly one row,
// with its final figures, in time order (a second that closed with no
// process expected and got a record from late samples too).

// CSVHeader is the header row: t, the load phase, the number of
// processes, missing and late ones, the merged latency, the machines'
// network, then server_<key> for the counters and gauges of server.Metrics
// and client_<key> for those of load.Metrics.
func CSVHeader() []string {
	h := []string{"t", "phase", "procs", "missing", "late",
		"latency_count", "latency_p50_us", "latency_p99_us", "latency_p999_us", "latency_max_us",
		"net_rx_bytes", "net_tx_bytes", "net_rx_packets", "net_tx_packets"}
	for _, k := range serverKeys() {
		h = append(h, "server_"+k)
	}
	for _, k := range clientKeys() {
		h = append(h, "client_"+k)
	}
	return h
}

func serverKeys() []string { return append(server.Metrics.Counters(), server.Metrics.Gauges()...) }
func clientKeys() []string { return append(load.Metrics.Counters(), load.Metrics.Gauges()...) }

// CSVRecord is second s as a row under CSVHeader.
func CSVRecord(s Second) []string {
	r := []string{strconv.FormatInt(s.T, 10), s.Phase, strconv.Itoa(len(s.Procs)),
		strconv.Itoa(len(s.Missing)), strconv.Itoa(len(s.Late))}
	if l := s.Latency; l != nil {
		r = append(r, strconv.FormatUint(l.Count, 10), num(l.P50), num(l.P99), num(l.P999), num(l.Max))
	} else {
		r = append(r, "", "", "", "", "")
	}
	r = append(r, strconv.FormatUint(s.Net.RxBytes, 10), strconv.FormatUint(s.Net.TxBytes, 10),
		strconv.FormatUint(s.Net.RxPackets, 10), strconv.FormatUint(s.Net.TxPackets, 10))
	cell := func(m map[string]float64, k string) string {
		if v, ok := m[k]; ok {
			return num(v)
		}
		return ""
	}
	for _, k := range serverKeys() {
		r = append(r, cell(s.Server, k))
	}
	for _, k := range clientKeys() {
		r = append(r, cell(s.Client, k))
	}
	return r
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// csvOut writes the CSV file.
type csvOut struct {
	f       *os.File
	w       *csv.Writer
	queue   []Second // closed seconds not yet written, in time order
	written int64    // the last second written
}

// openCSV opens path for appending; a new or empty file gets the header,
// an existing one must have the same header.
func openCSV(path string) (*csvOut, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	head := CSVHeader()
	first, err := csv.NewReader(bufio.NewReader(f)).Read()
	switch {
	case err == nil && !slices.Equal(first, head):
		f.Close()
		return nil, fmt.Errorf("monitor: %s has other columns than this monitor writes; choose another --csv file", path)
	case err != nil && first != nil:
		f.Close()
		return nil, fmt.Errorf("monitor: %s: %w", path, err)
	}
	c := &csvOut{f: f, w: csv.NewWriter(f)}
	if err != nil { // empty
		if err := c.w.Write(head); err != nil {
			f.Close()
			return nil, fmt.Errorf("monitor: %w", err)
		}
	}
	return c, nil
}

// add queues a closed second.
func (c *csvOut) add(s Second) { c.queue = append(c.queue, s) }

// amend replaces a queued second, or queues in its place one that closed
// with no record (one already written stays as it was: it was past
// amending).
func (c *csvOut) amend(s Second) {
	i, found := slices.BinarySearchFunc(c.queue, s.T, func(q Second, t int64) int { return cmp.Compare(q.T, t) })
	if found {
		c.queue[i] = s
		return
	}
	if s.T > c.written {
		c.queue = slices.Insert(c.queue, i, s)
	}
}

// writeUpTo writes the queued seconds up to t and flushes.
func (c *csvOut) writeUpTo(t int64) error {
	n := 0
	for n < len(c.queue) && c.queue[n].T <= t {
		if err := c.w.Write(CSVRecord(c.queue[n])); err != nil {
			return err
		}
		c.written = c.queue[n].T
		n++
	}
	c.queue = append(c.queue[:0], c.queue[n:]...)
	c.w.Flush()
	return c.w.Error()
}

func (c *csvOut) close() error {
	err := c.writeUpTo(1<<62 - 1)
	if e := c.f.Close(); err == nil {
		err = e
	}
	return err
}
