package ledger

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// randomHistory is a consistent random history of about n records: shake
// grants from a campaign, top-ups, and group packets funded to 3..40 recipients
// with some of their shares granted and some refunded, each record with
// the balance it leaves.
func randomHistory(rng *rand.Rand, n int) []Record {
	bal := map[uint32]int64{}
	rs := []Record{{Kind: KindCampaign, Campaign: 1, Count: 1 << 20, Rate: 1000, Min: 1, Max: 200}}
	add := func(r Record, delta int64) {
		bal[r.User] += delta
		r.Balance = bal[r.User]
		r.Time = int64(len(rs)) // ms: one record a millisecond
		rs = append(rs, r)
	}
	var pid, shake uint32
	var topups uint64
	for len(rs) < n {
		if rng.Intn(3) == 0 {
			shake++
			a := 1 + uint64(rng.Intn(200))
			add(Record{Kind: KindShake, Campaign: 1, Packet: shake, User: 1 + uint32(rng.Intn(50)), Amount: a}, int64(a))
			continue
		}
		pid++
		sender := 1 + uint32(rng.Intn(50))
		recips := rng.Perm(1000)[:3+rng.Intn(38)]
		to := make([]uint32, len(recips))
		for i, r := range recips {
			to[i] = 100 + uint32(r)
		}
		shares := uint32(1 + rng.Intn(len(to)))
		total := uint64(shares) * uint64(1+rng.Intn(100))
		if short := int64(total) - bal[sender]; short > 0 {
			// A sender only sends what it holds: top it up first.
			topups++
			a := uint64(short) + uint64(rng.Intn(1000))
			add(Record{Kind: KindTopUp, User: sender, Amount: a, Key: topups}, int64(a))
		}
		add(Record{Kind: KindFunded, Packet: pid, User: sender, Amount: total, Shares: shares, Expiry: 1 << 40, Key: uint64(pid), Recipients: to}, -int64(total))
		remaining, left := total, shares
		for i := range rng.Intn(int(shares) + 1) {
			a := remaining // the last share takes the rest; each leaves a cent for every share after it
			if left > 1 {
				a = 1 + uint64(rng.Int63n(int64(remaining-uint64(left)+1)))
			}
			remaining, left = remaining-a, left-1
			add(Record{Kind: KindGrant, Packet: pid, User: to[i], Amount: a, Remaining: remaining, SharesLeft: left}, int64(a))
		}
		if left > 0 && rng.Intn(2) == 0 {
			add(Record{Kind: KindRefund, Packet: pid, User: sender, Amount: remaining}, int64(remaining))
		}
	}
	return rs
}

// frameSize is the bytes r takes in the file.
func frameSize(r *Record) int64 { return frameHeader + fixedSize + 4*int64(len(r.Recipients)) }

