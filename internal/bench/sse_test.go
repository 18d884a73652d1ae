package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readAllEvents(t *testing.T, r io.Reader) ([]sseEvent, error) {
	t.Helper()
	s := newSSEReader(r)
	var evs []sseEvent
	for {
		ev, err := s.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return evs, nil
			}
			return evs, err
		}
		ev.Data = bytes.Clone(ev.Data) // valid only until the next call
		evs = append(evs, ev)
	}
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // "type|id|data"
	}{
		{"comment, retry and one event",
			": tend live stream\nretry: 3000\n\nid: 1\nevent: alarm\ndata: {\"a\":1}\n\n",
			[]string{`alarm|1|{"a":1}`}},
		{"multi-line data is joined with LF",
			"event: x\ndata: one\ndata: two\ndata:\n\n", []string{"x||one\ntwo\n"}},
		{"CRLF line ends",
			"id: 7\r\nevent: reading\r\ndata: {}\r\n\r\n", []string{"reading|7|{}"}},
		{"no event field is a message",
			"data: hi\n\n", []string{"message||hi"}},
		{"only one leading space is stripped",
			"data:  two spaces\ndata:none\n\n", []string{"message||" + " two spaces\nnone"}},
		{"type does not leak into the next event",
			"event: alarm\ndata: a\n\ndata: b\n\n", []string{"alarm||a", "message||b"}},
		{"event without data is not dispatched and its type is dropped",
			"event: alarm\n\ndata: b\n\n", []string{"message||b"}},
		{"id persists across events",
			"id: 5\ndata: a\n\ndata: b\n\n", []string{"message|5|a", "message|5|b"}},
		{"unknown fields and a field without colon are ignored",
			"foo: bar\ndata\nevent: e\ndata: x\n\n", []string{"e||\nx"}},
		{"an unterminated last event is dropped",
			"data: a\n\ndata: b\n", []string{"message||a"}},
		{"a long line spans buffer fills",
			"data: " + strings.Repeat("x", 200_000) + "\n\n", []string{"message||" + strings.Repeat("x", 200_000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := readAllEvents(t, strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ev := range evs {
				got = append(got, ev.Type+"|"+ev.ID+"|"+string(ev.Data))
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSSEReaderRefusesEndlessLine(t *testing.T) {
	in := io.MultiReader(strings.NewReader("data: "), strings.NewReader(strings.Repeat("y", maxSSELine+10)), strings.NewReader("\n\n"))
	_, err := readAllEvents(t, in)
	if !errors.Is(err, errSSELineTooLong) {
		t.Fatalf("err = %v, want errSSELineTooLong", err)
	}
}

// TestLiveStreamGolden parses a stream captured from a Tend server while
// two probes raised and cleared sbp-low.
func TestLiveStreamGolden(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "live_stream.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evs, err := readAllEvents(t, f)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%s %s", ev.ID, ev.Type)
		if ev.Type == "alarm" {
			c, err := parseAlarmChange(ev.Data)
			if err != nil {
				t.Fatalf("event %s: %v", ev.ID, err)
			}
			fmt.Fprintf(&b, " %s %s %s value=%g raised=%s", c.Action, c.Alarm.Patient, c.Alarm.Rule, c.Alarm.Value, c.Alarm.Raised.Format("15:04:05.000"))
		}
		b.WriteByte('\n')
	}
	golden := filepath.Join("testdata", "live_stream.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("parsed stream differs from %s (run with -update to accept):\n%s", golden, b.String())
	}
}

func TestParseAlarmChange(t *testing.T) {
	tests := []struct {
		name, data string
		wantErr    bool
		want       string // action patient rule value
	}{
		{"raised", `{"action":"raised","alarm":{"patient":"p1","rule":"sbp-low","value":83,"raised":"2026-11-23T20:29:04.28Z"}}`, false, "raised p1 sbp-low 83"},
		{"system alarm without patient", `{"action":"raised","alarm":{"rule":"ingest-backlog"}}`, false, "raised  ingest-backlog 0"},
		{"not JSON", `{"action":`, true, ""},
		{"no action", `{"alarm":{"patient":"p1","rule":"r"}}`, true, ""},
		{"no patient or rule", `{"action":"raised","alarm":{}}`, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseAlarmChange([]byte(tt.data))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := fmt.Sprintf("%s %s %s %g", c.Action, c.Alarm.Patient, c.Alarm.Rule, c.Alarm.Value); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStreamEndReason(t *testing.T) {
	if got := streamEndReason([]byte(`{"reason":"live: the subscriber fell behind"}`)); got != "live: the subscriber fell behind" {
		t.Errorf("got %q", got)
	}
	if got := streamEndReason([]byte(`bye`)); got != "bye" {
		t.Errorf("got %q", got)
	}
}

// FuzzSSEReader: any input yields events or an error, never a panic, and
// no more events than it has blank lines.
func FuzzSSEReader(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "live_stream.txt")); err == nil {
		f.Add(b[:min(len(b), 2000)])
	}
	f.Add([]byte("event: alarm\r\ndata: x\r\n\r\n"))
	f.Add([]byte("data\n\n:\n\nid: \x00\ndata: y\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := newSSEReader(bytes.NewReader(in))
		n := 0
		for {
			ev, err := s.Next()
			if err != nil {
				break
			}
			n++
			if ev.Type == "" {
				t.Fatal("event without a type")
			}
			if strings.ContainsAny(ev.Type, "\n") || strings.ContainsAny(ev.ID, "\n\x00") {
				t.Fatalf("line break or NUL in type %q or id %q", ev.Type, ev.ID)
			}
		}
		if blank := bytes.Count(in, []byte("\n\n")) + bytes.Count(in, []byte("\n\r\n")); n > blank {
			t.Fatalf("%d events from input with %d blank lines", n, blank)
		}
	})
}
