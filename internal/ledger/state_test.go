package ledger

import (
	"runtime"
	"strings"
	"testing"
)

// history tops user 1 up with 300 x n cents and writes n packets of 3
// shares (300 cents) from user 1: the
// first refunded after two opens, the second opened by all three and
// expired, alternately; each at ms 10*i, expiring 5 ms later.
func history(n int) []Record {
	var rs []Record
	bal := map[uint32]int64{}
	rec := func(r Record, delta int64) {
		bal[r.User] += delta
		r.Balance = bal[r.User]
		rs = append(rs, r)
	}
	rec(Record{Kind: KindTopUp, User: 1, Amount: 300 * uint64(n), Key: 1}, 300*int64(n))
	for i := range n {
		id, t := uint32(i+1), int64(10*i)
		rec(Record{Kind: KindFunded, Time: t, Packet: id, User: 1, Amount: 300, Shares: 3, Remaining: 300, SharesLeft: 3, Expiry: t + 5, Key: uint64(id), Recipients: []uint32{2, 3, 4}}, -300)
		rec(Record{Kind: KindGrant, Time: t, Packet: id, User: 2, Amount: 100, Remaining: 200, SharesLeft: 2}, 100)
		rec(Record{Kind: KindGrant, Time: t, Packet: id, User: 3, Amount: 100, Remaining: 100, SharesLeft: 1}, 100)
		if i%2 == 0 {
			rec(Record{Kind: KindRefund, Time: t + 5, Packet: id, User: 1, Amount: 100}, 100)
		} else {
			rec(Record{Kind: KindGrant, Time: t, Packet: id, User: 4, Amount: 100, Remaining: 0, SharesLeft: 0}, 100)
		}
	}
	return rs
}

// TestReplayKeepsOnlyLivePackets: a long history of packets that were
// refunded or fully opened and expired leaves no packet in the state (the
// last one, fully opened, until a later record passes its expiry), counts
// them all, and finds nothing wrong.
func TestReplayKeepsOnlyLivePackets(t *testing.T) {
	st := NewState()
	for _, r := range history(1000) {
		st.Apply(&r)
	}
	if len(st.Packets) != 1 || st.Packets[1000] == nil || st.Funded != 1000 || st.Closed != 999 {
		t.Fatalf("%d packets kept (%d funded, %d closed), want the last one only", len(st.Packets), st.Funded, st.Closed)
	}
	st.Apply(&Record{Kind: KindCampaign, Time: 10 * 1000, Campaign: 1, Count: 1, Rate: 1, Min: 1, Max: 1})
	if len(st.Packets) != 0 || st.Closed != 1000 {
		t.Fatalf("%d packets kept after a record past the last expiry", len(st.Packets))
	}
	if v := st.Violations(); len(v) != 0 {
		t.Fatalf("violations in a consistent history: %v", v)
	}
	if st.FundedAmount != 300_000 || st.SharesGranted+st.Refunded != 300_000 || st.Refunded != 500*100 {
		t.Fatalf("totals funded %d, granted %d, refunded %d", st.FundedAmount, st.SharesGranted, st.Refunded)
	}
}

// TestReplayMemoryIsTheLiveState: replaying 200,000 closed packets holds
// a few bytes per packet (the bitsets of closed ids), not the packets.
func TestReplayMemoryIsTheLiveState(t *testing.T) {
	rs := history(200_000)
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	st := NewState()
	for i := range rs {
		st.Apply(&rs[i])
	}
	after := heap()
	grown := int64(after) - int64(before)
	t.Logf("state of 200,000 closed packets: %d B (%.1f B a packet), %d kept", grown, float64(grown)/200_000, len(st.Packets))
	if grown > 1<<20 || len(st.Packets) > 1 {
		t.Fatalf("state grew %d B for 200,000 closed packets (%d kept)", grown, len(st.Packets))
	}
	runtime.KeepAlive(rs)
	runtime.KeepAlive(st)
}