// writeHistory writes rs with the real Log into dir and returns the file's
// bytes and each record's offset in it.
func writeHistory(t testing.TB, dir string, rs []Record) ([]byte, []int64) {
	t.Helper()
	l, _ := open(t, dir)
	offs := make([]int64, len(rs))
	var off int64
	for i := range rs {
		offs[i] = off
		off += frameSize(&rs[i])
		l.Append(&rs[i], nil)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != off {
		t.Fatalf("ledger of %d bytes, want %d", len(data), off)
	}
	return data, offs
}

// stateWithout applies rs but the records at the indexes in skip.
func stateWithout(rs []Record, skip ...int) *State {
	st := NewState()
	for i := range rs {
		if !slices.Contains(skip, i) {
			st.Apply(&rs[i])
		}
	}
	return st
}

// sameState fails unless got has what want has: as many records of each
// kind, the same balances, packets and violations.
func sameState(t testing.TB, what string, got, want *State) {
	t.Helper()
	if got.Records != want.Records || !maps.Equal(got.ByKind, want.ByKind) || !maps.Equal(got.Balances, want.Balances) ||
		len(got.Packets) != len(want.Packets) || !slices.Equal(got.Violations(), want.Violations()) {
		t.Fatalf("%s: state with %d records %v, %d packets, violations %q; want %d records %v, %d packets, violations %q",
			what, got.Records, got.ByKind, len(got.Packets), got.Violations(), want.Records, want.ByKind, len(want.Packets), want.Violations())
	}
}

func writeLedger(t testing.TB, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func flipSeed(t *testing.T) int64 {
	seed := time.Now().UnixNano()
	if s := os.Getenv("HONGBAO_FLIP_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (HONGBAO_FLIP_SEED=%d repeats this run)", seed, seed)
	return seed
}

// TestRandomByteFlips flips one random byte of a ledger written by the
// real Log, 20 times: the flip is always found at the start of the record
// it hit; Open refuses the file (ErrCorrupt, leaving it as it was) unless
// the record hit is the last one, which is then a torn tail, cut off with
// its bytes kept; and reading the file in full keeps every other record.
func TestRandomByteFlips(t *testing.T) {
	rng := rand.New(rand.NewSource(flipSeed(t)))
	rs := randomHistory(rng, 3000)
	if v := stateWithout(rs).Violations(); len(v) != 0 {
		t.Fatalf("the history is not consistent: %v", v)
	}
	clean, offs := writeHistory(t, t.TempDir(), rs)
	n := len(rs)
	for i := range 20 {
		off := rng.Int63n(int64(len(clean)))
		if i == 0 {
			off = int64(len(clean)) - 1 - rng.Int63n(frameSize(&rs[n-1])) // the last record is hit at least once
		}
		mask := byte(1 + rng.Intn(255))
		k := sort.Search(n, func(j int) bool { return offs[j] > off }) - 1
		last := k == n-1
		data := bytes.Clone(clean)
		data[off] ^= mask
		dir := writeLedger(t, data)
		what := "flip " + strconv.Itoa(i) + " at " + strconv.FormatInt(off, 10) + " of record " + strconv.Itoa(k) + " (" + rs[k].Kind.String() + ")"

		st, sc, err := Inspect(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(sc.Damage) != 1 || sc.Records != uint64(n-1) {
			t.Fatalf("%s: scan found %d records and damage %+v, want %d and one span", what, sc.Records, sc.Damage, n-1)
		}
		d := sc.Damage[0]
		if d.Offset != offs[k] || d.Length != frameSize(&rs[k]) || d.Tail != last || d.After != uint64(n-1-k) {
			t.Fatalf("%s: damage %+v, want offset %d length %d tail %v after %d", what, d, offs[k], frameSize(&rs[k]), last, n-1-k)
		}
		sameState(t, what, st, stateWithout(rs, k))

		l, st, err := Open(dir)
		if !last {
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.First.Offset != offs[k] || ce.First.After != uint64(n-1-k) ||
				!strings.Contains(err.Error(), "offset "+strconv.FormatInt(offs[k], 10)) {
				t.Fatalf("%s: Open: %v, want a corrupt error at %d with %d records after", what, err, offs[k], n-1-k)
			}
			if now, _ := os.ReadFile(filepath.Join(dir, FileName)); !bytes.Equal(now, data) {
				t.Fatalf("%s: Open changed the damaged file (%d bytes, was %d)", what, len(now), len(data))
			}
			if _, err := Replay(dir); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: Replay: %v, want ErrCorrupt", what, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: Open of a ledger whose last record is damaged: %v", what, err)
		}
		tt := l.TornTail()
		l.Close()
		sameState(t, what, st, stateWithout(rs, k))
		if tt == nil || tt.Offset != offs[k] || tt.Length != frameSize(&rs[k]) {
			t.Fatalf("%s: torn tail %+v, want at %d", what, tt, offs[k])
		}
		if fi, _ := os.Stat(filepath.Join(dir, FileName)); fi.Size() != offs[k] {
			t.Fatalf("%s: %d bytes after the cut, want %d", what, fi.Size(), offs[k])
		}
		if got := readSide(t, tt.SideFile); !bytes.Equal(got[offs[k]], data[offs[k]:]) {
			t.Fatalf("%s: side file has %x, want %x", what, got[offs[k]], data[offs[k]:])
		}
	}
}

// readSide parses a side file: the bytes of each span by its offset.
func readSide(t testing.TB, path string) map[int64][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spans := map[int64][]byte{}
	var cur, next int64 = -1, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "span offset="):
			off, err := strconv.ParseInt(strings.Fields(strings.TrimPrefix(line, "span offset="))[0], 10, 64)
			if err != nil {
				t.Fatalf("side file line %q: %v", line, err)
			}
			cur, next = off, off
			spans[cur] = []byte{}
		default:
			o, h, ok := strings.Cut(line, " ")
			off, err := strconv.ParseInt(o, 10, 64)
			b, herr := hex.DecodeString(h)
			if !ok || err != nil || herr != nil || cur < 0 || off != next {
				t.Fatalf("side file line %q (span at %d, next byte %d)", line, cur, next)
			}
			spans[cur] = append(spans[cur], b...)
			next += int64(len(b))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return spans
}

// TestTornTails: what a crash can leave after the last intact record is
// cut off at Open, its bytes kept in a side file, and the log appends on.
func TestTornTails(t *testing.T) {
	rs := story()
	clean, offs := writeHistory(t, t.TempDir(), rs)
	lastOff := offs[len(rs)-1]
	cases := []struct {
		name string
		data []byte
		cut  int64 // where the file ends after Open
	}{
		{"half the last record", clean[:len(clean)-20], lastOff},
		{"a header only", append(bytes.Clone(clean), 200, 0, 0, 0, 1, 2), int64(len(clean))},
		{"zeros after the end", append(bytes.Clone(clean), make([]byte, 4096)...), int64(len(clean))},
		{"garbage after the end", append(bytes.Clone(clean), []byte("\x61\x00\x00\x00 not a record at all, just bytes that look like nothing")...), int64(len(clean))},
		{"a flipped checksum in the last record", func() []byte { b := bytes.Clone(clean); b[lastOff+5] ^= 0x40; return b }(), lastOff},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeLedger(t, tc.data)
			l, st, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			tt := l.TornTail()
			if tt == nil || tt.Offset != tc.cut || tt.Offset+tt.Length != int64(len(tc.data)) || !tt.Tail {
				t.Fatalf("torn tail %+v, want from %d to %d", tt, tc.cut, len(tc.data))
			}
			if got := readSide(t, tt.SideFile)[tc.cut]; !bytes.Equal(got, tc.data[tc.cut:]) {
				t.Fatalf("side file keeps %x, want %x", got, tc.data[tc.cut:])
			}
			want := stateWithout(rs)
			if tc.cut == lastOff {
				want = stateWithout(rs, len(rs)-1)
			}
			sameState(t, tc.name, st, want)
			appendSync(t, l, rs[len(rs)-1])
			l.Close()
			l, _ = open(t, dir)
			if l.TornTail() != nil {
				t.Fatalf("a second torn tail after appending past the cut: %+v", l.TornTail())
			}
			l.Close()
		})
	}
}

