// Package auth mints and verifies login tokens: HMAC-SHA256 over the user id
// and an expiry, keyed by the server's secret. A token is bound to one user
// and needs no lookup to verify, so the access server checks it locally.
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"hongbao/internal/proto"
)

// Errors returned by Verify and ParseToken.
var (
	ErrBadSignature = errors.New("token signature invalid")
	ErrExpired      = errors.New("token expired")
	ErrOtherUser    = errors.New("token belongs to another user")
	ErrMalformed    = errors.New("token malformed: want USER.EXPIRY.HEXMAC")
	// ErrTooLong: the token's expiry is further ahead than the maximum
	// lifetime allows. It counts as ErrExpired for callers that only know
	// that one (the server answers it with the token-expired reason).
	ErrTooLong error = tooLong{}
)

type tooLong struct{}

func (tooLong) Error() string        { return "token lifetime above the maximum" }
func (tooLong) Is(target error) bool { return target == ErrExpired }

// DefaultMaxTTL is the longest lifetime of a token unless configured
// (server and `hongbao token` --max-token-ttl): a token that leaks is
// good for at most this long, and no token lives for a hundred years.
const DefaultMaxTTL = 30 * 24 * time.Hour

// ClockSkew is how far beyond now + the maximum lifetime an expiry may lie
// and still be accepted: the minter's clock may run ahead of the server's.
const ClockSkew = time.Minute

// CheckTTL refuses to mint a token living longer than maxTTL.
func CheckTTL(ttl, maxTTL time.Duration) error {
	if maxTTL > 0 && ttl > maxTTL {
		return fmt.Errorf("%w: %v above %v", ErrTooLong, ttl, maxTTL)
	}
	return nil
}

// Signer mints and verifies tokens with one secret. It is not safe for
// concurrent use (it reuses its HMAC state): give each goroutine or event
// loop its own.
type Signer struct {
	mac    hash.Hash
	maxTTL time.Duration // 0: no maximum
	buf    [12]byte
	sum    [32]byte
}

// NewSigner returns a Signer for secret, which must not be empty.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) == 0 {
		return nil, errors.New("auth: empty secret")
	}
	return &Signer{mac: hmac.New(sha256.New, secret)}, nil
}

func (s *Signer) sign(user uint32, expiry uint64) []byte {
	binary.BigEndian.PutUint32(s.buf[0:], user)
	binary.BigEndian.PutUint64(s.buf[4:], expiry)
	s.mac.Reset()
	s.mac.Write(s.buf[:])
	return s.mac.Sum(s.sum[:0])
}

// Mint returns a token for user valid until expiry. An expiry before 1970
// gives an already expired token (expiry 0), not one that wraps to the far
// future.
func (s *Signer) Mint(user uint32, expiry time.Time) proto.Token {
	t := proto.Token{User: user, Expiry: uint64(max(expiry.Unix(), 0))}
	copy(t.MAC[:], s.sign(user, t.Expiry))
	return t
}

// SetMaxTTL makes Verify refuse (ErrTooLong) a token whose expiry is more
// than d (plus ClockSkew) after now; 0 accepts any expiry.
func (s *Signer) SetMaxTTL(d time.Duration) { s.maxTTL = max(d, 0) }

// Verify checks that t is a genuine, unexpired token for user, within the
// maximum lifetime if one is set.
func (s *Signer) Verify(t *proto.Token, user uint32, now time.Time) error {
	if !hmac.Equal(s.sign(t.User, t.Expiry), t.MAC[:]) {
		return ErrBadSignature
	}
	if t.User != user {
		return ErrOtherUser
	}
	if uint64(now.Unix()) >= t.Expiry {
		return ErrExpired
	}
	if s.maxTTL > 0 && t.Expiry > uint64(now.Add(s.maxTTL+ClockSkew).Unix()) {
		return ErrTooLong
	}
	return nil
}

// FormatToken renders a token as USER.EXPIRY.HEXMAC, the text form that
// `hongbao token` prints and clients pass around.
func FormatToken(t proto.Token) string {
	return fmt.Sprintf("%d.%d.%s", t.User, t.Expiry, hex.EncodeToString(t.MAC[:]))
}

// ParseToken reads the text form of a token.
func ParseToken(s string) (proto.Token, error) {
	var t proto.Token
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return t, ErrMalformed
	}
	u, err := strconv.ParseUint(parts[0], 10, 32)
	if err != nil {
		return t, fmt.Errorf("%w: user: %v", ErrMalformed, err)
	}
	e, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return t, fmt.Errorf("%w: expiry: %v", ErrMalformed, err)
	}
	m, err := hex.DecodeString(parts[2])
	if err != nil || len(m) != 32 {
		return t, fmt.Errorf("%w: mac must be 64 hex digits", ErrMalformed)
	}
	t.User, t.Expiry = uint32(u), e
	copy(t.MAC[:], m)
	return t, nil
}
