// Package ledger is the durable record of every money movement: a group
// packet funded (its sender debited), a share of it granted, its remainder
// refunded, a shake packet granted from a campaign, and a campaign started
// or stopped. Records are appended to one file by a single writer that
// group-commits them: it takes everything queued, writes it in one write,
// fsyncs once and only then runs each record's completion. Replaying the
// file rebuilds the state (State) and checks its invariants (the audit).
package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind is a record's type. Values are part of the file format.
type Kind uint8

// Record kinds.
const (
	KindCampaign     Kind = 1 // a shake campaign started: Campaign, Count, Rate, Min, Max, Budget
	KindCampaignStop Kind = 2 // a campaign stopped issuing: Campaign
	KindShake        Kind = 3 // a shake packet granted: Campaign, Packet, User, Amount, Balance
	KindFunded       Kind = 4 // a group packet funded: Packet, User (sender), Amount (total), Shares, Expiry, Key, Balance, Recipients
	KindGrant        Kind = 5 // a share granted: Packet, User, Amount, Remaining, SharesLeft, Balance
	KindRefund       Kind = 6 // a packet's remainder refunded: Packet, User (sender), Amount, Balance
	// KindRepair stands where 'hongbao ledger repair' dropped damaged
	// bytes: Key (the bytes' offset in the file as it was), Amount (how
	// many), Expiry (when the repair ran, Unix ms). It moves no money; the
	// audit notes it. Its Time is that of the record before it, so that
	// the ledger's clock (the latest record time) does not jump.
	KindRepair Kind = 7
	// KindTopUp is money entering a user's account from outside: User,
	// Amount, Balance, Key (the hash of the operator's idempotency key).
	KindTopUp Kind = 8
	// KindWithdraw is money leaving a user's account: User, Amount,
	// Balance, Key (as for KindTopUp).
	KindWithdraw Kind = 9

	lastKind = KindWithdraw // a higher kind is not a record
)

func (k Kind) String() string {
	switch k {
	case KindCampaign:
		return "campaign"
	case KindCampaignStop:
		return "campaign-stop"
	case KindShake:
		return "shake"
	case KindFunded:
		return "funded"
	case KindGrant:
		return "grant"
	case KindRefund:
		return "refund"
	case KindRepair:
		return "repair"
	case KindTopUp:
		return "topup"
	case KindWithdraw:
		return "withdraw"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Record is one money movement. Which fields matter depends on Kind (see
// the constants); Balance is the user's balance right after the movement,
// Remaining and SharesLeft the packet's right after it.
type Record struct {
	Kind       Kind
	Time       int64 // Unix milliseconds
	Packet     uint32
	User       uint32
	Campaign   uint32
	Amount     uint64
	Shares     uint32
	Remaining  uint64
	SharesLeft uint32
	Balance    int64
	Key        uint64
	Expiry     int64 // Unix milliseconds
	Count      uint32
	Rate       uint32
	Min, Max   uint32
	Budget     uint64
	Recipients []uint32
}

// fixedSize is the encoded size of a record without its recipients.
const fixedSize = 1 + 8 + 4 + 4 + 4 + 8 + 4 + 8 + 4 + 8 + 8 + 8 + 4 + 4 + 4 + 4 + 8 + 4

// frameHeader is a record's length and CRC-32C in the file.
const frameHeader = 8

// maxRecord bounds a record's encoded size (a funded packet to 100,000
// recipients), to reject a corrupt length before allocating.
const maxRecord = fixedSize + 4*100000

var errBadRecord = errors.New("ledger: undecodable record")

// appendRecord appends r's payload.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, byte(r.Kind))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Time))
	b = binary.LittleEndian.AppendUint32(b, r.Packet)
	b = binary.LittleEndian.AppendUint32(b, r.User)
	b = binary.LittleEndian.AppendUint32(b, r.Campaign)
	b = binary.LittleEndian.AppendUint64(b, r.Amount)
	b = binary.LittleEndian.AppendUint32(b, r.Shares)
	b = binary.LittleEndian.AppendUint64(b, r.Remaining)
	b = binary.LittleEndian.AppendUint32(b, r.SharesLeft)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Balance))
	b = binary.LittleEndian.AppendUint64(b, r.Key)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Expiry))
	b = binary.LittleEndian.AppendUint32(b, r.Count)
	b = binary.LittleEndian.AppendUint32(b, r.Rate)
	b = binary.LittleEndian.AppendUint32(b, r.Min)
	b = binary.LittleEndian.AppendUint32(b, r.Max)
	b = binary.LittleEndian.AppendUint64(b, r.Budget)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Recipients)))
	for _, u := range r.Recipients {
		b = binary.LittleEndian.AppendUint32(b, u)
	}
	return b
}

// decodeRecord reads a payload written by appendRecord.
func decodeRecord(p []byte, r *Record) error {
	if len(p) < fixedSize {
		return errBadRecord
	}
	le := binary.LittleEndian
	r.Kind = Kind(p[0])
	o := 1
	u64 := func() uint64 { v := le.Uint64(p[o:]); o += 8; return v }
	u32 := func() uint32 { v := le.Uint32(p[o:]); o += 4; return v }
	r.Time = int64(u64())
	r.Packet = u32()
	r.User = u32()
	r.Campaign = u32()
	r.Amount = u64()
	r.Shares = u32()
	r.Remaining = u64()
	r.SharesLeft = u32()
	r.Balance = int64(u64())
	r.Key = u64()
	r.Expiry = int64(u64())
	r.Count = u32()
	r.Rate = u32()
	r.Min = u32()
	r.Max = u32()
	r.Budget = u64()
	n := u32()
	if len(p) != fixedSize+4*int(n) {
		return errBadRecord
	}
	r.Recipients = nil
	if n > 0 {
		r.Recipients = make([]uint32, n)
		for i := range r.Recipients {
			r.Recipients[i] = u32()
		}
	}
	if r.Kind < KindCampaign || r.Kind > lastKind {
		return errBadRecord
	}
	return nil
}