// TestDamageInTheMiddle: damage that is not one flipped byte, with intact
// records after it, is refused at Open and found by the scan exactly.
func TestDamageInTheMiddle(t *testing.T) {
	rs := randomHistory(rand.New(rand.NewSource(7)), 400)
	clean, offs := writeHistory(t, t.TempDir(), rs)
	n := len(rs)
	changed := func(data []byte) (idx []int) { // records whose bytes differ in data (of clean's length)
		for i := range rs {
			if e := offs[i] + frameSize(&rs[i]); !bytes.Equal(clean[offs[i]:e], data[offs[i]:e]) {
				idx = append(idx, i)
			}
		}
		return idx
	}
	zeroAt := int64(len(clean)/2 + 3)
	zeroed := bytes.Clone(clean)
	clear(zeroed[zeroAt : zeroAt+4096])
	inserted := slices.Concat(clean[:offs[100]], []byte("1234567"), clean[offs[100]:])
	two := bytes.Clone(clean)
	two[offs[50]+20] ^= 1
	two[offs[300]+3] ^= 0x80
	cases := []struct {
		name  string
		data  []byte
		spans []Damage // Offset, Length, After
		lost  []int
	}{
		{"a zeroed block", zeroed, nil, changed(zeroed)},
		{"bytes inserted between records", inserted, []Damage{{Offset: offs[100], Length: 7, After: uint64(n - 100)}}, nil},
		{"two flips", two, []Damage{{Offset: offs[50], Length: frameSize(&rs[50]), After: uint64(n - 2 - 50)},
			{Offset: offs[300], Length: frameSize(&rs[300]), After: uint64(n - 1 - 300)}}, []int{50, 300}},
	}
	// The zeroed block's span runs from the first record it changed to the
	// first record after the last one it changed (bytes that were zero
	// already leave a record intact).
	lost := cases[0].lost
	first, lastLost := lost[0], lost[len(lost)-1]
	cases[0].spans = []Damage{{Offset: offs[first], Length: offs[lastLost+1] - offs[first], After: uint64(n - 1 - lastLost)}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeLedger(t, tc.data)
			st, sc, err := Inspect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(sc.Damage) != len(tc.spans) {
				t.Fatalf("damage %+v, want %+v", sc.Damage, tc.spans)
			}
			for i, d := range sc.Damage {
				w := tc.spans[i]
				if d.Offset != w.Offset || d.Length != w.Length || d.After != w.After || d.Tail {
					t.Fatalf("damage %d: %+v, want %+v", i, d, w)
				}
			}
			sameState(t, tc.name, st, stateWithout(rs, tc.lost...))
			_, _, err = Open(dir)
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.First.Offset != tc.spans[0].Offset || ce.Spans != len(tc.spans) {
				t.Fatalf("Open: %v, want corruption at %d in %d spans", err, tc.spans[0].Offset, len(tc.spans))
			}
		})
	}
}

