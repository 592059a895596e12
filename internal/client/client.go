// Package client is a simple blocking client of the hongbao protocol, one
// goroutine per connection: for tools, tests and services that hold a few
// connections. The load client, which holds many, is event-driven instead
// (package load).
package client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"hongbao/internal/proto"
)

// ServerError is the reason the server gave in an error frame before
// closing the connection.
type ServerError struct {
	Reason proto.Reason
	Cause  proto.Cmd
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("server closed the connection: %s (command 0x%04x)", e.Reason, uint16(e.Cause))
}

// ErrUnexpected is returned when the server answers with another command
// than the one expected.
var ErrUnexpected = errors.New("unexpected frame")

// Frame is a received frame; Payload is only valid until the next read.
type Frame struct {
	proto.Header
	Payload []byte
}

// Field returns the i-th uint32 of the payload.
func (f Frame) Field(i int) uint32 { return proto.U32(f.Payload, i) }

// Conn is one connection to a server.
type Conn struct {
	c    net.Conn
	r    *bufio.Reader
	buf  []byte
	in   [proto.MaxFrame]byte
	User uint32
	// pushes and refunds received while waiting for another answer
	pushes  []Push
	refunds []Refund
	// Timeout bounds each read (default 5 s).
	Timeout time.Duration

	// Keep-alive: wmu keeps the timer's pings and the caller's writes
	// whole; lastTx is when the last write was made (Unix ns).
	wmu       sync.Mutex
	lastTx    atomic.Int64
	keepAlive time.Duration // guarded by wmu
	kaTimer   *time.Timer   // guarded by wmu
}

// DefaultKeepAlive is how long a Conn may send nothing before it pings the
// server: a third of the server's default idle timeout (5 minutes), after
// which the server closes a silent logged-in connection.
const DefaultKeepAlive = 100 * time.Second

// keepAliveNonce marks the keep-alive pings: Read drops their pongs.
const keepAliveNonce uint32 = 0x6b61_6c76 // "kalv"

// Dial connects to addr. The connection pings the server after
// DefaultKeepAlive of silence (see SetKeepAlive).
func Dial(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	cn := &Conn{c: c, r: bufio.NewReader(c), Timeout: 5 * time.Second}
	cn.SetKeepAlive(DefaultKeepAlive)
	return cn, nil
}

// SetKeepAlive makes the connection ping the server whenever it has sent
// nothing for d, so that the server's idle timeout does not close it while
// the caller only waits for pushes; d <= 0 turns that off. The pongs are
// not returned by Read.
func (c *Conn) SetKeepAlive(d time.Duration) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.keepAlive = d
	if c.kaTimer != nil {
		c.kaTimer.Stop()
		c.kaTimer = nil
	}
	if d > 0 {
		c.lastTx.Store(time.Now().UnixNano())
		c.kaTimer = time.AfterFunc(d, c.ping)
	}
}

// ping runs on the keep-alive timer: it pings if nothing was sent for the
// keep-alive period and sets the timer for the next check.
func (c *Conn) ping() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.kaTimer == nil {
		return // turned off or closed meanwhile
	}
	wait := c.keepAlive - time.Duration(time.Now().UnixNano()-c.lastTx.Load())
	if wait <= 0 {
		// A failed write means the connection is gone: the caller's next
		// read or write reports it.
		if _, err := c.c.Write(proto.AppendPing(nil, proto.CmdPing, now(), keepAliveNonce)); err != nil {
			c.kaTimer = nil
			return
		}
		c.lastTx.Store(time.Now().UnixNano())
		wait = c.keepAlive
	}
	c.kaTimer.Reset(wait)
}

// Close closes the connection.
func (c *Conn) Close() error {
	c.SetKeepAlive(0)
	return c.c.Close()
}

// NetConn exposes the socket, for tests that send raw bytes.
func (c *Conn) NetConn() net.Conn { return c.c }

func now() uint64 { return uint64(time.Now().Unix()) }

// Send writes a raw frame (or any bytes).
func (c *Conn) Send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.c.Write(b)
	c.lastTx.Store(time.Now().UnixNano())
	return err
}

