package mllp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Client sends HL7 messages to one MLLP receiver and reads each answer:
// one message in flight at a time, on one connection that is opened on
// first use and again after any failure. It is safe for concurrent use;
// concurrent Sends are serialised.
type Client struct {
	Addr string      // host:port
	TLS  *tls.Config // nil means plain TCP
	// DialTimeout bounds connecting (default 10 s); AckTimeout bounds the
	// wait for the answer to one message (default 30 s).
	DialTimeout, AckTimeout time.Duration
	// MaxAck bounds an answer in bytes (default 1 MiB).
	MaxAck int

	mu   sync.Mutex
	conn net.Conn
	r    *frameReader
	w    *bufio.Writer
}

// ErrNoAnswer wraps every failure to get an answer: connecting, writing,
// a timeout, the receiver closing the connection. The message may or may
// not have reached the receiver.
var ErrNoAnswer = errors.New("mllp: no answer")

// Send frames msg, sends it and returns the receiver's unframed answer.
// On any error the connection is dropped, so the next Send starts afresh
// and cannot read a late answer to this message as the answer to the next.
func (c *Client) Send(ctx context.Context, msg []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.connect(ctx); err != nil {
		return nil, fmt.Errorf("%w: connect to %s: %v", ErrNoAnswer, c.Addr, err)
	}
	ackTimeout := c.AckTimeout
	if ackTimeout <= 0 {
		ackTimeout = 30 * time.Second
	}
	deadline := time.Now().Add(ackTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.conn.SetDeadline(deadline)
	// Cancelling ctx unblocks the read by moving the deadline to now.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Now()) })
	defer stop()
	c.w.WriteByte(startBlock)
	c.w.Write(msg)
	c.w.WriteByte(endBlock)
	c.w.WriteByte(carriage)
	if err := c.w.Flush(); err != nil {
		c.drop()
		return nil, fmt.Errorf("%w: send to %s: %v", ErrNoAnswer, c.Addr, err)
	}
	b, tooLarge, err := c.r.next(nil)
	if err != nil {
		c.drop()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoAnswer, ctx.Err())
		}
		return nil, fmt.Errorf("%w: read answer from %s: %v", ErrNoAnswer, c.Addr, err)
	}
	if tooLarge {
		c.drop()
		return nil, fmt.Errorf("%w: answer from %s is over %d bytes", ErrNoAnswer, c.Addr, c.r.max)
	}
	return append([]byte(nil), b...), nil
}

func (c *Client) connect(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	timeout := c.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	var conn net.Conn
	var err error
	if c.TLS != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: c.TLS}).DialContext(ctx, "tcp", c.Addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", c.Addr)
	}
	if err != nil {
		return err
	}
	maxAck := c.MaxAck
	if maxAck <= 0 {
		maxAck = 1 << 20
	}
	c.conn = conn
	c.r = &frameReader{r: bufio.NewReader(conn), max: maxAck}
	c.w = bufio.NewWriter(conn)
	return nil
}

func (c *Client) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.r, c.w = nil, nil, nil
	}
}

// Close closes the connection, if any; a later Send opens a new one.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
	return nil
}