// TestReplayToRefusesDamageBeforeTheMark: the live audit replays up to a
// mark that stands after durable records; damage before it is an error,
// even where it would pass for a torn tail of the shorter file.
func TestReplayToRefusesDamageBeforeTheMark(t *testing.T) {
	rs := story()
	clean, offs := writeHistory(t, t.TempDir(), rs)
	flipped := bytes.Clone(clean)
	flipped[offs[2]+30] ^= 4
	dir := writeLedger(t, flipped)
	if _, err := ReplayTo(dir, offs[3]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReplayTo past a damaged record: %v", err)
	}
	if st, err := ReplayTo(dir, offs[2]); err != nil || st.Records != 2 {
		t.Fatalf("ReplayTo before the damaged record: %v", err)
	}
	if _, err := ReplayTo(dir, offs[3]-5); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReplayTo to the middle of a record: %v", err)
	}
}

// TestRepair: a ledger with a funding destroyed in its middle, another
// record damaged, and a torn tail. Repair keeps every intact record in its
// order, puts a repair record where each span was, keeps the dropped
// bytes in a side file; the repaired file opens, its audit notes the
// repairs and shows what the lost funding leaves behind (grants of an
// unknown packet); a second repair finds nothing to do.
func TestRepair(t *testing.T) {
	rs := randomHistory(rand.New(rand.NewSource(3)), 600)
	clean, offs := writeHistory(t, t.TempDir(), rs)
	n := len(rs)
	funded := -1
	for i := n / 3; i < n; i++ {
		if rs[i].Kind == KindFunded && rs[i+1].Kind == KindGrant {
			funded = i
			break
		}
	}
	other := funded + 40
	data := bytes.Clone(clean)
	data[offs[funded]+12] ^= 0x10
	data[offs[other]+1] ^= 0x01
	data = append(data, 0x80, 0, 0, 0, 9, 9, 9) // a torn tail too
	dir := writeLedger(t, data)

	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := Repair(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	// A repair record takes the time of the record before it: the
	// ledger's clock does not jump to the repair's.
	timeBefore := []int64{rs[funded-1].Time, rs[other-1].Time, rs[n-1].Time}
	want := []Damage{
		{Offset: offs[funded], Length: frameSize(&rs[funded])},
		{Offset: offs[other], Length: frameSize(&rs[other])},
		{Offset: int64(len(clean)), Length: 7, Tail: true},
	}
	if res.Records != uint64(n-2) || len(res.Dropped) != 3 || res.SizeBefore != int64(len(data)) ||
		res.DroppedBytes != want[0].Length+want[1].Length+7 || !strings.Contains(res.SideFile, "ledger.log.dropped-20260102T030405Z") {
		t.Fatalf("repair: %+v", res)
	}
	side := readSide(t, res.SideFile)
	for i, d := range res.Dropped {
		if d.Offset != want[i].Offset || d.Length != want[i].Length || d.Tail != want[i].Tail {
			t.Fatalf("dropped span %d: %+v, want %+v", i, d, want[i])
		}
		if !bytes.Equal(side[d.Offset], data[d.Offset:d.Offset+d.Length]) {
			t.Fatalf("side file keeps %x at %d, want %x", side[d.Offset], d.Offset, data[d.Offset:d.Offset+d.Length])
		}
	}

	st, sc, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Damage) != 0 || len(sc.Repairs) != 3 || sc.Records != uint64(n-2+3) || sc.Size != res.SizeAfter {
		t.Fatalf("repaired file: %d records, damage %+v, %d repairs, %d bytes (repair said %d)", sc.Records, sc.Damage, len(sc.Repairs), sc.Size, res.SizeAfter)
	}
	for i, r := range sc.Repairs {
		if r.Key != uint64(want[i].Offset) || r.Amount != uint64(want[i].Length) || r.Expiry != now.UnixMilli() || r.Time != timeBefore[i] {
			t.Fatalf("repair record %d: %+v, want offset %d length %d, repaired at %d, time %d", i, r, want[i].Offset, want[i].Length, now.UnixMilli(), timeBefore[i])
		}
	}
	wantSt := stateWithout(rs, funded, other)
	if st.ByKind[KindRepair] != 3 {
		t.Fatalf("repair records by kind: %v", st.ByKind)
	}
	delete(st.ByKind, KindRepair)
	st.Records -= 3
	sameState(t, "repaired", st, wantSt)
	if v := strings.Join(st.Violations(), "\n"); !strings.Contains(v, "share of unknown packet "+strconv.Itoa(int(rs[funded].Packet))) {
		t.Fatalf("the lost funding leaves no trace in the audit:\n%s", v)
	}

	// The repaired ledger opens; a running server's lock stops a repair.
	l, _, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Repair(dir, now); !errors.Is(err, ErrLocked) {
		t.Fatalf("repair of an open ledger: %v, want ErrLocked", err)
	}
	l.Close()
	before, _ := os.ReadFile(filepath.Join(dir, FileName))
	again, err := Repair(dir, now.Add(time.Hour))
	after, _ := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil || len(again.Dropped) != 0 || again.SideFile != "" || !bytes.Equal(before, after) {
		t.Fatalf("second repair: %+v %v (file changed: %v)", again, err, !bytes.Equal(before, after))
	}
	if m, _ := filepath.Glob(filepath.Join(dir, FileName+".*")); len(m) != 1 {
		t.Fatalf("files beside the ledger: %v, want the one side file", m)
	}
}

