package ledger

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func open(t testing.TB, dir string) (*Log, *State) {
	t.Helper()
	l, st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l, st
}

func appendSync(t testing.TB, l *Log, r Record) {
	t.Helper()
	ch := make(chan error, 1)
	l.Append(&r, DoneFunc(func(_ *Record, err error) { ch <- err }))
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

// story is a consistent history: a campaign, a shake grant, a packet of
// 100 cents in 3 shares to users 1-3, two opens, and the refund.
func story() []Record {
	return []Record{
		{Kind: KindCampaign, Campaign: 1, Count: 10, Rate: 5, Budget: 1000},
		{Kind: KindShake, Campaign: 1, Packet: 1, User: 9, Amount: 120, Balance: 120},
		{Kind: KindFunded, Packet: 1, User: 9, Amount: 100, Shares: 3, Expiry: 5, Key: 77, Balance: 20, Recipients: []uint32{1, 2, 3}},
		{Kind: KindGrant, Packet: 1, User: 2, Amount: 40, Remaining: 60, SharesLeft: 2, Balance: 40},
		{Kind: KindGrant, Packet: 1, User: 3, Amount: 50, Remaining: 10, SharesLeft: 1, Balance: 50},
		{Kind: KindRefund, Packet: 1, User: 9, Amount: 10, Remaining: 0, SharesLeft: 0, Balance: 30},
		{Kind: KindCampaignStop, Campaign: 1},
	}
}

func TestRecoverEverything(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir)
	for _, r := range story() {
		appendSync(t, l, r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, st := open(t, dir)
	defer l.Close()
	if v := st.Violations(); len(v) != 0 {
		t.Fatalf("violations in a consistent history: %v", v)
	}
	// The refunded packet is closed: counted, not kept.
	if len(st.Packets) != 0 || st.Funded != 1 || st.Closed != 1 || st.FundedAmount != 100 || st.SharesGranted != 90 || st.Refunded != 10 || st.MaxPacket != 1 {
		t.Fatalf("packets recovered as %v, funded %d closed %d (%d = %d + %d cents)", st.Packets, st.Funded, st.Closed, st.FundedAmount, st.SharesGranted, st.Refunded)
	}
	c := st.Campaigns[1]
	if c == nil || c.Taken != 1 || c.AmountTaken != 120 || !c.Stopped {
		t.Fatalf("campaign recovered as %+v", c)
	}
	if st.Balances[9] != 30 || st.Balances[2] != 40 || st.Records != 7 {
		t.Fatalf("balances %v, records %d", st.Balances, st.Records)
	}
}

func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir)
	for _, r := range story()[:3] {
		appendSync(t, l, r)
	}
	l.Close()
	path := filepath.Join(dir, FileName)
	fi, _ := os.Stat(path)
	// A crash in the middle of writing the next record: half a record, then garbage.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, 5, 6})
	f.Close()
	l, st := open(t, dir)
	if st.Records != 3 {
		t.Fatalf("recovered %d records, want 3", st.Records)
	}
	if fi2, _ := os.Stat(path); fi2.Size() != fi.Size() {
		t.Fatalf("torn tail not cut: %d bytes, want %d", fi2.Size(), fi.Size())
	}
	appendSync(t, l, story()[3])
	l.Close()
	st, err := Replay(dir)
	if err != nil || st.Records != 4 {
		t.Fatalf("after appending past the cut: %d records, %v", st.Records, err)
	}
}

