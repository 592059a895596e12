package server

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"hongbao/internal/proto"
)

// Options configure a Server. The zero value of a field means its default.
type Options struct {
	// Listen is the TCP address for clients, "127.0.0.1:0" in tests.
	Listen string
	// Admin is the admin HTTP address; "" disables it.
	Admin string
	// AdminToken is the bearer token that pprof and the state-changing and
	// private admin endpoints require (package adminauth); required when
	// Admin is set, unless AdminAuthOff.
	AdminToken string
	// AdminAuthOff serves every admin endpoint without a token; allowed
	// only when Admin is a loopback address.
	AdminAuthOff bool
	// MaxTokenTTL refuses a login token whose expiry is further ahead than
	// now + MaxTokenTTL (answered token_expired; default auth.DefaultMaxTTL).
	MaxTokenTTL time.Duration
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
	// UsersFrom, if non-zero, is the first user of this node (a SET of a
	// multi-node deployment owns users UsersFrom..Users, see package
	// nodes): lower ids are refused, at login and as group recipients.
	UsersFrom uint32
	// Loops is the number of event loops (0: one per CPU but one, at least one).
	Loops int
	// AmountMin and AmountMax are the amount range, in cents, of packets in
	// campaigns started through the classic /yaohongbao endpoint.
	AmountMin, AmountMax uint32
	// DataDir is the ledger's directory. "" runs without a ledger: money
	// movements are answered at once and not durable (tests, --ledger=false).
	DataDir string
	// PacketTTL is how long a group packet may be opened before its
	// remainder goes back to the sender (default 24 h).
	PacketTTL time.Duration
	// Limits of a group send (0: the defaults below).
	MaxPacketCents uint32
	MaxShares      uint32
	MaxRecipients  int
	MinShareCents  uint32
	// LoginTimeout closes a connection not logged in this long after it
	// opened; FrameTimeout one that holds an incomplete frame this long;
	// IdleTimeout a logged-in one that sends nothing this long. Each is
	// counted in whole seconds (rounded up); 0 is the default, a negative
	// value turns the deadline off.
	LoginTimeout, FrameTimeout, IdleTimeout time.Duration
	// Limits of live state (0: the defaults below). A send over them is
	// refused with ResultTooManyPackets or ResultRateLimited and writes
	// nothing; a campaign or generator over them is refused by the admin
	// API with a 4xx.
	//
	// MaxLivePackets bounds the group packets in memory (sent and not yet
	// expired), every sender's; MaxLivePerSender one user's (the system
	// account of the generator is bounded by MaxLivePackets alone).
	MaxLivePackets   int
	MaxLivePerSender int
	// MaxSenderRate is a user's budget of recipients per second: a send to
	// n recipients uses n (it costs n pushes and n recipients of memory).
	MaxSenderRate int
	// MaxCampaigns bounds the campaigns running at once (and, apart, the
	// generators running at once); MaxCampaignRate and MaxCampaignCount
	// bound one campaign's (or generator's) rate and packets.
	MaxCampaigns     int
	MaxCampaignRate  uint32
	MaxCampaignCount uint32
	// MaxWaiting bounds the shake packets issued and waiting in the SETs,
	// over all campaigns: at the bound the issuer waits for takes.
	MaxWaiting int
	// MaxConns is the most client connections held at once; more are
	// closed at once with ReasonOverLimit. 0: what RLIMIT_NOFILE allows
	// after the descriptors kept for the rest (see accept.go); a value above
	// that is refused.
	MaxConns int
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

	DefaultPacketTTL      = 24 * time.Hour
	DefaultMaxPacketCents = 20000
	DefaultMaxShares      = 100
	DefaultMaxRecipients  = 500
	DefaultMinShareCents  = 1

	DefaultLoginTimeout = 10 * time.Second
	DefaultFrameTimeout = 10 * time.Second
	DefaultIdleTimeout  = 5 * time.Minute
	// MaxTimeout bounds each deadline.
	MaxTimeout = 24 * time.Hour
	// A live 3-recipient packet costs about 300 B, a 500-recipient one
	// about 2.5 KB (recipients, opened shares, map and queue entries).
	DefaultMaxLivePackets   = 1_000_000
	DefaultMaxLivePerSender = 1_000
	DefaultMaxSenderRate    = 5_000 // recipients per second: ten packets to 500
	DefaultMaxCampaigns     = 64
	DefaultMaxCampaignRate  = 1_000_000
	DefaultMaxCampaignCount = 1 << 30
	DefaultMaxWaiting       = 1_000_000 // 16 B each in the SETs' queues
)

