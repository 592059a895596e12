package money

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"hongbao/internal/ledger"
)

// Money enters a user's account only by a top-up and leaves it by a
// withdrawal (or, inside, by the group packets the user sends). Each is
// named by the operator's idempotency key: the same key within
// ledger.KeyWindow moves the money once and answers the first result.

// DefaultMaxMoneyKeys bounds the keys remembered when Limits.MaxMoneyKeys
// is zero.
const DefaultMaxMoneyKeys = 1_000_000

// MaxTransferCents bounds one top-up or withdrawal (10^12 cents), far
// below what would overflow a balance.
const MaxTransferCents = 1_000_000_000_000

// MaxKeyLen bounds an idempotency key, in bytes.
const MaxKeyLen = 128

var (
	// ErrBadTransfer wraps every reason a top-up or withdrawal is refused
	// as malformed.
	ErrBadTransfer = errors.New("bad transfer")
	// ErrInsufficientFunds: a withdrawal beyond the balance.
	ErrInsufficientFunds = errors.New("insufficient funds")
	// ErrKeyReused: the key was used within the window for another
	// user or amount.
	ErrKeyReused = errors.New("idempotency key used for another transfer")
	// ErrTooManyKeys: as many keys are remembered as allowed; a new
	// transfer is refused (rather than forgetting a key early, which
	// could move money twice) until old ones leave the window.
	ErrTooManyKeys = errors.New("too many transfers in the key window")
	// ErrLedgerFailed: the record could not be made durable.
	ErrLedgerFailed = errors.New("ledger failed")
)

// Transfer is the outcome of a top-up or withdrawal.
type Transfer struct {
	User    uint32 `json:"user"`
	Cents   uint64 `json:"cents"`
	Balance int64  `json:"balance"` // right after this transfer
	// Repeat is true when the key was seen before: nothing moved now,
	// and the answer is the first one's.
	Repeat bool `json:"repeat,omitempty"`
}

// keyUse is a remembered key's transfer; done is closed once its record
// is durable (err says whether it failed).
type keyUse struct {
	t    Transfer
	at   int64 // Unix ms
	done chan struct{}
	err  error
}

// moneyKeys holds the keys of the last ledger.KeyWindow, with their
// order to forget them. Its lock is held while a transfer is queued to the
// ledger, so that a repeat sees the first.
type moneyKeys struct {
	mu    sync.Mutex
	m     map[ledger.MoneyKey]*keyUse
	order []ledger.MoneyKey
}

// KeyHash is the 64 bits of an idempotency key the ledger records (the
// first 8 bytes of its SHA-256: two keys collide with odds of about 1 in
// 10^7 among a million keys).
func KeyHash(key string) uint64 {
	h := sha256.Sum256([]byte(key))
	return binary.LittleEndian.Uint64(h[:8])
}

// forget drops the keys older than the window at nowMs.
func (k *moneyKeys) forget(nowMs int64) {
	n := 0
	for n < len(k.order) {
		u, ok := k.m[k.order[n]]
		if ok && u.at > nowMs-ledger.KeyWindow.Milliseconds() {
			break
		}
		delete(k.m, k.order[n])
		n++
	}
	// Slicing off the front keeps the array until an append outgrows it
	// and copies the rest to a new one (amortised): no copy per call.
	k.order = k.order[n:]
	if len(k.order) == 0 {
		k.order = nil
	}
}

func (k *moneyKeys) restore(st *ledger.State, now time.Time) {
	closed := make(chan struct{})
	close(closed)
	for mk, u := range st.Keys {
		if u.Time > now.UnixMilli()-ledger.KeyWindow.Milliseconds() {
			k.m[mk] = &keyUse{t: Transfer{User: u.User, Cents: u.Amount, Balance: u.Balance}, at: u.Time, done: closed}
			k.order = append(k.order, mk)
		}
	}
	// Oldest first, for forget.
	slices.SortFunc(k.order, func(a, b ledger.MoneyKey) int { return cmp.Compare(k.m[a].at, k.m[b].at) })
}

// TopUp credits user with cents, named by key, and returns once the
// record is durable.
func (e *Engine) TopUp(user uint32, cents uint64, key string) (Transfer, error) {
	return e.transfer(ledger.KindTopUp, user, cents, key)
}

// Withdraw debits user by cents, named by key, and returns once the
// record is durable; ErrInsufficientFunds when the balance is short.
func (e *Engine) Withdraw(user uint32, cents uint64, key string) (Transfer, error) {
	return e.transfer(ledger.KindWithdraw, user, cents, key)
}

func (e *Engine) transfer(kind ledger.Kind, user uint32, cents uint64, key string) (Transfer, error) {
	switch {
	case user == SystemUser:
		return Transfer{}, fmt.Errorf("%w: user 0 is the system account", ErrBadTransfer)
	case e.lim.Users > 0 && (user < e.lim.UsersFrom || user > e.lim.Users):
		return Transfer{}, fmt.Errorf("%w: user %d outside [%d, %d]", ErrBadTransfer, user, e.lim.UsersFrom, e.lim.Users)
	case cents == 0 || cents > MaxTransferCents:
		return Transfer{}, fmt.Errorf("%w: cents must be in [1, %d], got %d", ErrBadTransfer, uint64(MaxTransferCents), cents)
	case key == "" || len(key) > MaxKeyLen:
		return Transfer{}, fmt.Errorf("%w: key must be 1 to %d bytes, got %d", ErrBadTransfer, MaxKeyLen, len(key))
	}
	mk := ledger.MoneyKey{Kind: kind, Key: KeyHash(key)}
	k := &e.keys
	now := e.clock.Now()
	k.mu.Lock()
	k.forget(now.UnixMilli())
	if u, ok := k.m[mk]; ok {
		k.mu.Unlock()
		if u.t.User != user || u.t.Cents != cents {
			return Transfer{}, fmt.Errorf("%w: key %q was user %d, %d cents", ErrKeyReused, key, u.t.User, u.t.Cents)
		}
		<-u.done
		if u.err != nil {
			return Transfer{}, u.err
		}
		t := u.t
		t.Repeat = true
		return t, nil
	}
	if len(k.m) >= cmp.Or(e.lim.MaxMoneyKeys, DefaultMaxMoneyKeys) {
		k.mu.Unlock()
		return Transfer{}, fmt.Errorf("%w: %d keys in the last %s", ErrTooManyKeys, len(k.m), ledger.KeyWindow)
	}
	delta := int64(cents)
	if kind == ledger.KindWithdraw {
		delta = -delta
	}
	u := &keyUse{t: Transfer{User: user, Cents: cents}, at: now.UnixMilli(), done: make(chan struct{})}
	rec := ledger.Record{Kind: kind, Time: now.UnixMilli(), Amount: cents, Key: mk.Key}
	ok := e.tryMove(user, delta, &rec, ledger.DoneFunc(func(_ *ledger.Record, err error) {
		if err != nil {
			u.err = fmt.Errorf("%w: %w", ErrLedgerFailed, err)
		}
		close(u.done)
	}))
	if !ok {
		k.mu.Unlock()
		return Transfer{}, fmt.Errorf("%w: user %d holds %d cents, less than %d", ErrInsufficientFunds, user, e.Balance(user), cents)
	}
	// tryMove filled rec.Balance under the balance lock; done only closes
	// u.done, so u.t is written before any repeat reads it.
	u.t.Balance = rec.Balance
	k.m[mk] = u
	k.order = append(k.order, mk)
	k.mu.Unlock()
	<-u.done
	if u.err != nil {
		return Transfer{}, u.err
	}
	return u.t, nil
}