func TestAuditFindsEachViolation(t *testing.T) {
	cases := []struct {
		name string
		mod  func([]Record) []Record
		want string
	}{
		{"opened twice", func(rs []Record) []Record {
			return append(rs[:5:5], Record{Kind: KindGrant, Packet: 1, User: 3, Amount: 10, Remaining: 0, SharesLeft: 0, Balance: 60})
		}, "user 3 opened packet 1 twice"},
		{"share below a cent", func(rs []Record) []Record {
			rs[4].Amount, rs[4].Balance = 0, 0
			return rs[:5]
		}, "below 1 cent"},
		{"funded differs", func(rs []Record) []Record {
			rs[4].Remaining = 11
			return rs[:5]
		}, "packet 1: funded 100 differs from granted 90 + refunded 0 + remaining 11"},
		{"balance differs", func(rs []Record) []Record {
			rs[3].Balance = 41
			return rs
		}, "user 2: balance 41"},
		{"campaign over budget", func(rs []Record) []Record {
			rs[1].Amount, rs[1].Balance, rs[2].Balance, rs[5].Balance = 995, 995, 895, 905
			return rs
		}, "campaign 1: budget 1000 differs from granted 995 + not issued 5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState()
			for _, r := range tc.mod(story()) {
				st.Apply(&r)
			}
			v := strings.Join(st.Violations(), "\n")
			if !strings.Contains(v, tc.want) {
				t.Fatalf("violations:\n%s\nwant one containing %q", v, tc.want)
			}
		})
	}
}

func TestGroupCommit(t *testing.T) {
	l, _ := open(t, t.TempDir())
	defer l.Close()
	const conc = 64
	const n = conc * 60
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < n/conc; i++ {
				appendSync(t, l, Record{Kind: KindCampaign, Campaign: uint32(w*1000 + i)})
			}
		}(w)
	}
	wg.Wait()
	st := l.Stats()
	if st.Records != n {
		t.Fatalf("%d records durable, want %d", st.Records, n)
	}
	if st.Batches*4 > n {
		t.Fatalf("%d fsync batches for %d records from %d writers: not grouping", st.Batches, n, conc)
	}
}

func TestAppendAfterCloseFails(t *testing.T) {
	l, _ := open(t, t.TempDir())
	l.Close()
	ch := make(chan error, 1)
	l.Append(&Record{Kind: KindCampaign}, DoneFunc(func(_ *Record, err error) { ch <- err }))
	if err := <-ch; err != ErrClosed {
		t.Fatalf("append after close: %v", err)
	}
}

// BenchmarkDurable reports durable records/s and p99 commit latency with
// 256 concurrent writers (go test -bench Durable ./internal/ledger/).
func BenchmarkDurable(b *testing.B) {
	l, _ := open(b, b.TempDir())
	defer l.Close()
	res := Measure(l, 256, 2*time.Second)
	b.ReportMetric(res.PerSecond, "records/s")
	b.ReportMetric(res.P99CommitUS, "p99-us")
	b.ReportMetric(res.RecordsPerFS, "records/fsync")
}

func TestMarkAndReplayTo(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir)
	defer l.Close()
	rs := story()
	for i := range rs[:3] {
		l.Append(&rs[i], nil)
	}
	ch := make(chan int64, 1)
	l.Mark(func(off int64, err error) {
		if err != nil {
			t.Error(err)
		}
		ch <- off
	})
	for i := range rs[3:] {
		l.Append(&rs[3+i], nil)
	}
	off := <-ch
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	st, err := ReplayTo(dir, off)
	if err != nil || st.Records != 3 {
		t.Fatalf("replay to the mark: %d records, %v; want 3", st.Records, err)
	}
	if all, _ := Replay(dir); all.Records != uint64(len(rs)) {
		t.Fatalf("full replay %d records", all.Records)
	}
}

// TestErrAfterWriteFails makes the file refuse writes for real (/dev/full:
// ENOSPC) and expects the error to be answered and kept by Err.
func TestErrAfterWriteFails(t *testing.T) {
	l, _ := open(t, t.TempDir())
	if err := l.Err(); err != nil {
		t.Fatalf("fresh log: %v", err)
	}
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full:", err)
	}
	l.mu.Lock()
	file := l.f
	l.f = full
	l.mu.Unlock()
	defer file.Close()
	ch := make(chan error, 1)
	l.Append(&Record{Kind: KindCampaign}, DoneFunc(func(_ *Record, err error) { ch <- err }))
	if err := <-ch; !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append to a full disk: %v", err)
	}
	if err := l.Err(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Err after the failed write: %v", err)
	}
	l.Close()
	if err := l.Err(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Err after Close: %v", err)
	}
}
