// Package proto is the hongbao wire format: the classic frame of the
// 10billionhongbaos project (see classic-protocol.md) and our own commands
// under ids >= 0x0100, which reuse the same 12-byte header.
//
// Every frame is big-endian:
//
//	0-1   uint16 length of the whole frame, header included
//	2-3   uint16 command
//	4-11  uint64 sender's clock, Unix seconds
//	12..  payload: a fixed size per command, or, for the few variable
//	      commands (CmdSend, CmdListResp), a fixed part ending in a count
//	      followed by that many uint32 items
//
// Encoding appends to a caller's buffer and decoding reads fields in place,
// so neither allocates per frame.
package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderSize is the size of the frame header.
const HeaderSize = 12

// MaxFrame bounds the length field of any frame we accept. Classic frames are
// at most 52 bytes (the classic reader accepts length-4 in 4..40); the
// largest of ours is a group send to MaxRecipients users.
const MaxFrame = 4096

// MaxRecipients is the most recipients a CmdSend frame can carry.
const MaxRecipients = 1000

// MaxListed is the most packet ids one CmdListResp carries.
const MaxListed = 500

// Cmd is a command id.
type Cmd uint16

// The classic commands, with the original project's names in comments.
const (
	CmdLogin        Cmd = 0x0000 // LoginRequest: userid
	CmdLoginResp    Cmd = 0x0001 // LoginResponse: userid, result
	CmdShake        Cmd = 0x0002 // YaoHongbaoRequest: userid
	CmdShakeResp    Cmd = 0x0003 // YaoHongbaoResponse: userid, result, packet id, amount
	CmdClassicPush  Cmd = 0x0004 // FaHongbaoRequest: packet id, amount, shares, userid1..3
	CmdClassicOpen  Cmd = 0x0005 // GetHongbaoRequest: userid (0: from session), packet id
	CmdClassicOpenR Cmd = 0x0006 // GetHongbaoResponse: packet id, amount
)

// Our own commands. Ids from 0x0100 on never collide with the classic ones.
const (
	// CmdTokenLogin logs in with a signed token: userid, then the token
	// (userid, expiry as Unix seconds, HMAC-SHA256). Answered by CmdLoginResp.
	CmdTokenLogin Cmd = 0x0100
	// CmdError is sent by the server before it closes a connection: the
	// reason code and the command that caused it.
	CmdError Cmd = 0x0101
	// CmdPing asks for a CmdPong with the same nonce; either side may send it.
	CmdPing Cmd = 0x0102
	// CmdPong answers CmdPing.
	CmdPong Cmd = 0x0103

	// Group packets, 0x0110-0x011f.

	// CmdSend sends a group packet: total cents, shares, idempotency key
	// (two uint32: high, low), recipient count n, then n recipient ids.
	// Answered by CmdSendResp.
	CmdSend Cmd = 0x0110
	// CmdSendResp: result, packet id (the original one for a repeated
	// idempotency key), idempotency key high, low.
	CmdSendResp Cmd = 0x0111
	// CmdPush tells a recipient of a new group packet: packet id, sender,
	// total cents, shares.
	CmdPush Cmd = 0x0112
	// CmdOpen opens a group packet: packet id. Answered by CmdOpenResp.
	CmdOpen Cmd = 0x0113
	// CmdOpenResp: packet id, result, amount (cents; 0 unless ok or
	// already opened).
	CmdOpenResp Cmd = 0x0114
	// CmdList asks for the packets the user may still open: a nonce.
	CmdList Cmd = 0x0115
	// CmdListResp: the nonce, count n, then n packet ids.
	CmdListResp Cmd = 0x0116
	// CmdRefund tells a sender its packet expired: packet id, refunded cents.
	CmdRefund Cmd = 0x0117
)

// Result codes carried in responses.
const (
	ResultOK         uint32 = 0
	ResultGot        uint32 = 14 // shake: got a packet
	ResultNone       uint32 = 15 // shake: no packet this time
	ResultAllTaken   uint32 = 16 // shake: every packet of every campaign is taken
	ResultOverloaded uint32 = 17 // shake: over the admission budget, try later

	// Group packets (CmdSendResp, CmdOpenResp). A repeated send with the
	// same idempotency key answers ResultOK with the original packet.
	ResultAlreadyOpened uint32 = 20 // open: opened before; the amount is the same as then
	ResultPacketTaken   uint32 = 21 // open: every share is taken
	ResultExpired       uint32 = 22 // open: the packet expired
	ResultNotRecipient  uint32 = 23 // open: the user is not one of its recipients
	ResultUnknownPacket uint32 = 24 // open: no such packet
	ResultBadAmount     uint32 = 25 // send: total zero, negative or above the limit
	ResultBadShares     uint32 = 26 // send: shares outside the limits
	ResultBadRecipients uint32 = 27 // send: no recipients, too many, a bad id, or a duplicate
	ResultTooFewCents   uint32 = 28 // send: less than the minimum share for every share
	ResultLedgerFailed  uint32 = 29 // the ledger could not make the record durable
	// send: the sender, or the server in all, holds as many live packets
	// as allowed; a send succeeds again once one of them expires.
	ResultTooManyPackets uint32 = 30
	// send: over the sender's budget of recipients x packets per second;
	// try again in the next second.
	ResultRateLimited uint32 = 31
	// send: the sender's balance does not cover the packet's total;
	// nothing was recorded.
	ResultInsufficientFunds uint32 = 32
)

