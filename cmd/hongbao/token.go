package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"hongbao/internal/auth"
)

func runToken(_ context.Context, args []string) error {
	var (
		user   uint
		secret string
		ttl    time.Duration
	)
	c := newCommand("token", "Mint a login token (USER.EXPIRY.HMAC) for a user, signed with the server's secret.",
		"hongbao token --secret s3cret --user 42 --ttl 24h")
	c.group("Token", func(fs *flag.FlagSet) {
		fs.UintVar(&user, "user", 0, "user id (1..4294967295)")
		fs.StringVar(&secret, "secret", "", "the server's token secret")
		fs.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	switch {
	case user == 0 || user > 1<<32-1:
		return c.usageErr("--user must be in 1..4294967295")
	case secret == "":
		return c.usageErr("--secret is required")
	case ttl <= 0:
		return c.usageErr("--ttl must be positive")
	}
	s, err := auth.NewSigner([]byte(secret))
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, auth.FormatToken(s.Mint(uint32(user), time.Now().Add(ttl))))
	return nil
}
