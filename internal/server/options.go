package server

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Options configure a Server. The zero value of a field means its default.
type Options struct {
	// Listen is the TCP address for clients, "127.0.0.1:0" in tests.
	Listen string
	// Admin is the admin HTTP address; "" disables it.
	Admin string
	// Secret keys the HMAC of login tokens.
	Secret []byte
	// AllowClassic accepts the classic bare user-id login (no token).
	AllowClassic bool
	// Sets is the number of user partitions (SETs); each has its own lock,
	// packet queue and session table, and nothing is shared between them.
	Sets int
	// Budget is the admission budget in shakes per second over the whole
	// server; a shake beyond it is answered "overloaded" at once.
	Budget int
	// Users, if non-zero, is the number of users: ids outside 1..Users are refused.
	Users uint32
	// Loops is the number of event loops (0: one per CPU).
	Loops int
	// AmountMin and AmountMax are the amount range, in cents, of packets in
	// campaigns started through the classic /yaohongbao endpoint.
	AmountMin, AmountMax uint32
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// Monitor is the address of a `hongbao monitor` to push a sample to
	// every second ("" = none); Name is this process's name there
	// (default "server").
	Monitor, Name string
	// Now is the clock (tests may replace it).
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultSets      = 64
	DefaultBudget    = 60000
	DefaultAmountMin = 1
	DefaultAmountMax = 200
)

// ErrBadOptions wraps every validation failure of Options.
var ErrBadOptions = errors.New("server: bad options")

func (o *Options) setDefaults() error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:7000"
	}
	if o.Sets == 0 {
		o.Sets = DefaultSets
	}
	if o.Budget == 0 {
		o.Budget = DefaultBudget
	}
	if o.AmountMin == 0 {
		o.AmountMin = DefaultAmountMin
	}
	if o.AmountMax == 0 {
		o.AmountMax = DefaultAmountMax
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Name == "" {
		o.Name = "server"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case len(o.Secret) == 0 && !o.AllowClassic:
		return fmt.Errorf("%w: a token secret is required unless classic login is allowed", ErrBadOptions)
	case o.Sets < 1 || o.Sets > 1<<16:
		return fmt.Errorf("%w: sets must be in 1..65536, got %d", ErrBadOptions, o.Sets)
	case o.Budget < 1:
		return fmt.Errorf("%w: budget must be positive, got %d", ErrBadOptions, o.Budget)
	case o.AmountMin > o.AmountMax:
		return fmt.Errorf("%w: amount min %d above max %d", ErrBadOptions, o.AmountMin, o.AmountMax)
	case o.Loops < 0:
		return fmt.Errorf("%w: loops must not be negative", ErrBadOptions)
	}
	return nil
}
