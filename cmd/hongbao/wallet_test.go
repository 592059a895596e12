package main

import (
	"strings"
	"testing"

	"hongbao/internal/ledger"
)

// TestAuditFlagsMintedMoney: `hongbao audit` exits 1 on a ledger where a
// user's balance went below zero (a send it could not cover) or where money
// appeared that no top-up or campaign brought in, and 0 on the same
// ledger with the sender topped up first.
func TestAuditFlagsMintedMoney(t *testing.T) {
	funded := func(balance int64) ledger.Record {
		return ledger.Record{Kind: ledger.KindFunded, Time: 2, Packet: 1, User: 5, Amount: 100, Shares: 1, Expiry: 1 << 40, Balance: balance, Recipients: []uint32{6}}
	}
	cases := []struct {
		name string
		rs   []ledger.Record
		want string // "" for a clean ledger
	}{
		{"topped up", []ledger.Record{{Kind: ledger.KindTopUp, Time: 1, User: 5, Amount: 100, Balance: 100, Key: 1}, funded(0)}, ""},
		{"below zero", []ledger.Record{funded(-100)}, "user 5: balance -100 below zero"},
		{"minted", []ledger.Record{{Kind: ledger.KindTopUp, Time: 1, User: 5, Amount: 100, Balance: 1000, Key: 1}}, "conservation: top-ups 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _, err := ledger.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.rs {
				l.Append(&tc.rs[i], nil)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			out, stderr, code := run(t, nil, "audit", "--data-dir", dir)
			switch {
			case tc.want == "" && (code != 0 || !strings.Contains(out, "ok: no violations")):
				t.Fatalf("audit of a clean ledger: exit %d\n%s%s", code, out, stderr)
			case tc.want != "" && (code != 1 || !strings.Contains(out+stderr, tc.want)):
				t.Fatalf("audit: exit %d, want 1 naming %q\n%s%s", code, tc.want, out, stderr)
			}
		})
	}
}
