// Package mllp is the HL7 v2 listener (MLLP framing: 0x0B message 0x1C 0x0D).
// Until HL7 ingest lands it answers every message with an AR acknowledgement
// that says so, so an interface engine sees a clear refusal rather than a
// hang, and nothing is acknowledged as stored.
package mllp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

const (
	startBlock = 0x0B
	endBlock   = 0x1C
	carriage   = 0x0D
)

// Server is the MLLP listener.
type Server struct {
	Addr       string
	MaxMessage int // bytes; default 1 MiB
	Logger     *slog.Logger
	Now        func() time.Time

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Start listens on Addr.
func (s *Server) Start(ctx context.Context) error {
	if s.MaxMessage == 0 {
		s.MaxMessage = 1 << 20
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("mllp listen %s: %w", s.Addr, err)
	}
	s.ln = ln
	s.conns = make(map[net.Conn]struct{})
	s.wg.Add(1)
	go s.accept()
	return nil
}

// ListenAddr is the bound address.
func (s *Server) ListenAddr() net.Addr { return s.ln.Addr() }

// Close stops the listener and open connections.
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
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Server) handle(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		msg, err := readFrame(r, s.MaxMessage)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.Logger.Debug("mllp connection closed", "remote", c.RemoteAddr().String(), "err", err)
			}
			return
		}
		ack := buildAR(msg, s.Now().UTC(), "HL7 v2 ingest is not available in this version of Tend; nothing was stored")
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(ack); err != nil {
			return
		}
	}
}

// readFrame reads one MLLP frame; bytes before the start block are skipped.
func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b == startBlock {
			break
		}
	}
	var buf bytes.Buffer
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b == endBlock {
			if next, err := r.ReadByte(); err != nil || next != carriage {
				return nil, errors.New("frame end block not followed by carriage return")
			}
			return buf.Bytes(), nil
		}
		if buf.Len() >= max {
			return nil, fmt.Errorf("message over %d bytes", max)
		}
		buf.WriteByte(b)
	}
}

// buildAR answers msg with an application-reject ACK, echoing MSH-10.
func buildAR(msg []byte, now time.Time, reason string) []byte {
	field, control, version := byte('|'), "", "2.6"
	if len(msg) > 8 && bytes.HasPrefix(msg, []byte("MSH")) {
		field = msg[3]
		seg, _, _ := bytes.Cut(msg, []byte{'\r'})
		seg, _, _ = bytes.Cut(seg, []byte{'\n'})
		fs := bytes.Split(seg, []byte{field})
		if len(fs) > 9 {
			control = sanitize(string(fs[9]), field)
		}
		if len(fs) > 11 && len(fs[11]) > 0 {
			version = sanitize(string(fs[11]), field)
		}
	}
	f := string(field)
	ts := now.Format("20060102150405")
	body := "MSH" + f + "^~\\&" + f + "TEND" + f + "TEND" + f + f + f + ts + f + f + "ACK" + f + "ACK" + ts + f + "P" + f + version + "\r" +
		"MSA" + f + "AR" + f + control + f + reason + "\r"
	return append(append([]byte{startBlock}, body...), endBlock, carriage)
}

// sanitize keeps an echoed field from breaking the ACK's structure.
func sanitize(s string, field byte) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && i < 199; i++ {
		c := s[i]
		if c == field || c == '\r' || c == '\n' || c == startBlock || c == endBlock || c < 0x20 {
			continue
		}
		out = append(out, c)
	}
	return string(out)
}
