package sse

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestStartAndEvents(t *testing.T) {
	rec := httptest.NewRecorder()
	s, err := Start(rec, "tend test", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Event("alarm", 4, []byte("a\r\nb"))
	s.Comment("ping\nnot a field")
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	want := ": tend test\nretry: 3000\n\nid: 4\nevent: alarm\ndata: a\ndata: b\n\n: ping_not a field\n\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("stream:\n%q\nwant\n%q", got, want)
	}
}

// FuzzEvent: whatever the data and type, one event is framed as exactly
// one event, and a client parsing it (per the SSE spec: CR, LF and CRLF
// end lines) gets the data back with line breaks as LF.
func FuzzEvent(f *testing.F) {
	f.Add("reading", []byte(`{"a":1}`))
	f.Add("alarm", []byte("{\"a\":\r\n1}\r"))
	f.Add("x\ny", []byte("\n\n"))
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		var buf bytes.Buffer
		writeEvent(&buf, typ, 7, data)
		out := buf.String()
		if !strings.HasSuffix(out, "\n\n") || strings.Count(out, "\n\n") != 1 || strings.Contains(out, "\r") {
			t.Fatalf("framing of %q / %q: %q", typ, data, out)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n\n"), "\n") {
			if d, ok := strings.CutPrefix(line, "data:"); ok {
				got = append(got, strings.TrimPrefix(d, " "))
			}
		}
		want := strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\r", "\n")
		want = strings.TrimSuffix(want, "\n") // a final line break ends the last line
		if strings.Join(got, "\n") != want {
			t.Fatalf("data %q came back as %q", data, strings.Join(got, "\n"))
		}
	})
}
