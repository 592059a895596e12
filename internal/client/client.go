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
	// Timeout bounds each read (default 5 s).
	Timeout time.Duration
}

// Dial connects to addr.
func Dial(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Conn{c: c, r: bufio.NewReader(c), Timeout: 5 * time.Second}, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// NetConn exposes the socket, for tests that send raw bytes.
func (c *Conn) NetConn() net.Conn { return c.c }

func now() uint64 { return uint64(time.Now().Unix()) }

// Send writes a raw frame (or any bytes).
func (c *Conn) Send(b []byte) error {
	_, err := c.c.Write(b)
	return err
}

// Read reads the next frame. An error frame from the server is returned
// as a *ServerError.
func (c *Conn) Read() (Frame, error) {
	if err := c.c.SetReadDeadline(time.Now().Add(c.Timeout)); err != nil {
		return Frame{}, err
	}
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