// Read reads the next frame, waiting at most Timeout. An error frame from
// the server is returned as a *ServerError. The pongs to the keep-alive
// pings are skipped.
func (c *Conn) Read() (Frame, error) {
	if err := c.c.SetReadDeadline(time.Now().Add(c.Timeout)); err != nil {
		return Frame{}, err
	}
	for {
		f, err := c.read()
		if err == nil && f.Cmd == proto.CmdPong && f.Field(0) == keepAliveNonce {
			continue
		}
		return f, err
	}
}

func (c *Conn) read() (Frame, error) {
	if _, err := io.ReadFull(c.r, c.in[:2]); err != nil {
		return Frame{}, err
	}
	n, err := proto.PeekLength(c.in[:2])
	if err != nil {
		return Frame{}, err
	}
	if _, err := io.ReadFull(c.r, c.in[2:n]); err != nil {
		return Frame{}, err
	}
	h, p, err := proto.Parse(c.in[:n])
	if err != nil {
		return Frame{}, err
	}
	if h.Cmd == proto.CmdError {
		return Frame{}, &ServerError{Reason: proto.Reason(proto.U32(p, 0)), Cause: proto.Cmd(proto.U32(p, 1))}
	}
	return Frame{Header: h, Payload: p}, nil
}

func (c *Conn) expect(cmd proto.Cmd) (Frame, error) {
	f, err := c.Read()
	if err != nil {
		return f, err
	}
	if f.Cmd != cmd {
		return f, fmt.Errorf("%w: got command 0x%04x, want 0x%04x", ErrUnexpected, uint16(f.Cmd), uint16(cmd))
	}
	return f, nil
}

// LoginToken logs in as user with a token.
func (c *Conn) LoginToken(user uint32, t proto.Token) error {
	c.buf = proto.AppendTokenLogin(c.buf[:0], now(), user, &t)
	return c.login(user)
}

// LoginClassic logs in with the classic bare user id.
func (c *Conn) LoginClassic(user uint32) error {
	c.buf = proto.AppendLogin(c.buf[:0], now(), user)
	return c.login(user)
}

func (c *Conn) login(user uint32) error {
	if err := c.Send(c.buf); err != nil {
		return err
	}
	f, err := c.expect(proto.CmdLoginResp)
	if err != nil {
		return err
	}
	if r := f.Field(1); r != proto.ResultOK {
		return fmt.Errorf("login refused: result %d", r)
	}
	c.User = user
	return nil
}

// ShakeResult is the answer to a shake.
type ShakeResult struct {
	Result, Packet, Amount uint32
}

// Shake sends a shake and waits for its answer.
func (c *Conn) Shake() (ShakeResult, error) {
	if err := c.SendShake(); err != nil {
		return ShakeResult{}, err
	}
	return c.ReadShake()
}

// SendShake sends a shake without waiting (pipelining).
func (c *Conn) SendShake() error {
	c.buf = proto.AppendShake(c.buf[:0], now(), c.User)
	return c.Send(c.buf)
}

// ReadShake reads one shake answer.
func (c *Conn) ReadShake() (ShakeResult, error) {
	f, err := c.expect(proto.CmdShakeResp)
	if err != nil {
		return ShakeResult{}, err
	}
	return ShakeResult{Result: f.Field(1), Packet: f.Field(2), Amount: f.Field(3)}, nil
}

// Push is a group packet pushed to us (CmdPush, or the classic 0x0004
// frame, whose Sender is 0).
type Push struct {
	Packet, Sender, Total, Shares uint32
}

// Refund tells a sender its packet expired with Amount cents left.
type Refund struct {
	Packet, Amount uint32
}