// Reason is why the server closed a connection, carried by CmdError.
type Reason uint32

// Reasons. Their values are part of the protocol: append, never renumber.
const (
	ReasonNone           Reason = 0
	ReasonBadLength      Reason = 1  // length field outside [HeaderSize, MaxFrame]
	ReasonUnknownCommand Reason = 2  // command id not known
	ReasonBadPayload     Reason = 3  // payload size wrong for the command (truncated or padded)
	ReasonNotLoggedIn    Reason = 4  // a request before login
	ReasonBadToken       Reason = 5  // token signature does not verify
	ReasonTokenExpired   Reason = 6  // token past its expiry
	ReasonTokenOtherUser Reason = 7  // token minted for another user
	ReasonClassicRefused Reason = 8  // bare user-id login while the server requires tokens
	ReasonAlreadyLogged  Reason = 9  // a second login on the same connection
	ReasonReplaced       Reason = 10 // the same user logged in on another connection
	ReasonShutdown       Reason = 11 // the server is stopping
	ReasonBadUser        Reason = 12 // user id outside the server's range, or another user's id
	ReasonNotForClient   Reason = 13 // a server-to-client command sent by the client
	ReasonSlowReader     Reason = 14 // the client does not read its answers
	ReasonLoginTimeout   Reason = 15 // not logged in within the server's login timeout
	ReasonFrameTimeout   Reason = 16 // an incomplete frame held longer than the server's frame timeout
	ReasonIdleTimeout    Reason = 17 // logged in but silent longer than the server's idle timeout
	ReasonOverLimit      Reason = 18 // the server holds all the connections it may (--max-conns or its open-file limit)
)

var reasonText = [...]string{
	ReasonNone:           "none",
	ReasonBadLength:      "frame length out of range",
	ReasonUnknownCommand: "unknown command",
	ReasonBadPayload:     "payload size does not match the command",
	ReasonNotLoggedIn:    "request before login",
	ReasonBadToken:       "token signature invalid",
	ReasonTokenExpired:   "token expired",
	ReasonTokenOtherUser: "token belongs to another user",
	ReasonClassicRefused: "classic login not allowed; log in with a token",
	ReasonAlreadyLogged:  "already logged in on this connection",
	ReasonReplaced:       "replaced by a newer session of the same user",
	ReasonShutdown:       "server shutting down",
	ReasonBadUser:        "user id not served here",
	ReasonNotForClient:   "command is server-to-client only",
	ReasonSlowReader:     "client does not read its answers",
	ReasonLoginTimeout:   "login timeout",
	ReasonFrameTimeout:   "incomplete frame timeout",
	ReasonIdleTimeout:    "idle timeout",
	ReasonOverLimit:      "server full",
}

// NumReasons is one past the highest Reason: reasons are dense from 0.
const NumReasons = 19

var reasonName = [NumReasons]string{
	ReasonNone:           "none",
	ReasonBadLength:      "bad_length",
	ReasonUnknownCommand: "unknown_command",
	ReasonBadPayload:     "bad_payload",
	ReasonNotLoggedIn:    "not_logged_in",
	ReasonBadToken:       "bad_token",
	ReasonTokenExpired:   "token_expired",
	ReasonTokenOtherUser: "token_other_user",
	ReasonClassicRefused: "classic_refused",
	ReasonAlreadyLogged:  "already_logged_in",
	ReasonReplaced:       "replaced",
	ReasonShutdown:       "shutdown",
	ReasonBadUser:        "bad_user",
	ReasonNotForClient:   "not_for_client",
	ReasonSlowReader:     "slow_reader",
	ReasonLoginTimeout:   "login_timeout",
	ReasonFrameTimeout:   "frame_timeout",
	ReasonIdleTimeout:    "idle_timeout",
	ReasonOverLimit:      "over_limit",
}

// Name is the reason's short snake_case name, for metric labels and
// counter keys ("reason_N" for a reason this build does not know).
func (r Reason) Name() string {
	if int(r) < len(reasonName) {
		return reasonName[r]
	}
	return fmt.Sprintf("reason_%d", uint32(r))
}

