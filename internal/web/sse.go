package web

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Live updates: each page's event stream subscribes to the live hub,
// applies events to its own copy of the page's state and, at most every
// coalesce interval, sends the parts that changed, already rendered. A
// burst of readings for one patient becomes one update, and a row never
// needs a query to redraw.
var (
	coalesce     = 100 * time.Millisecond
	ssePing      = 15 * time.Second
	sseWriteWait = 30 * time.Second
)

// sseWriter writes server-sent events and flushes them.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

func startSSE(w http.ResponseWriter) (*sseWriter, error) {
	rc := http.NewResponseController(w)
	// A stream outlives the server's WriteTimeout by design; flush sets a
	// deadline per write instead.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("clear write deadline: %w", err)
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: rc}
	s.buf.WriteString(": tend dashboard\nretry: 2000\n\n")
	return s, s.flush()
}

// event queues one event; every line of data becomes a data line (the
// browser joins them back with "\n"). name is never data from outside.
func (s *sseWriter) event(name string, data []byte) {
	s.buf.WriteString("event: " + name + "\n")
	data = bytes.ReplaceAll(data, []byte("\r"), nil)
	for line := range bytes.Lines(data) {
		s.buf.WriteString("data: ")
		s.buf.Write(bytes.TrimSuffix(line, []byte("\n")))
		s.buf.WriteByte('\n')
	}
	if len(data) == 0 {
		s.buf.WriteString("data:\n")
	}
	s.buf.WriteByte('\n')
}

func (s *sseWriter) comment(text string) { s.buf.WriteString(": " + text + "\n\n") }

func (s *sseWriter) flush() error {
	if s.buf.Len() == 0 {
		return nil
	}
	if err := s.rc.SetWriteDeadline(time.Now().Add(sseWriteWait)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := s.w.Write(s.buf.Bytes())
	s.buf.Reset()
	if err != nil {
		return err
	}
	return s.rc.Flush()
}
