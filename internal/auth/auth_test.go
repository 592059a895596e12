package auth_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"hongbao/internal/auth"
	"hongbao/internal/proto"
)

var (
	secret = []byte("s3cret")
	now    = time.Unix(1_700_000_000, 0)
)

func signer(t *testing.T, secret []byte) *auth.Signer {
	t.Helper()
	s, err := auth.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSignerRefusesEmptySecret(t *testing.T) {
	for _, sec := range [][]byte{nil, {}} {
		if _, err := auth.NewSigner(sec); err == nil {
			t.Errorf("NewSigner(%q) accepted", sec)
		}
	}
}

func TestVerify(t *testing.T) {
	s := signer(t, secret)
	other := signer(t, []byte("another secret"))
	good := s.Mint(42, now.Add(time.Hour))
	flip := func(tok proto.Token, byteIdx int, bit uint) proto.Token {
		tok.MAC[byteIdx] ^= 1 << bit
		return tok
	}
	tests := []struct {
		name  string
		tok   proto.Token
		user  uint32
		at    time.Time
		check *auth.Signer
		want  error
	}{
		{"valid", good, 42, now, s, nil},
		{"valid one second before expiry", good, 42, now.Add(time.Hour - time.Second), s, nil},
		{"valid for user 0 (the server, not auth, refuses user 0)", s.Mint(0, now.Add(time.Minute)), 0, now, s, nil},
		{"valid for the largest user", s.Mint(math.MaxUint32, now.Add(time.Minute)), math.MaxUint32, now, s, nil},
		{"forged MAC: first bit", flip(good, 0, 0), 42, now, s, auth.ErrBadSignature},
		{"forged MAC: last bit", flip(good, 31, 7), 42, now, s, auth.ErrBadSignature},
		{"zero MAC", proto.Token{User: 42, Expiry: good.Expiry}, 42, now, s, auth.ErrBadSignature},
		{"expiry extended", proto.Token{User: 42, Expiry: good.Expiry + 1, MAC: good.MAC}, 42, now, s, auth.ErrBadSignature},
		{"token user changed", proto.Token{User: 43, Expiry: good.Expiry, MAC: good.MAC}, 43, now, s, auth.ErrBadSignature},
		{"expired exactly at expiry", good, 42, now.Add(time.Hour), s, auth.ErrExpired},
		{"expired long ago", s.Mint(42, now.Add(-24*time.Hour)), 42, now, s, auth.ErrExpired},
		{"expired before 1970 (zero time)", s.Mint(42, time.Time{}), 42, now, s, auth.ErrExpired},
		{"other user", good, 43, now, s, auth.ErrOtherUser},
		{"other user, token for 0", s.Mint(0, now.Add(time.Hour)), 42, now, s, auth.ErrOtherUser},
		{"wrong secret", good, 42, now, other, auth.ErrBadSignature},
		{"wrong secret and expired", s.Mint(42, now.Add(-time.Hour)), 42, now, other, auth.ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.tok
			err := tc.check.Verify(&tok, tc.user, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSignerReuse: the signer's reused HMAC state does not leak from one
// call into the next.
func TestSignerReuse(t *testing.T) {
	s := signer(t, secret)
	fresh := signer(t, secret)
	for u := uint32(1); u < 200; u++ {
		exp := now.Add(time.Duration(u) * time.Minute)
		tok := s.Mint(u, exp)
		if tok != fresh.Mint(u, exp) {
			t.Fatalf("user %d: a reused signer minted a different token", u)
		}
		if err := s.Verify(&tok, u, now); err != nil {
			t.Fatalf("user %d: %v", u, err)
		}
		if err := s.Verify(&tok, u+1, now); !errors.Is(err, auth.ErrOtherUser) {
			t.Fatalf("user %d: verify as %d: %v", u, u+1, err)
		}
	}
}

func TestTokenTextRoundTrip(t *testing.T) {
	s := signer(t, secret)
	toks := []proto.Token{
		s.Mint(1, now),
		s.Mint(math.MaxUint32, now.Add(time.Hour)),
		{User: 0, Expiry: math.MaxUint64, MAC: [32]byte{0: 0xff, 31: 0x01}},
		{},
	}
	for _, tok := range toks {
		text := auth.FormatToken(tok)
		if parts := strings.Split(text, "."); len(parts) != 3 || len(parts[2]) != 64 {
			t.Fatalf("FormatToken = %q, want USER.EXPIRY.64HEX", text)
		}
		got, err := auth.ParseToken(text)
		if err != nil {
			t.Fatalf("ParseToken(%q): %v", text, err)
		}
		if got != tok {
			t.Fatalf("ParseToken(FormatToken(%+v)) = %+v", tok, got)
		}
	}
	// Upper-case hex is the same token.
	tok := s.Mint(9, now)
	text := auth.FormatToken(tok)
	if got, err := auth.ParseToken(strings.ToUpper(text)); err != nil || got != tok {
		t.Fatalf("upper-case hex: %+v %v", got, err)
	}
}

func TestParseTokenMalformed(t *testing.T) {
	mac := strings.Repeat("ab", 32)
	tests := []string{
		"",
		"1",
		"1.2",
		"1.2." + mac + ".4",
		"..",
		"." + "2." + mac,
		"1.." + mac,
		"1.2.",
		"x.2." + mac,
		"-1.2." + mac,
		"+1.2." + mac,
		" 1.2." + mac,
		"4294967296.2." + mac, // user above uint32
		"1.-2." + mac,
		"1.18446744073709551616." + mac, // expiry above uint64
		"1.2." + mac[:62],               // MAC too short
		"1.2." + mac + "ab",             // MAC too long
		"1.2." + mac[:63],               // odd hex digits
		"1.2." + mac[:62] + "zz",        // not hex
		"1.2." + mac + "\n",
	}
	for _, s := range tests {
		if tok, err := auth.ParseToken(s); !errors.Is(err, auth.ErrMalformed) {
			t.Errorf("ParseToken(%q) = %+v, %v; want ErrMalformed", s, tok, err)
		}
	}
}

// TestMaxTTL: with a maximum lifetime, a token whose expiry lies further
// ahead than now + max (+ ClockSkew) is refused as ErrTooLong, which is
// also an ErrExpired; without one any expiry passes.
func TestMaxTTL(t *testing.T) {
	const day = 24 * time.Hour
	s := signer(t, secret)
	s.SetMaxTTL(auth.DefaultMaxTTL)
	for _, tc := range []struct {
		name string
		exp  time.Time
		want error
	}{
		{"an hour", now.Add(time.Hour), nil},
		{"exactly the maximum", now.Add(auth.DefaultMaxTTL), nil},
		{"the maximum plus the clock skew", now.Add(auth.DefaultMaxTTL + auth.ClockSkew), nil},
		{"one second beyond", now.Add(auth.DefaultMaxTTL + auth.ClockSkew + time.Second), auth.ErrTooLong},
		{"31 days", now.Add(31 * day), auth.ErrTooLong},
		{"a hundred years", now.Add(100 * 365 * day), auth.ErrTooLong},
		{"the largest expiry", time.Unix(1<<62, 0), auth.ErrTooLong},
		{"already expired", now.Add(-time.Second), auth.ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := s.Mint(42, tc.exp)
			err := s.Verify(&tok, 42, now)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if errors.Is(tc.want, auth.ErrTooLong) && !errors.Is(err, auth.ErrExpired) {
				t.Errorf("ErrTooLong is not an ErrExpired")
			}
		})
	}
	// A forged long-lived token is still a bad signature first.
	tok := s.Mint(42, now.Add(100*365*day))
	tok.MAC[0] ^= 1
	if err := s.Verify(&tok, 42, now); !errors.Is(err, auth.ErrBadSignature) {
		t.Errorf("forged: %v", err)
	}
	// No maximum: a hundred years pass.
	s.SetMaxTTL(0)
	tok = s.Mint(42, now.Add(100*365*day))
	if err := s.Verify(&tok, 42, now); err != nil {
		t.Errorf("no maximum: %v", err)
	}
}

func TestCheckTTL(t *testing.T) {
	if err := auth.CheckTTL(24*time.Hour, auth.DefaultMaxTTL); err != nil {
		t.Error(err)
	}
	if err := auth.CheckTTL(auth.DefaultMaxTTL, auth.DefaultMaxTTL); err != nil {
		t.Error(err)
	}
	if err := auth.CheckTTL(auth.DefaultMaxTTL+time.Second, auth.DefaultMaxTTL); !errors.Is(err, auth.ErrTooLong) {
		t.Errorf("above the maximum: %v", err)
	}
}