func (r Reason) String() string {
	if int(r) < len(reasonText) {
		return reasonText[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}

// Error makes a Reason usable as an error.
func (r Reason) Error() string { return r.String() }

// Sentinel decode errors; each maps to the Reason the server sends.
var (
	ErrBadLength      = ReasonBadLength
	ErrUnknownCommand = ReasonUnknownCommand
	ErrBadPayload     = ReasonBadPayload
)

// varPayload describes a variable command: its fixed part (minimum payload)
// and the index of the uint32 count field, the last field of the fixed
// part; count uint32 items follow. ok is false for fixed-size commands.
func varPayload(c Cmd) (fixed, countField, maxCount int, ok bool) {
	switch c {
	case CmdSend:
		return 20, 4, MaxRecipients, true
	case CmdListResp:
		return 8, 1, MaxListed, true
	}
	return 0, 0, 0, false
}

// payloadSize is the fixed payload size of each known fixed-size command,
// the minimum of a variable one; -1 marks an id that is not a command.
func payloadSize(c Cmd) int {
	if fixed, _, _, ok := varPayload(c); ok {
		return fixed
	}
	switch c {
	case CmdLogin, CmdShake:
		return 4
	case CmdLoginResp, CmdClassicOpen, CmdClassicOpenR:
		return 8
	case CmdShakeResp:
		return 16
	case CmdClassicPush:
		return 24
	case CmdTokenLogin:
		return 4 + TokenSize
	case CmdError:
		return 8
	case CmdPing, CmdPong, CmdOpen, CmdList:
		return 4
	case CmdSendResp, CmdPush:
		return 16
	case CmdOpenResp:
		return 12
	case CmdRefund:
		return 8
	}
	return -1
}

// PayloadSize reports the payload size of a known fixed-size command, and
// the fixed part of a variable one (see IsVariable).
func PayloadSize(c Cmd) (int, bool) {
	n := payloadSize(c)
	return n, n >= 0
}

// IsVariable reports whether c carries a count of trailing uint32 items.
func IsVariable(c Cmd) bool {
	_, _, _, ok := varPayload(c)
	return ok
}

// Items returns the trailing uint32 items of a variable command's payload
// (already validated by Parse), aliasing it.
func Items(c Cmd, p []byte) []byte {
	fixed, _, _, ok := varPayload(c)
	if !ok {
		return nil
	}
	return p[fixed:]
}

// TokenSize is the wire size of a token: userid, expiry, HMAC-SHA256.
const TokenSize = 4 + 8 + 32

// Header is a decoded frame header.
type Header struct {
	Len  uint16
	Cmd  Cmd
	Time uint64
}

// PeekLength reads the length field of a frame whose first two bytes are in
// b and checks its range; it is all a reader needs to know how much to wait for.
func PeekLength(b []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(b))
	if n < HeaderSize || n > MaxFrame {
		return n, ErrBadLength
	}
	return n, nil
}

// Parse decodes one complete frame in b (len(b) must equal its length field)
// and validates the command and its payload size. The payload aliases b.
func Parse(b []byte) (Header, []byte, error) {
	if len(b) < HeaderSize {
		return Header{}, nil, ErrBadLength
	}
	h := Header{
		Len:  binary.BigEndian.Uint16(b[0:]),
		Cmd:  Cmd(binary.BigEndian.Uint16(b[2:])),
		Time: binary.BigEndian.Uint64(b[4:]),
	}
	if int(h.Len) != len(b) || h.Len > MaxFrame {
		return h, nil, ErrBadLength
	}
	want := payloadSize(h.Cmd)
	if want < 0 {
		return h, nil, ErrUnknownCommand
	}
	got := int(h.Len) - HeaderSize
	if fixed, countField, maxCount, ok := varPayload(h.Cmd); ok {
		if got < fixed {
			return h, nil, ErrBadPayload
		}
		n := binary.BigEndian.Uint32(b[HeaderSize+4*countField:])
		if n > uint32(maxCount) {
			return h, nil, ErrBadPayload
		}
		want = fixed + 4*int(n)
	}
	if got != want {
		return h, nil, ErrBadPayload
	}
	return h, b[HeaderSize:], nil
}

// U32 returns the i-th uint32 field of a payload.
func U32(p []byte, i int) uint32 { return binary.BigEndian.Uint32(p[4*i:]) }

// AppendFrame appends a frame of command c stamped with time now whose
// payload is the given uint32 fields.
func AppendFrame(dst []byte, c Cmd, now uint64, fields ...uint32) []byte {
	n := HeaderSize + 4*len(fields)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = binary.BigEndian.AppendUint16(dst, uint16(c))
	dst = binary.BigEndian.AppendUint64(dst, now)
	for _, f := range fields {
		dst = binary.BigEndian.AppendUint32(dst, f)
	}
	return dst
}

// AppendSend appends a group send: total cents, shares, idempotency key,
// recipients (at most MaxRecipients).
func AppendSend(dst []byte, now uint64, total, shares uint32, key uint64, to []uint32) []byte {
	n := HeaderSize + 20 + 4*len(to)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = binary.BigEndian.AppendUint16(dst, uint16(CmdSend))
	dst = binary.BigEndian.AppendUint64(dst, now)
	dst = binary.BigEndian.AppendUint32(dst, total)
	dst = binary.BigEndian.AppendUint32(dst, shares)
	dst = binary.BigEndian.AppendUint64(dst, key)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(to)))
	for _, u := range to {
		dst = binary.BigEndian.AppendUint32(dst, u)
	}
	return dst
}