// await reads until a frame of command cmd, keeping pushes and refunds
// that arrive before it (see Pushes and Refunds).
func (c *Conn) await(cmd proto.Cmd) (Frame, error) {
	for {
		f, err := c.Read()
		if err != nil {
			return f, err
		}
		switch {
		case f.Cmd == cmd:
			return f, nil
		case f.Cmd == proto.CmdPush:
			c.pushes = append(c.pushes, Push{Packet: f.Field(0), Sender: f.Field(1), Total: f.Field(2), Shares: f.Field(3)})
		case f.Cmd == proto.CmdClassicPush:
			c.pushes = append(c.pushes, Push{Packet: f.Field(0), Total: f.Field(1), Shares: f.Field(2)})
		case f.Cmd == proto.CmdRefund:
			c.refunds = append(c.refunds, Refund{Packet: f.Field(0), Amount: f.Field(1)})
		default:
			if cmd == anyNotice {
				continue
			}
			return f, fmt.Errorf("%w: got command 0x%04x, want 0x%04x", ErrUnexpected, uint16(f.Cmd), uint16(cmd))
		}
		if cmd == anyNotice {
			return f, nil
		}
	}
}

// anyNotice makes await return after the next push or refund.
const anyNotice proto.Cmd = 0xffff

// SendResult is the answer to a group send.
type SendResult struct {
	Result, Packet uint32
}

// SendPacket sends a group packet of total cents in shares shares to the
// recipients, with an idempotency key, and waits for the answer.
func (c *Conn) SendPacket(total, shares uint32, key uint64, to []uint32) (SendResult, error) {
	c.buf = proto.AppendSend(c.buf[:0], now(), total, shares, key, to)
	if err := c.Send(c.buf); err != nil {
		return SendResult{}, err
	}
	f, err := c.await(proto.CmdSendResp)
	if err != nil {
		return SendResult{}, err
	}
	return SendResult{Result: f.Field(0), Packet: f.Field(1)}, nil
}

// OpenResult is the answer to an open.
type OpenResult struct {
	Packet, Result, Amount uint32
}

// Open opens a group packet and waits for the answer.
func (c *Conn) Open(packet uint32) (OpenResult, error) {
	if err := c.SendOpen(packet); err != nil {
		return OpenResult{}, err
	}
	return c.ReadOpen()
}

// SendOpen sends an open without waiting (pipelining).
func (c *Conn) SendOpen(packet uint32) error {
	c.buf = proto.AppendFrame(c.buf[:0], proto.CmdOpen, now(), packet)
	return c.Send(c.buf)
}

// ReadOpen reads one open answer.
func (c *Conn) ReadOpen() (OpenResult, error) {
	f, err := c.await(proto.CmdOpenResp)
	if err != nil {
		return OpenResult{}, err
	}
	return OpenResult{Packet: f.Field(0), Result: f.Field(1), Amount: f.Field(2)}, nil
}

// OpenClassic opens a pushed packet the classic way (userid 0) and returns
// the amount (0 for any refusal).
func (c *Conn) OpenClassic(packet uint32) (uint32, error) {
	c.buf = proto.AppendFrame(c.buf[:0], proto.CmdClassicOpen, now(), 0, packet)
	if err := c.Send(c.buf); err != nil {
		return 0, err
	}
	f, err := c.await(proto.CmdClassicOpenR)
	if err != nil {
		return 0, err
	}
	return f.Field(1), nil
}

// List returns the packets we may still open.
func (c *Conn) List() ([]uint32, error) {
	c.buf = proto.AppendFrame(c.buf[:0], proto.CmdList, now(), 1)
	if err := c.Send(c.buf); err != nil {
		return nil, err
	}
	f, err := c.await(proto.CmdListResp)
	if err != nil {
		return nil, err
	}
	items := proto.Items(proto.CmdListResp, f.Payload)
	out := make([]uint32, len(items)/4)
	for i := range out {
		out[i] = proto.U32(items, i)
	}
	return out, nil
}

// ReadPush returns the oldest push received, reading until one arrives.
func (c *Conn) ReadPush() (Push, error) {
	for len(c.pushes) == 0 {
		if _, err := c.await(anyNotice); err != nil {
			return Push{}, err
		}
	}
	p := c.pushes[0]
	c.pushes = c.pushes[1:]
	return p, nil
}

// ReadRefund returns the oldest refund notice, reading until one arrives.
func (c *Conn) ReadRefund() (Refund, error) {
	for len(c.refunds) == 0 {
		if _, err := c.await(anyNotice); err != nil {
			return Refund{}, err
		}
	}
	r := c.refunds[0]
	c.refunds = c.refunds[1:]
	return r, nil
}
