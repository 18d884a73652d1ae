package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// sseEvent is one server-sent event as dispatched by the event-stream
// format: its type ("message" when the stream named none), the last id
// seen and its data lines joined with "\n".
type sseEvent struct {
	Type string
	ID   string
	Data []byte
}

// maxSSELine bounds one line of the stream, so a server that never sends
// a line break cannot make the client buffer without end.
const maxSSELine = 1 << 20

// sseReader parses a text/event-stream (WHATWG HTML, server-sent events)
// incrementally: comments are skipped, unknown fields ignored, and an event
// is dispatched at a blank line. Lines end in LF or CRLF (Tend writes LF; a
// bare CR is not treated as a line end, which keeps the reader one pass).
type sseReader struct {
	r      *bufio.Reader
	typ    string
	id     string
	data   []byte
	hasDat bool
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 64*1024)}
}

// errSSELineTooLong is returned for a line over maxSSELine.
var errSSELineTooLong = errors.New("server-sent event line too long")

// Next returns the next event. Its Data is valid only until the next call.
// At the end of the stream it returns io.EOF (an event not terminated by a
// blank line is dropped, as the format requires).
func (s *sseReader) Next() (sseEvent, error) {
	for {
		line, err := s.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		if len(line) == 0 {
			if !s.hasDat {
				s.typ = "" // nothing to dispatch; the type is reset all the same
				continue
			}
			ev := sseEvent{Type: s.typ, ID: s.id, Data: s.data}
			if ev.Type == "" {
				ev.Type = "message"
			}
			s.typ, s.data, s.hasDat = "", s.data[:0], false
			return ev, nil
		}
		if line[0] == ':' {
			continue // comment (the server's keep-alive pings)
		}
		field, value, found := bytes.Cut(line, []byte{':'})
		if found && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "event":
			s.typ = string(value)
		case "data":
			if s.hasDat {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			s.hasDat = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				s.id = string(value)
			}
		}
	}
}

// readLine returns one line without its line ending. A long line is
// gathered from several buffer fills; the result is valid until the next
// call.
func (s *sseReader) readLine() ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(long) > maxSSELine {
				return nil, errSSELineTooLong
			}
			line, err = s.r.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF // a partial last line is not a line
		}
		return nil, err
	}
	if len(line) > maxSSELine {
		return nil, errSSELineTooLong
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// alarmChange is the data of an `alarm` event on Tend's live stream, the
// fields the benchmark needs.
type alarmChange struct {
	Action string `json:"action"`
	Alarm  struct {
		ID      string    `json:"id"`
		Patient string    `json:"patient"`
		Rule    string    `json:"rule"`
		Code    string    `json:"code"`
		Value   float64   `json:"value"`
		Raised  time.Time `json:"raised"`
	} `json:"alarm"`
}

// parseAlarmChange decodes the data of an `alarm` event.
func parseAlarmChange(data []byte) (alarmChange, error) {
	var c alarmChange
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("alarm event is not the expected JSON: %w", err)
	}
	if c.Action == "" || c.Alarm.Patient == "" && c.Alarm.Rule == "" {
		return c, errors.New("alarm event has no action, patient or rule")
	}
	return c, nil
}

// streamEnd is the data of the `error` event Tend writes before it ends a
// stream (for example because the client fell behind).
func streamEndReason(data []byte) string {
	var v struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(data, &v) == nil && v.Reason != "" {
		return v.Reason
	}
	return string(data)
}
