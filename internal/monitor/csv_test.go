package monitor

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"hongbao/internal/sample"
)

// readCSV reads a CSV file with encoding/csv: its header and rows.
func readCSV(t *testing.T, path string) ([]string, []map[string]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll() // also checks every row has the header's width
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(recs) == 0 {
		t.Fatalf("%s is empty", path)
	}
	var rows []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		rows = append(rows, m)
	}
	return recs[0], rows
}

// TestCSVOneRowPerSecondReadBack: the monitor's CSV reads back with
// encoding/csv under the stable header, one row per second in order, with
// a late sample's amendment in its second's only row, absent figures as
// empty cells, and rows written during the run once past amending.
func TestCSVOneRowPerSecondReadBack(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "series.csv")
	m, err := New(Options{Grace: time.Second, Logger: quiet, Now: clock.Now, CSV: path})
	if err != nil {
		t.Fatal(err)
	}
	T := int64(1_800_000_000)
	grp := func(s sample.Sample) sample.Sample {
		s.Counters["group_sent"], s.Counters["group_sent_cents"], s.Counters["requests_shake"] = 2, 500, 10
		s.Counters["disconnects_hangup"] = 1
		return s
	}
	for i := range int64(3) {
		m.Add(grp(srvSample(T+i, 10, 1)), loadSample(t, "load-1", T+i, 10, 100))
		if i != 1 {
			m.Add(loadSample(t, "load-2", T+i, 10, 100))
		}
	}
	clock.Set(time.Unix(T+4, 0))
	m.Tick()
	m.Add(loadSample(t, "load-2", T+1, 10, 100)) // late: amends T+1

	head, rows := readCSV(t, path)
	if !slices.Equal(head, CSVHeader()) {
		t.Fatalf("header %v\nwant %v", head, CSVHeader())
	}
	if len(rows) != 0 {
		t.Fatalf("%d rows written while their seconds can still be amended", len(rows))
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	_, rows = readCSV(t, path)
	if len(rows) != 3 {
		t.Fatalf("%d rows, want one per second (3)", len(rows))
	}
	for i, r := range rows {
		if r["t"] != strconv.FormatInt(T+int64(i), 10) {
			t.Errorf("row %d has t %s", i, r["t"])
		}
		if r["server_got"] != "1" || r["server_group_sent_cents"] != "500" || r["server_requests_shake"] != "10" ||
			r["server_disconnects_hangup"] != "1" || r["server_connections"] != "300" {
			t.Errorf("row %d server figures: %v", i, r)
		}
		if r["client_sent"] != "20" || r["procs"] != "3" || r["missing"] != "0" || r["latency_count"] != "20" || r["latency_p50_us"] == "" {
			t.Errorf("row %d: sent %s from %s procs, %s missing, latency count %s p50 %s",
				i, r["client_sent"], r["procs"], r["missing"], r["latency_count"], r["latency_p50_us"])
		}
		// No process reported these: empty, not zero.
		if r["server_group_refunds"] != "" || r["client_opened_cents"] != "" {
			t.Errorf("row %d: absent figures %q %q, want empty", i, r["server_group_refunds"], r["client_opened_cents"])
		}
	}
	if rows[1]["late"] != "1" || rows[0]["late"] != "0" {
		t.Errorf("late: %s %s", rows[0]["late"], rows[1]["late"])
	}

	// Reopened, the file is appended to under its header; the rows of
	// seconds past amending are written while the monitor runs.
	m, err = New(Options{Grace: time.Second, Logger: quiet, Now: clock.Now, CSV: path})
	if err != nil {
		t.Fatal(err)
	}
	U := T + 1000
	for i := range int64(amendable + 10) {
		m.Add(srvSample(U+i, 1, 0))
	}
	clock.Set(time.Unix(U+amendable+12, 0))
	m.Tick() // closes up to U+amendable+10: U .. U+10 are past amending
	_, rows = readCSV(t, path)
	if want := 3 + 11; len(rows) != want {
		t.Errorf("%d rows during the run, want %d", len(rows), want)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	_, rows = readCSV(t, path)
	if want := 3 + amendable + 10; len(rows) != want || rows[len(rows)-1]["t"] != strconv.FormatInt(U+amendable+9, 10) {
		t.Errorf("%d rows after the close, want %d", len(rows), want)
	}

	// A file with other columns is refused.
	other := filepath.Join(t.TempDir(), "other.csv")
	if err := os.WriteFile(other, []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Logger: quiet, CSV: other}); err == nil {
		t.Error("a CSV file with another header was accepted")
	}
}