// TestRepairThatLosesNothing: bytes inserted between records are dropped
// and every record is kept, so the audit is clean apart from the note.
func TestRepairThatLosesNothing(t *testing.T) {
	rs := story()
	clean, offs := writeHistory(t, t.TempDir(), rs)
	dir := writeLedger(t, slices.Concat(clean[:offs[3]], []byte("stray"), clean[offs[3]:]))
	res, err := Repair(dir, time.Now())
	if err != nil || res.Records != uint64(len(rs)) || len(res.Dropped) != 1 || res.DroppedBytes != 5 {
		t.Fatalf("repair: %+v %v", res, err)
	}
	st, sc, err := Inspect(dir)
	if err != nil || len(sc.Damage) != 0 || len(sc.Repairs) != 1 || len(st.Violations()) != 0 {
		t.Fatalf("after repair: damage %+v, repairs %d, violations %v, %v", sc.Damage, len(sc.Repairs), st.Violations(), err)
	}
}

// FuzzDecodeRecord: any payload decodes or is refused without a panic,
// and one that decodes encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range story() {
		f.Add(appendRecord(nil, &r))
	}
	f.Add(appendRecord(nil, &Record{Kind: KindRepair, Time: 1, Key: 99, Amount: 7}))
	f.Add(appendRecord(nil, &Record{Kind: KindTopUp, Time: 1, User: 3, Amount: 500, Balance: 500, Key: 1 << 63}))
	f.Add(appendRecord(nil, &Record{Kind: KindWithdraw, Time: 2, User: 3, Amount: 200, Balance: 300, Key: 7}))
	f.Add([]byte{})
	f.Add(make([]byte, fixedSize))
	f.Fuzz(func(t *testing.T, p []byte) {
		var r Record
		if err := decodeRecord(p, &r); err != nil {
			return
		}
		if back := appendRecord(nil, &r); !bytes.Equal(back, p) {
			t.Fatalf("decoded %+v encodes as %x, was %x", r, back, p)
		}
	})
}

// FuzzScan: any file is read without a panic and tiled exactly by intact
// records and damaged spans in order; only the last span can be a torn
// tail, and only if it runs to the end.
func FuzzScan(f *testing.F) {
	var clean []byte
	for _, r := range story() {
		clean = appendFrame(clean, &r)
	}
	f.Add(clean)
	f.Add(clean[:len(clean)-9])
	for _, at := range []int{0, 3, 7, 40, len(clean) / 2} {
		b := bytes.Clone(clean)
		b[at] ^= 0x21
		f.Add(b)
	}
	f.Add(append(bytes.Clone(clean), make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		var recBytes int64
		sc, err := scan(bytes.NewReader(data), int64(len(data)), "fuzz", func(r *Record) { recBytes += frameSize(r) })
		if err != nil {
			t.Fatal(err)
		}
		covered := recBytes
		prevEnd := int64(-1)
		for i, d := range sc.Damage {
			if d.Length <= 0 || d.Offset < prevEnd || (d.Tail && (i != len(sc.Damage)-1 || d.Offset+d.Length != int64(len(data)))) {
				t.Fatalf("damage %d: %+v in %+v", i, d, sc.Damage)
			}
			if d.Tail != (d.After == 0 && d.Offset+d.Length == int64(len(data))) {
				t.Fatalf("damage %d: %+v: tail exactly when nothing intact follows to the end", i, d)
			}
			prevEnd = d.Offset + d.Length
			covered += d.Length
		}
		if covered != int64(len(data)) || sc.Size != int64(len(data)) {
			t.Fatalf("records (%d bytes) and damage %+v cover %d of %d bytes", recBytes, sc.Damage, covered, len(data))
		}
	})
}
