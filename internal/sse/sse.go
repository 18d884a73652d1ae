// Package sse writes server-sent events (the HTML EventSource format) to
// an HTTP response: the live API stream and the dashboard's page updates
// share it.
package sse

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// writeWait bounds each write of a stream: the server's WriteTimeout would
// end every stream, but a client that stops reading with its connection
// open must not hold the handler forever.
const writeWait = 30 * time.Second

// Writer queues events and comments and sends them with Flush.
type Writer struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

// Start answers 200 with an event stream and sends a first comment naming
// it, with how soon a client reconnects. A stream outlives the server's
// WriteTimeout by design; Flush sets a deadline per write instead.
func Start(w http.ResponseWriter, name string, retry time.Duration) (*Writer, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("clear write deadline: %w", err)
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // tell nginx-style proxies not to buffer
	w.WriteHeader(http.StatusOK)
	s := &Writer{w: w, rc: rc}
	fmt.Fprintf(&s.buf, ": %s\nretry: %d\n\n", strings.Map(noLineBreak, name), retry.Milliseconds())
	return s, s.Flush()
}

// Event queues one event (id 0: none). A line break inside data becomes
// another data line, which the client joins back with "\n" (SSE treats CR,
// LF and CRLF alike, so all three are split here); one in typ becomes "_".
func (s *Writer) Event(typ string, id uint64, data []byte) { writeEvent(&s.buf, typ, id, data) }

// Comment queues a comment line (a keep-alive ping, for one).
func (s *Writer) Comment(text string) {
	s.buf.WriteString(": " + strings.Map(noLineBreak, text) + "\n\n")
}

// Flush sends what is queued.
func (s *Writer) Flush() error {
	if s.buf.Len() == 0 {
		return nil
	}
	// The deadline is for the socket, so it is wall-clock time.
	if err := s.rc.SetWriteDeadline(time.Now().Add(writeWait)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := s.w.Write(s.buf.Bytes())
	s.buf.Reset()
	if err != nil {
		return err
	}
	return s.rc.Flush()
}

func writeEvent(buf *bytes.Buffer, typ string, id uint64, data []byte) {
	if id > 0 {
		fmt.Fprintf(buf, "id: %d\n", id)
	}
	fmt.Fprintf(buf, "event: %s\n", strings.Map(noLineBreak, typ))
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	data = bytes.ReplaceAll(data, []byte("\r"), []byte("\n"))
	for line := range bytes.Lines(data) {
		buf.WriteString("data: ")
		buf.Write(bytes.TrimSuffix(line, []byte("\n")))
		buf.WriteByte('\n')
	}
	if len(data) == 0 {
		buf.WriteString("data:\n")
	}
	buf.WriteByte('\n')
}

func noLineBreak(r rune) rune {
	if r == '\n' || r == '\r' {
		return '_'
	}
	return r
}
