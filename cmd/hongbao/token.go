package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"hongbao/internal/auth"
)

func runToken(_ context.Context, args []string) error {
	var (
		user   uint
		secret secretFlags
		ttl    time.Duration
		maxTTL time.Duration
	)
	c := newCommand("token", "Mint a login token (USER.EXPIRY.HMAC) for a user, signed with the server's secret.",
		"HONGBAO_SECRET=s3cret hongbao token --user 42 --ttl 24h   (or --secret-file FILE)")
	c.group("Token", func(fs *flag.FlagSet) {
		fs.UintVar(&user, "user", 0, "user id (1..4294967295)")
		secret.define(fs, "the server's token secret")
		fs.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
		fs.DurationVar(&maxTTL, "max-token-ttl", auth.DefaultMaxTTL, "refuse a --ttl above this (the server's --max-token-ttl: it refuses longer tokens)")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	sec, err := secret.resolve(c, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	switch {
	case user == 0 || user > 1<<32-1:
		return c.usageErr("--user must be in 1..4294967295")
	case sec == "":
		return c.usageErr("the secret is required: --secret-file FILE or HONGBAO_SECRET")
	case ttl <= 0:
		return c.usageErr("--ttl must be positive")
	case maxTTL <= 0:
		return c.usageErr("--max-token-ttl must be positive")
	}
	if err := auth.CheckTTL(ttl, maxTTL); err != nil {
		return c.usageErr("--ttl %v is above the maximum token lifetime %v (--max-token-ttl; a server refuses tokens living longer than its own --max-token-ttl)", ttl, maxTTL)
	}
	s, err := auth.NewSigner([]byte(sec))
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, auth.FormatToken(s.Mint(uint32(user), time.Now().Add(ttl))))
	return nil
}