// ErrBadOptions wraps every validation failure of Options.
var ErrBadOptions = errors.New("server: bad options")

func (o *Options) setDefaults() error {
	o.Listen = cmp.Or(o.Listen, "127.0.0.1:7000")
	o.Sets = cmp.Or(o.Sets, DefaultSets)
	o.Budget = cmp.Or(o.Budget, DefaultBudget)
	o.AmountMin = cmp.Or(o.AmountMin, DefaultAmountMin)
	o.AmountMax = cmp.Or(o.AmountMax, DefaultAmountMax)
	o.PacketTTL = cmp.Or(o.PacketTTL, DefaultPacketTTL)
	o.MaxPacketCents = cmp.Or(o.MaxPacketCents, DefaultMaxPacketCents)
	o.MaxShares = cmp.Or(o.MaxShares, DefaultMaxShares)
	o.MaxRecipients = cmp.Or(o.MaxRecipients, DefaultMaxRecipients)
	o.MinShareCents = cmp.Or(o.MinShareCents, DefaultMinShareCents)
	o.LoginTimeout = cmp.Or(o.LoginTimeout, DefaultLoginTimeout)
	o.FrameTimeout = cmp.Or(o.FrameTimeout, DefaultFrameTimeout)
	o.IdleTimeout = cmp.Or(o.IdleTimeout, DefaultIdleTimeout)
	o.MaxLivePackets = cmp.Or(o.MaxLivePackets, DefaultMaxLivePackets)
	o.MaxLivePerSender = cmp.Or(o.MaxLivePerSender, DefaultMaxLivePerSender)
	o.MaxSenderRate = cmp.Or(o.MaxSenderRate, DefaultMaxSenderRate)
	o.MaxCampaigns = cmp.Or(o.MaxCampaigns, DefaultMaxCampaigns)
	o.MaxCampaignRate = cmp.Or(o.MaxCampaignRate, DefaultMaxCampaignRate)
	o.MaxCampaignCount = cmp.Or(o.MaxCampaignCount, DefaultMaxCampaignCount)
	o.MaxWaiting = cmp.Or(o.MaxWaiting, DefaultMaxWaiting)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Name = cmp.Or(o.Name, "server")
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := o.checkAdmin(); err != nil {
		return err
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
	case o.PacketTTL < 0:
		return fmt.Errorf("%w: packet TTL must be positive", ErrBadOptions)
	case o.MaxRecipients < 1 || o.MaxRecipients > proto.MaxRecipients:
		return fmt.Errorf("%w: max recipients must be in 1..%d, got %d", ErrBadOptions, proto.MaxRecipients, o.MaxRecipients)
	case o.MaxShares > 1<<20:
		return fmt.Errorf("%w: max shares too large", ErrBadOptions)
	case o.UsersFrom > 1 && (o.Users == 0 || o.UsersFrom > o.Users):
		return fmt.Errorf("%w: first user %d above last user %d", ErrBadOptions, o.UsersFrom, o.Users)
	case o.Loops < 0:
		return fmt.Errorf("%w: loops must not be negative", ErrBadOptions)
	case o.LoginTimeout > MaxTimeout || o.FrameTimeout > MaxTimeout || o.IdleTimeout > MaxTimeout:
		return fmt.Errorf("%w: login, frame and idle timeouts must be at most %v", ErrBadOptions, MaxTimeout)
	case o.MaxLivePackets < 0 || o.MaxLivePackets > 1<<31-1 || o.MaxLivePerSender < 0 || o.MaxLivePerSender > 1<<31-1:
		return fmt.Errorf("%w: max live packets (all %d, per sender %d) must be in 1..2147483647", ErrBadOptions, o.MaxLivePackets, o.MaxLivePerSender)
	case o.MaxSenderRate < o.MaxRecipients || o.MaxSenderRate > 1<<31-1:
		return fmt.Errorf("%w: max sender rate %d recipients/s is below max recipients %d (a packet to that many could never be sent)", ErrBadOptions, o.MaxSenderRate, o.MaxRecipients)
	case o.MaxCampaigns < 0 || o.MaxWaiting < 0:
		return fmt.Errorf("%w: max campaigns and max waiting must be positive", ErrBadOptions)
	}
	return nil
}

// seconds is a timeout in whole seconds, rounded up (0 when off).
func seconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	return uint32((d + time.Second - 1) / time.Second)
}
