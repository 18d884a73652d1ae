// Package mllp is the HL7 v2 listener: MLLP framing (0x0B message 0x1C
// 0x0D, HL7 v2.5.1 Appendix C) over TCP, many messages per connection,
// many connections at once, with read deadlines and a maximum message size.
// What a message means is the Handler's business; this package only frames.
//
// Pipelining: a sender that sends the next message before the previous ACK
// arrived is served too. Messages of one connection are handed to the
// Handler strictly in arrival order, and ACKs are written in that order,
// but up to Window messages may be waiting for durability at once, so a
// pipelining sender shares group commits instead of paying one each.
package mllp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/hl7"
)

const (
	startBlock = 0x0B
	endBlock   = 0x1C
	carriage   = 0x0D
)

// Handler answers HL7 messages. HandleHL7 is called in arrival order for
// the messages of one connection and must do every order-sensitive thing
// (validation, registry changes, starting the commit) before it returns;
// the returned function blocks until the message is durable or refused and
// gives the unframed ACK. msg is valid only during the call. Oversize frames reach the Handler truncated, with
// tooLarge set, so it can answer them with a reason.
type Handler interface {
	HandleHL7(ctx context.Context, msg []byte, tooLarge bool) (ack func() []byte)
}

// Server is the MLLP listener.
type Server struct {
	Addr    string
	Handler Handler
	// MaxMessage bounds one message in bytes (default 1 MiB). A larger one
	// is read to its end and discarded, and answered with a rejection.
	MaxMessage int
	// IdleTimeout closes a connection that sends nothing for this long
	// (default 5 minutes); ReadTimeout bounds how long one message may take
	// to arrive once it started (default 30 s); WriteTimeout bounds one ACK
	// write (default 30 s).
	IdleTimeout, ReadTimeout, WriteTimeout time.Duration
	// Window is how many messages of one connection may await durability
	// at once (default 64).
	Window int
	// MaxConns bounds concurrent connections (default 1024); more are
	// closed at once.
	MaxConns int
	Logger   *slog.Logger
	Now      func() time.Time // ACK times of the fallback handler
	// TLSConfig, when set, makes the listener speak MLLP over TLS only;
	// the handshake must complete within ReadTimeout.
	TLSConfig *tls.Config

	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// Start listens on Addr and serves until Close.
func (s *Server) Start(ctx context.Context) error {
	if s.Handler == nil {
		s.Handler = refuseAll{}
	}
	if s.MaxMessage <= 0 {
		s.MaxMessage = 1 << 20
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 5 * time.Minute
	}
	if s.ReadTimeout <= 0 {
		s.ReadTimeout = 30 * time.Second
	}
	if s.WriteTimeout <= 0 {
		s.WriteTimeout = 30 * time.Second
	}
	if s.Window <= 0 {
		s.Window = 64
	}
	if s.MaxConns <= 0 {
		s.MaxConns = 1024
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("mllp listen %s: %w", s.Addr, err)
	}
	if s.TLSConfig != nil {
		ln = tls.NewListener(ln, s.TLSConfig)
	}
	s.ln = ln
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.conns = make(map[net.Conn]struct{})
	s.wg.Add(1)
	go s.accept()
	return nil
}

// ListenAddr is the bound address.
func (s *Server) ListenAddr() net.Addr { return s.ln.Addr() }

// Close stops the listener, closes open connections and waits for their
// handlers. A message whose commit is under way finishes first, so nothing
// acknowledged is lost; its ACK may not reach the sender, who resends, and
// the duplicate is stored once.
func (s *Server) Close() error {
	if s.ln == nil {
		return nil
	}
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.cancel()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if len(s.conns) >= s.MaxConns {
			s.mu.Unlock()
			s.Logger.Warn("mllp connection refused: too many connections", "max", s.MaxConns)
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// serve reads frames and hands them over in order; a writer goroutine
// sends the ACKs in the same order as they become ready.
func (s *Server) serve(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		// Explicitly, so that a slow handshake has the message deadline
		// rather than the idle one.
		c.SetDeadline(time.Now().Add(s.ReadTimeout))
		if err := tc.HandshakeContext(s.ctx); err != nil {
			s.Logger.Debug("mllp TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		c.SetDeadline(time.Time{})
	}
	acks := make(chan func() []byte, s.Window)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		w := bufio.NewWriter(c)
		broken := false
		for ack := range acks {
			b := ack() // always wait, so no commit outlives the connection unobserved
			if broken {
				continue
			}
			c.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
			w.WriteByte(startBlock)
			w.Write(b)
			w.WriteByte(endBlock)
			w.WriteByte(carriage)
			// Flush at once: the next ACK may wait for a commit, and this
			// one must not wait with it.
			if err := w.Flush(); err != nil {
				broken = true
				c.Close() // unblocks the reader
			}
		}
		w.Flush()
	}()
	defer func() {
		close(acks)
		<-writerDone
	}()
	r := &frameReader{r: bufio.NewReaderSize(c, 64<<10), max: s.MaxMessage}
	for {
		c.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		msg, tooLarge, err := r.next(func() { c.SetReadDeadline(time.Now().Add(s.ReadTimeout)) })
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.Logger.Debug("mllp connection closed", "remote", c.RemoteAddr().String(), "err", err)
			}
			return
		}
		acks <- s.handle(msg, tooLarge)
	}
}

// handle calls the Handler; a panic in it (a bug) costs that message an
// AR, never the process or the other connections.
func (s *Server) handle(msg []byte, tooLarge bool) (ack func() []byte) {
	refuse := func(v any) func() []byte {
		s.Logger.Error("mllp handler panicked", "panic", fmt.Sprint(v))
		ack := hl7.AckUnparsed(msg, hl7.AR, []*hl7.Error{{Code: hl7.ErrInternal,
			Msg: "Tend failed to process the message; nothing was acknowledged as stored"}}, "TEND", time.Now().UTC())
		return func() []byte { return ack }
	}
	defer func() {
		if v := recover(); v != nil {
			ack = refuse(v)
		}
	}()
	inner := s.Handler.HandleHL7(s.ctx, msg, tooLarge)
	return func() (b []byte) {
		defer func() {
			if v := recover(); v != nil {
				b = refuse(v)()
			}
		}()
		return inner()
	}
}

// frameReader reads MLLP frames from a stream.
type frameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// ErrFraming is returned for a frame whose end block is not followed by a
// carriage return: the stream can no longer be trusted to be in step.
var ErrFraming = errors.New("mllp: end block not followed by carriage return")

// next returns the next message. Bytes between frames (stray newlines,
// keep-alive noise) are skipped. started is called once the start block is
// seen, so the caller can switch from an idle to a per-message deadline. A
// message over max bytes is read to its end and returned cut to max bytes
// with tooLarge set. The returned slice is valid until the next call.
func (f *frameReader) next(started func()) (msg []byte, tooLarge bool, err error) {
	for {
		b, err := f.r.ReadByte()
		if err != nil {
			return nil, false, err
		}
		if b == startBlock {
			break
		}
	}
	if started != nil {
		started()
	}
	f.buf = f.buf[:0]
	total := 0
	for {
		chunk, err := f.r.ReadSlice(endBlock)
		full := errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !full {
			if errors.Is(err, io.EOF) {
				return nil, false, io.ErrUnexpectedEOF
			}
			return nil, false, err
		}
		if !full {
			chunk = chunk[:len(chunk)-1] // the end block
		}
		total += len(chunk)
		if room := f.max - len(f.buf); room > 0 {
			f.buf = append(f.buf, chunk[:min(len(chunk), room)]...)
		}
		if full {
			continue
		}
		next, err := f.r.ReadByte()
		if err != nil {
			return nil, false, err
		}
		if next != carriage {
			return nil, false, ErrFraming
		}
		return f.buf, total > f.max, nil
	}
}

// refuseAll answers every message with a rejection, for a server started
// without a Handler: the sender sees a clear refusal rather than a hang.
type refuseAll struct{}

func (refuseAll) HandleHL7(_ context.Context, msg []byte, _ bool) func() []byte {
	ack := hl7.AckUnparsed(msg, hl7.AR, []*hl7.Error{{Code: hl7.ErrInternal,
		Msg: "HL7 v2 ingest is not configured on this server; nothing was stored"}}, "TEND", time.Now().UTC())
	return func() []byte { return ack }
}
