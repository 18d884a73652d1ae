package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/live"
)

// streamPing is how often an idle stream sends a comment, so proxies and
// clients see the connection is alive. A variable so tests can shorten it.
var streamPing = 15 * time.Second

// streamWriteTimeout bounds each write of a stream: the server's
// WriteTimeout would end every stream, but a client that stops reading
// with its connection open must not hold the handler forever.
const streamWriteTimeout = 30 * time.Second

// stream serves live readings and alarm changes as server-sent events,
// optionally for one patient (?patient=ID) and some event types
// (?events=alarm: an alarm board need not take every reading). Nothing is replayed: a client
// that connects or reconnects loads current state from the API first. When
// the server drops the subscription (the client fell behind, or shutdown)
// it writes an "error" event with the reason before it ends the response.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) error {
	patient := r.URL.Query().Get("patient")
	if patient != "" {
		if _, err := h.cfg.Store.Patient(r.Context(), patient); err != nil {
			return fmt.Errorf("load patient: %w", err)
		}
	}
	rc := http.NewResponseController(w)
	// A stream outlives the server's WriteTimeout by design; flushEvent
	// sets a deadline per write instead.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("clear write deadline: %w", err)
	}
	var filter func(live.Event) bool
	if patient != "" {
		filter = func(ev live.Event) bool { return ev.Patient == patient }
	}
	types, err := eventTypes(r.URL.Query().Get("events"))
	if err != nil {
		return err
	}
	// Subscribe before answering, so nothing published after the client
	// saw the response is missed.
	sub := h.cfg.Live.SubscribeTypes(types, filter)
	defer sub.Close()

	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // tell nginx-style proxies not to buffer
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	buf.WriteString(": tend live stream\nretry: 3000\n\n")
	if err := flushEvent(w, rc, &buf); err != nil {
		return nil // the client went away
	}

	ping := time.NewTicker(streamPing)
	defer ping.Stop()
	var id uint64
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-ping.C:
			buf.WriteString(": ping\n\n")
		case ev, ok := <-sub.C():
			if !ok {
				reason, _ := json.Marshal(map[string]string{"reason": sub.Err().Error()})
				writeEvent(&buf, "error", 0, reason)
				flushEvent(w, rc, &buf)
				return nil
			}
			id++
			writeEvent(&buf, ev.Type, id, ev.Data)
		}
		if err := flushEvent(w, rc, &buf); err != nil {
			return nil
		}
	}
}

// writeEvent formats one event; a line break inside data becomes another
// data line, which the client joins back with "\n" (SSE treats CR, LF and
// CRLF alike, so all three are split here).
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

func flushEvent(w http.ResponseWriter, rc *http.ResponseController, buf *bytes.Buffer) error {
	// The deadline is for the socket, so it is wall-clock time.
	if err := rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := w.Write(buf.Bytes())
	buf.Reset()
	if err != nil {
		return err
	}
	return rc.Flush()
}

func noLineBreak(r rune) rune {
	if r == '\n' || r == '\r' {
		return '_'
	}
	return r
}

// eventTypes parses ?events=reading,alarm ("" means both).
func eventTypes(q string) ([]string, error) {
	if q == "" {
		return nil, nil
	}
	var types []string
	for _, t := range strings.Split(q, ",") {
		switch t = strings.TrimSpace(t); t {
		case live.TypeReading, live.TypeAlarm:
			types = append(types, t)
		default:
			return nil, &Error{Status: http.StatusBadRequest, Detail: fmt.Sprintf("events: %q is not reading or alarm", clipParam(t))}
		}
	}
	return types, nil
}

func clipParam(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
