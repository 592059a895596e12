package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/ledger"
	"hongbao/internal/limits"
	"hongbao/internal/nodes"
	"hongbao/internal/proto"
	"hongbao/internal/server"
)

func runServer(ctx context.Context, args []string) error {
	var (
		o        server.Options
		secret   secretFlags
		admin    adminFlags
		users    uint
		amin     uint
		amax     uint
		logLevel slog.Level
		batch    bool
		grace    time.Duration
		useLed   bool
		maxCents uint
		maxShare uint
		minCents uint
		node     int
		nodesN   int
		campRate uint
		campCnt  uint
	)
	c := newCommand("server", "Run the access server: holds client connections on event loops, issues shake packets, answers shakes.",
		"HONGBAO_SECRET=s3cret hongbao server --listen 127.0.0.1:7000 --admin 127.0.0.1:7001 --budget 60000")
	c.group("Network", func(fs *flag.FlagSet) {
		fs.StringVar(&o.Listen, "listen", "127.0.0.1:7000", "client TCP address")
		fs.StringVar(&o.Admin, "admin", "127.0.0.1:7001", "admin HTTP address (\"\" to disable)")
		admin.define(fs)
		fs.IntVar(&o.Loops, "loops", 0, "event loops (0: one per CPU but one)")
		fs.IntVar(&o.MaxConns, "max-conns", 0, "most client connections held; more are closed at once as 'server full' (0: the open-file limit less a reserve)")
	})
	c.group("Deadlines (whole seconds; 0 turns one off)", func(fs *flag.FlagSet) {
		fs.DurationVar(&o.LoginTimeout, "login-timeout", server.DefaultLoginTimeout, "close a connection not logged in this long after it opened")
		fs.DurationVar(&o.FrameTimeout, "frame-timeout", server.DefaultFrameTimeout, "close a connection that holds an incomplete frame this long")
		fs.DurationVar(&o.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "close a logged-in connection that sends nothing this long (clients ping before it)")
	})
	c.group("Login", func(fs *flag.FlagSet) {
		secret.define(fs, "HMAC secret of login tokens (see 'hongbao token')")
		fs.DurationVar(&o.MaxTokenTTL, "max-token-ttl", auth.DefaultMaxTTL, "refuse a login token whose expiry is further ahead than this")
		fs.BoolVar(&o.AllowClassic, "allow-classic", false, "accept the classic bare user-id login (no token)")
		fs.UintVar(&users, "users", 0, "refuse user ids above this (0: no limit)")
	})
	c.group("Nodes (SETs of a multi-process deployment)", func(fs *flag.FlagSet) {
		fs.IntVar(&nodesN, "nodes", 1, "M, the number of server processes the --users are spread over (contiguous ranges, package nodes)")
		fs.IntVar(&node, "node", 0, "K, this process's node in 0..M-1: it serves only its users and refuses the others")
	})
	c.group("Red packets", func(fs *flag.FlagSet) {
		fs.IntVar(&o.Sets, "sets", server.DefaultSets, "user partitions (SETs), each with its own lock and packet queue")
		fs.IntVar(&o.Budget, "budget", server.DefaultBudget, "admitted shakes per second; beyond it shakes are answered 'overloaded'")
		fs.UintVar(&amin, "amount-min", server.DefaultAmountMin, "smallest packet, cents (classic /yaohongbao campaigns)")
		fs.UintVar(&amax, "amount-max", server.DefaultAmountMax, "largest packet, cents (classic /yaohongbao campaigns)")
	})
	c.group("Group packets and ledger", func(fs *flag.FlagSet) {
		fs.StringVar(&o.DataDir, "data-dir", "./hongbao-data", "the ledger's directory (created if missing; recovered on start)")
		fs.BoolVar(&useLed, "ledger", true, "keep the durable ledger (--ledger=false: answers are not durable, for comparison)")
		fs.DurationVar(&o.PacketTTL, "packet-ttl", server.DefaultPacketTTL, "a group packet's life; then the rest goes back to the sender")
		fs.UintVar(&maxCents, "max-packet-cents", server.DefaultMaxPacketCents, "largest group packet, cents")
		fs.UintVar(&maxShare, "max-shares", server.DefaultMaxShares, "most shares of a group packet")
		fs.IntVar(&o.MaxRecipients, "max-recipients", server.DefaultMaxRecipients, "most recipients of a group packet")
		fs.UintVar(&minCents, "min-share-cents", server.DefaultMinShareCents, "smallest share, cents")
	})
	c.group("Limits of live state (a send over them is answered 30 or 31; a campaign or generator over them gets a 4xx)", func(fs *flag.FlagSet) {
		fs.IntVar(&o.MaxLivePackets, "max-live-packets", server.DefaultMaxLivePackets, "group packets in memory (sent, not yet expired), all senders'")
		fs.IntVar(&o.MaxLivePerSender, "max-live-per-sender", server.DefaultMaxLivePerSender, "group packets in memory of one sender")
		fs.IntVar(&o.MaxSenderRate, "max-sender-rate", server.DefaultMaxSenderRate, "recipients x packets per second one sender may send to")
		fs.IntVar(&o.MaxCampaigns, "max-campaigns", server.DefaultMaxCampaigns, "campaigns running at once (and generators running at once)")
		fs.UintVar(&campRate, "max-campaign-rate", server.DefaultMaxCampaignRate, "packets per second of one campaign or generator")
		fs.UintVar(&campCnt, "max-campaign-count", server.DefaultMaxCampaignCount, "packets of one campaign or generator")
		fs.IntVar(&o.MaxWaiting, "max-waiting", server.DefaultMaxWaiting, "shake packets issued and waiting in the SETs, all campaigns'; at it the issuer waits")
	})
	c.group("Process", func(fs *flag.FlagSet) {
		fs.TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
		fs.DurationVar(&grace, "shutdown-timeout", 10*time.Second, "how long SIGTERM may take to drain")
		schedBatchFlag(fs, &batch)
	})
	c.group("Monitoring", func(fs *flag.FlagSet) {
		fs.StringVar(&o.Monitor, "monitor", "", "push a sample every second to this 'hongbao monitor' address (/metrics and /debug/pprof are always on --admin)")
		fs.StringVar(&o.Name, "name", "server", "this process's name at the monitor")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	if o.Sets < 1 || o.Budget < 1 {
		return c.usageErr("--sets and --budget must be at least 1")
	}
	if users > 1<<32-1 || amin > 1<<32-1 || amax > 1<<32-1 {
		return c.usageErr("--users, --amount-min and --amount-max must fit in 32 bits")
	}
	if maxCents < 1 || maxCents > 1<<32-1 || maxShare < 1 || maxShare > 1<<20 || minCents < 1 || minCents > 1<<32-1 {
		return c.usageErr("--max-packet-cents, --max-shares and --min-share-cents must be positive 32-bit numbers")
	}
	if o.MaxRecipients < 1 || o.MaxRecipients > proto.MaxRecipients {
		return c.usageErr("--max-recipients must be in 1..%d", proto.MaxRecipients)
	}
	if o.PacketTTL <= 0 {
		return c.usageErr("--packet-ttl must be positive")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
	}{{"--login-timeout", &o.LoginTimeout}, {"--frame-timeout", &o.FrameTimeout}, {"--idle-timeout", &o.IdleTimeout}} {
		switch {
		case *d.v == 0:
			*d.v = -1 // off (Options' zero is the default)
		case *d.v < time.Second || *d.v > server.MaxTimeout:
			return c.usageErr("%s must be 0 (off) or between 1s and %v, got %v", d.name, server.MaxTimeout, *d.v)
		}
	}
	if o.MaxTokenTTL <= 0 {
		return c.usageErr("--max-token-ttl must be positive")
	}
	tokenDir := o.DataDir // a generated admin token goes there, with or without the ledger
	if o.MaxLivePackets < 1 || o.MaxLivePerSender < 1 || o.MaxCampaigns < 1 || o.MaxWaiting < 1 ||
		o.MaxLivePackets > 1<<31-1 || o.MaxLivePerSender > 1<<31-1 {
		return c.usageErr("--max-live-packets, --max-live-per-sender, --max-campaigns and --max-waiting must be positive 32-bit numbers")
	}
	if o.MaxSenderRate < o.MaxRecipients || o.MaxSenderRate > 1<<31-1 {
		return c.usageErr("--max-sender-rate must be at least --max-recipients (%d): a packet to that many could never be sent", o.MaxRecipients)
	}
	if campRate < 1 || campRate > 1<<32-1 || campCnt < 1 || campCnt > 1<<32-1 {
		return c.usageErr("--max-campaign-rate and --max-campaign-count must be positive 32-bit numbers")
	}
	o.MaxCampaignRate, o.MaxCampaignCount = uint32(campRate), uint32(campCnt)
	if !useLed {
		o.DataDir = ""
	} else if o.DataDir == "" {
		return c.usageErr("--data-dir must not be empty (use --ledger=false to run without a ledger)")
	}
	o.MaxPacketCents, o.MaxShares, o.MinShareCents = uint32(maxCents), uint32(maxShare), uint32(minCents)
	o.Users, o.AmountMin, o.AmountMax = uint32(users), uint32(amin), uint32(amax)
	if nodesN != 1 || node != 0 {
		if users == 0 {
			return c.usageErr("--nodes needs --users (the whole run's users)")
		}
		m, err := nodes.New(uint32(users), nodesN)
		if err != nil || node < 0 || node >= nodesN {
			return c.usageErr("--node %d of --nodes %d over %d users: need 0 <= node < nodes <= users", node, nodesN, users)
		}
		o.UsersFrom, o.Users = m.Range(node)
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))
	sec, err := secret.resolve(c, o.Logger)
	if err != nil {
		return err
	}
	o.Secret = []byte(sec)
	if len(o.Secret) == 0 && !o.AllowClassic {
		return c.usageErr("a token secret is required: --secret-file FILE or HONGBAO_SECRET (or --allow-classic)")
	}
	if o.AdminToken, o.AdminAuthOff, err = admin.resolve(c, o.Admin, tokenPathIn(tokenDir, "admin.token"), o.Logger); err != nil {
		return err
	}
	applySchedBatch(batch, o.Logger)
	if _, err := limits.RaiseFiles(); err != nil {
		return err
	}
	s, err := server.New(o)
	if errors.Is(err, ledger.ErrCorrupt) || errors.Is(err, ledger.ErrLocked) {
		return ledgerRefusal(o.DataDir, err)
	} else if err != nil {
		return c.usageErr("%v", err)
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	if err := admin.publish(o.Logger); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		_ = s.Shutdown(sctx)
		return err
	}
	<-ctx.Done()
	o.Logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		return err
	}
	st := s.Stats()
	o.Logger.Info("stopped", "shakes", st.Totals.Shakes, "got", st.Totals.Got, "granted_amount", st.Totals.GrantedAmount,
		"goodbyes", st.Totals.Disconnects[int(proto.ReasonShutdown)-1])
	return nil
}