// AppendListResp appends a list answer: the nonce and packet ids (at most
// MaxListed).
func AppendListResp(dst []byte, now uint64, nonce uint32, ids []uint32) []byte {
	n := HeaderSize + 8 + 4*len(ids)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = binary.BigEndian.AppendUint16(dst, uint16(CmdListResp))
	dst = binary.BigEndian.AppendUint64(dst, now)
	dst = binary.BigEndian.AppendUint32(dst, nonce)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(ids)))
	for _, id := range ids {
		dst = binary.BigEndian.AppendUint32(dst, id)
	}
	return dst
}

// U64 returns the uint64 made of uint32 fields i (high) and i+1 (low).
func U64(p []byte, i int) uint64 { return binary.BigEndian.Uint64(p[4*i:]) }

// AppendLogin appends a classic LoginRequest.
func AppendLogin(dst []byte, now uint64, user uint32) []byte {
	return AppendFrame(dst, CmdLogin, now, user)
}

// AppendLoginResp appends a LoginResponse.
func AppendLoginResp(dst []byte, now uint64, user, result uint32) []byte {
	return AppendFrame(dst, CmdLoginResp, now, user, result)
}

// AppendShake appends a shake request.
func AppendShake(dst []byte, now uint64, user uint32) []byte {
	return AppendFrame(dst, CmdShake, now, user)
}

// AppendShakeResp appends a shake response.
func AppendShakeResp(dst []byte, now uint64, user, result, packet, amount uint32) []byte {
	return AppendFrame(dst, CmdShakeResp, now, user, result, packet, amount)
}

// AppendError appends an error frame: why the connection is closed, and
// the command that caused it.
func AppendError(dst []byte, now uint64, r Reason, cause Cmd) []byte {
	return AppendFrame(dst, CmdError, now, uint32(r), uint32(cause))
}

// AppendPing appends a ping (or, with CmdPong, its answer).
func AppendPing(dst []byte, c Cmd, now uint64, nonce uint32) []byte {
	return AppendFrame(dst, c, now, nonce)
}

// Token is a signed login token: user, expiry (Unix seconds), HMAC-SHA256
// of the two under the server's secret. Package auth mints and checks it.
type Token struct {
	User   uint32
	Expiry uint64
	MAC    [32]byte
}

// AppendTokenLogin appends a token login for user.
func AppendTokenLogin(dst []byte, now uint64, user uint32, t *Token) []byte {
	n := HeaderSize + 4 + TokenSize
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = binary.BigEndian.AppendUint16(dst, uint16(CmdTokenLogin))
	dst = binary.BigEndian.AppendUint64(dst, now)
	dst = binary.BigEndian.AppendUint32(dst, user)
	dst = binary.BigEndian.AppendUint32(dst, t.User)
	dst = binary.BigEndian.AppendUint64(dst, t.Expiry)
	return append(dst, t.MAC[:]...)
}

// DecodeTokenLogin reads the payload of a CmdTokenLogin into user and t.
func DecodeTokenLogin(p []byte, t *Token) (user uint32) {
	user = binary.BigEndian.Uint32(p)
	t.User = binary.BigEndian.Uint32(p[4:])
	t.Expiry = binary.BigEndian.Uint64(p[8:])
	copy(t.MAC[:], p[16:48])
	return user
}

// Split cuts the next complete frame off the front of buf. It returns the
// frame and the rest; a nil frame with a nil error means more bytes are needed.
func Split(buf []byte) (frame, rest []byte, err error) {
	if len(buf) < 2 {
		return nil, buf, nil
	}
	n, err := PeekLength(buf)
	if err != nil {
		return nil, buf, err
	}
	if len(buf) < n {
		return nil, buf, nil
	}
	return buf[:n], buf[n:], nil
}

// IsReason reports whether err is the protocol reason r.
func IsReason(err error, r Reason) bool {
	var got Reason
	return errors.As(err, &got) && got == r
}
