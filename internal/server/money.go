package server

import (
	"time"

	"hongbao/internal/money"
)

// The money engine (package money) holds balances, group packets,
// campaigns, generators and the audit; the server gives it the ledger, its
// clocks and a sink to the sessions (group.go), and serves it to clients
// and the admin API. Its types are the server's API too.

// Campaigns and generators.
type (
	CampaignSpec  = money.CampaignSpec
	CampaignInfo  = money.CampaignInfo
	GeneratorSpec = money.GeneratorSpec
	GeneratorInfo = money.GeneratorInfo
	AuditReport   = money.AuditReport
	Transfer      = money.Transfer
)

// Campaign states.
const (
	StateRunning = money.StateRunning
	StateDone    = money.StateDone
	StateStopped = money.StateStopped
)

// Errors of campaigns, generators and the audit.
var (
	ErrBadCampaign      = money.ErrBadCampaign
	ErrNoCampaign       = money.ErrNoCampaign
	ErrTooManyCampaigns = money.ErrTooManyCampaigns
	ErrNoLedger         = money.ErrNoLedger
	// Top-ups and withdrawals.
	ErrBadTransfer       = money.ErrBadTransfer
	ErrInsufficientFunds = money.ErrInsufficientFunds
	ErrKeyReused         = money.ErrKeyReused
	ErrTooManyKeys       = money.ErrTooManyKeys
)

// limits are the engine's limits of these options.
func (o *Options) limits() money.Limits {
	return money.Limits{UsersFrom: o.UsersFrom, Users: o.Users, PacketTTL: o.PacketTTL,
		MaxPacketCents: o.MaxPacketCents, MaxShares: o.MaxShares, MinShareCents: o.MinShareCents, MaxRecipients: o.MaxRecipients,
		MaxLivePackets: o.MaxLivePackets, MaxLivePerSender: o.MaxLivePerSender, MaxSenderRate: o.MaxSenderRate,
		MaxCampaigns: o.MaxCampaigns, MaxCampaignRate: o.MaxCampaignRate, MaxCampaignCount: o.MaxCampaignCount,
		MaxWaiting: o.MaxWaiting, AmountMin: o.AmountMin, AmountMax: o.AmountMax}
}

// clock is the server's time as the engine sees it: Options.Now, and the
// coarse second the ticker keeps (frames are stamped with it).
type clock struct{ s *Server }

func (c clock) Now() time.Time { return c.s.opts.Now() }
func (c clock) Second() uint64 { return c.s.sec.Load() }

// StartCampaign starts a shake campaign.
func (s *Server) StartCampaign(spec CampaignSpec) (CampaignInfo, error) {
	info, err := s.money.StartCampaign(spec)
	if err == nil {
		select {
		case s.kickTick <- struct{}{}:
		default:
		}
	}
	return info, err
}

// StopCampaign stops a running campaign: it issues no more, and its
// packets waiting in the SETs are released (never granted).
func (s *Server) StopCampaign(id uint32) (CampaignInfo, error) { return s.money.StopCampaign(id) }

// Campaigns lists every campaign with its progress.
func (s *Server) Campaigns() []CampaignInfo { return s.money.Campaigns() }

// StartGenerator starts creating group packets from the system account.
func (s *Server) StartGenerator(spec GeneratorSpec) (GeneratorInfo, error) {
	return s.money.StartGenerator(spec)
}

// Generators lists the generators.
func (s *Server) Generators() []GeneratorInfo { return s.money.Generators() }

// Audit checks the ledger against the live state (money.Engine.Audit).
func (s *Server) Audit() (AuditReport, error) { return s.money.Audit() }

// TopUp credits user with cents, once per key (money.Engine.TopUp); it
// returns once the record is durable.
func (s *Server) TopUp(user uint32, cents uint64, key string) (Transfer, error) {
	return s.money.TopUp(user, cents, key)
}

// Withdraw debits user by cents, once per key, refused when the balance
// is short (money.Engine.Withdraw).
func (s *Server) Withdraw(user uint32, cents uint64, key string) (Transfer, error) {
	return s.money.Withdraw(user, cents, key)
}