// TestViolationsOfClosedPackets: a record touching a packet that was
// closed (refunded, or fully opened and expired) is still flagged, as is a
// share granted after the packet's expiry.
func TestViolationsOfClosedPackets(t *testing.T) {
	rs := history(2) // packet 1 refunded at 5; packet 2 fully opened, expiring at 15
	later := Record{Kind: KindCampaign, Time: 100, Campaign: 9, Count: 1, Rate: 1, Min: 1, Max: 1}
	cases := []struct {
		name  string
		extra []Record
		want  string
	}{
		{"grant after the refund", []Record{{Kind: KindGrant, Time: 6, Packet: 1, User: 4, Amount: 1, Balance: 1}},
			"packet 1: share granted to user 4 after its refund"},
		{"grant after every share and expiry", []Record{later, {Kind: KindGrant, Time: 100, Packet: 2, User: 5, Amount: 1, Balance: 1}},
			"packet 2: share granted to user 5 after every share was granted and it expired"},
		{"refund twice", []Record{{Kind: KindRefund, Time: 7, Packet: 1, User: 1, Amount: 100, Balance: -400}},
			"packet 1 refunded twice"},
		{"refund of a fully opened packet", []Record{later, {Kind: KindRefund, Time: 100, Packet: 2, User: 1, Amount: 5, Balance: -495}},
			"packet 2 refunded 5 cents after every share was granted"},
		{"funded again", []Record{{Kind: KindFunded, Time: 8, Packet: 1, User: 1, Amount: 3, Shares: 3, Expiry: 50, Balance: -503, Recipients: []uint32{2}}},
			"packet 1 funded twice"},
		{"grant after the expiry", []Record{
			{Kind: KindFunded, Time: 20, Packet: 3, User: 1, Amount: 3, Shares: 3, Expiry: 30, Balance: -503, Recipients: []uint32{2}},
			{Kind: KindGrant, Time: 30, Packet: 3, User: 2, Amount: 1, Remaining: 2, SharesLeft: 2, Balance: 201}},
			"packet 3: share granted to user 2 at 30 ms, after its expiry at 30 ms"},
		{"shake granted twice", []Record{later,
			{Kind: KindShake, Time: 100, Campaign: 9, Packet: 7, User: 8, Amount: 1, Balance: 1},
			{Kind: KindShake, Time: 100, Campaign: 9, Packet: 7, User: 8, Amount: 1, Balance: 2}},
			"shake packet 7 of campaign 9 granted twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState()
			for _, r := range append(history(2), tc.extra...) {
				st.Apply(&r)
			}
			v := strings.Join(st.Violations(), "\n")
			if !strings.Contains(v, tc.want) {
				t.Fatalf("violations:\n%s\nwant one containing %q", v, tc.want)
			}
		})
	}
	st := NewState()
	for _, r := range append(rs, later) {
		st.Apply(&r)
	}
	if v := st.Violations(); len(v) != 0 || len(st.Packets) != 0 {
		t.Fatalf("the clean history: %v, %d packets kept", v, len(st.Packets))
	}
}

func TestIDSet(t *testing.T) {
	var s idSet
	for _, id := range []uint32{0, 1, 63, 64, 65535, 65536, 1 << 31, ^uint32(0)} {
		if s.has(id) || !s.add(id) || !s.has(id) || s.add(id) {
			t.Fatalf("id %d", id)
		}
	}
	if s.has(2) || s.has(65537) || len(s) != 4 {
		t.Fatalf("set %d blocks", len(s))
	}
}

// TestWalletViolations: a user's balance below zero, a top-up key used
// twice within KeyWindow, and money that appears from nowhere are flagged;
// a key reused after KeyWindow and the system account below zero are not.
func TestWalletViolations(t *testing.T) {
	win := KeyWindow.Milliseconds()
	cases := []struct {
		name string
		rs   []Record
		want string // "" for a clean history
	}{
		{"clean", []Record{
			{Kind: KindTopUp, Time: 1, User: 5, Amount: 100, Balance: 100, Key: 1},
			{Kind: KindWithdraw, Time: 2, User: 5, Amount: 40, Balance: 60, Key: 1},
			{Kind: KindFunded, Time: 3, Packet: 1, User: 0, Amount: 10, Shares: 1, Expiry: 1 << 40, Balance: -10, Recipients: []uint32{5}}}, ""},
		{"below zero", []Record{
			{Kind: KindTopUp, Time: 1, User: 5, Amount: 5, Balance: 5, Key: 1},
			{Kind: KindFunded, Time: 3, Packet: 1, User: 5, Amount: 10, Shares: 1, Expiry: 1 << 40, Balance: -5, Recipients: []uint32{6}}},
			"user 5: balance -5 below zero after funded"},
		{"key twice", []Record{
			{Kind: KindTopUp, Time: 1, User: 5, Amount: 5, Balance: 5, Key: 9},
			{Kind: KindTopUp, Time: 2, User: 5, Amount: 5, Balance: 10, Key: 9}},
			"topup key 0x9 used twice"},
		{"key again after the window", []Record{
			{Kind: KindTopUp, Time: 1, User: 5, Amount: 5, Balance: 5, Key: 9},
			{Kind: KindTopUp, Time: 1 + win, User: 5, Amount: 5, Balance: 10, Key: 9}}, ""},
		{"money from nowhere", []Record{
			{Kind: KindTopUp, Time: 1, User: 5, Amount: 5, Balance: 5, Key: 1},
			{Kind: KindTopUp, Time: 2, User: 6, Amount: 5, Balance: 50, Key: 2}},
			"conservation: top-ups 10 - withdrawals 0 + shake grants 0 = 10 differ from balances 55"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := NewState()
			for _, r := range tc.rs {
				st.Apply(&r)
			}
			v := strings.Join(st.Violations(), "\n")
			if tc.want == "" && v != "" || !strings.Contains(v, tc.want) {
				t.Fatalf("violations:\n%s\nwant %q", v, tc.want)
			}
		})
	}
}
