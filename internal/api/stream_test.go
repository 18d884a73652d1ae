package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/live"
)

// sseEvent is one parsed server-sent event (or comment block).
type sseEvent struct {
	id, event, data string
	comments        []string
}

type sseClient struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

// connect opens the stream with a real HTTP client; when it returns, the
// server has subscribed to the hub.
func connect(t *testing.T, f *alarmFixture, query, token string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/api/v1/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	c := &sseClient{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
	if first := c.next(); len(first.comments) == 0 || first.event != "" {
		t.Fatalf("stream preamble: %+v", first)
	}
	return c
}

// next reads up to the next blank line.
func (c *sseClient) next() sseEvent {
	c.t.Helper()
	var ev sseEvent
	var data []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("stream ended: %v (partial event %+v)", err, ev)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			ev.data = strings.Join(data, "\n")
			return ev
		case strings.HasPrefix(line, ":"):
			ev.comments = append(ev.comments, strings.TrimSpace(line[1:]))
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(line[5:], " "))
		case strings.HasPrefix(line, "retry: "):
		default:
			c.t.Fatalf("unexpected stream line %q", line)
		}
	}
}

// nextEvent skips ping comments.
func (c *sseClient) nextEvent() sseEvent {
	c.t.Helper()
	for {
		if ev := c.next(); ev.event != "" {
			return ev
		}
	}
}

func TestStreamEvents(t *testing.T) {
	f := newAlarmFixture(t)
	all := connect(t, f, "", adminTok)
	p1 := connect(t, f, "?patient=p1", integTok)
	alarms := connect(t, f, "?events=alarm", integTok)
	if f.hub.Len() != 3 {
		t.Fatalf("%d subscriptions, want 3", f.hub.Len())
	}
	f.hub.Publish(live.Event{Type: live.TypeReading, Patient: "p2", Data: []byte(`{"patient":"p2","code":"8867-4","value":60}`)})
	f.hub.Publish(live.Event{Type: live.TypeReading, Patient: "p1", Data: []byte(`{"patient":"p1","code":"8867-4","value":72}`)})
	f.hub.Publish(live.Event{Type: live.TypeAlarm, Patient: "p1", Data: []byte("{\"id\":\"a1\",\n\"state\":\"active\"}")})

	want := []struct {
		c           *sseClient
		id, event   string
		data        string
		description string
	}{
		{all, "1", "reading", `{"patient":"p2","code":"8867-4","value":60}`, "all: p2 reading"},
		{all, "2", "reading", `{"patient":"p1","code":"8867-4","value":72}`, "all: p1 reading"},
		{all, "3", "alarm", "{\"id\":\"a1\",\n\"state\":\"active\"}", "all: alarm with a line break"},
		{p1, "1", "reading", `{"patient":"p1","code":"8867-4","value":72}`, "p1: its reading only"},
		{p1, "2", "alarm", "{\"id\":\"a1\",\n\"state\":\"active\"}", "p1: alarm"},
		{alarms, "1", "alarm", "{\"id\":\"a1\",\n\"state\":\"active\"}", "events=alarm: no readings"},
	}
	for _, w := range want {
		ev := w.c.nextEvent()
		if ev.id != w.id || ev.event != w.event || ev.data != w.data {
			t.Errorf("%s: got %+v", w.description, ev)
		}
	}

	// Shutdown: the hub closes, the stream says why and ends.
	f.hub.Close()
	ev := p1.nextEvent()
	var reason struct{ Reason string }
	if ev.event != "error" || json.Unmarshal([]byte(ev.data), &reason) != nil || !strings.Contains(reason.Reason, "shutting down") {
		t.Fatalf("closing event: %+v", ev)
	}
	if _, err := p1.r.ReadString('\n'); err == nil {
		t.Fatal("stream still open after its error event")
	}
}

func TestStreamBadEvents(t *testing.T) {
	f := newAlarmFixture(t)
	resp, m := f.do(t, "GET", "/api/v1/stream?events=reading,heartbeat", adminTok, "", "")
	if resp.StatusCode != 400 || !strings.Contains(fmt.Sprint(m["detail"]), "heartbeat") {
		t.Fatalf("unknown event type: %d %v", resp.StatusCode, m)
	}
}

func TestStreamUnknownPatient(t *testing.T) {
	f := newAlarmFixture(t)
	if resp, m := f.do(t, "GET", "/api/v1/stream?patient=nope", adminTok, "", ""); resp.StatusCode != 404 {
		t.Fatalf("unknown patient: %d %v", resp.StatusCode, m)
	}
}

func TestStreamClientGoneUnsubscribes(t *testing.T) {
	f := newAlarmFixture(t)
	c := connect(t, f, "", adminTok)
	c.resp.Body.Close()
	// An idle stream notices through the request context; poll (bounded)
	// for the handler goroutine to finish, as nothing else signals it.
	deadline := time.Now().Add(10 * time.Second)
	for f.hub.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("subscription kept after the client went away")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStreamSlowConsumerIsClosed: a client that stops reading is cut off
// with a reason instead of silently missing events; every event it does
// get is in order with no gap.
func TestStreamSlowConsumerIsClosed(t *testing.T) {
	f := newAlarmFixture(t)
	f.hub.Buffer = 4
	c := connect(t, f, "", adminTok)
	big := []byte(`{"pad":"` + strings.Repeat("x", 64<<10) + `"}`)
	published := 0
	for f.hub.Len() > 0 {
		if published > 100000 {
			t.Fatal("a client that reads nothing was never cut off")
		}
		f.hub.Publish(live.Event{Type: live.TypeReading, Data: big})
		published++
	}
	for n := 1; ; n++ {
		ev := c.nextEvent()
		if ev.event == "error" {
			if !strings.Contains(ev.data, "fell behind") || n == 1 {
				t.Fatalf("after %d events: %+v", n-1, ev)
			}
			if n-1 >= published {
				t.Fatalf("got all %d events yet was cut off", published)
			}
			break
		}
		if ev.id != itoa(n) || ev.data != string(big) {
			t.Fatalf("event %d: id %s, %d bytes", n, ev.id, len(ev.data))
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestStreamPingsAndOutlivesWriteTimeout: an idle stream gets ": ping"
// comments, and a server WriteTimeout does not end it.
func TestStreamPingsAndOutlivesWriteTimeout(t *testing.T) {
	old := streamPing
	streamPing = 20 * time.Millisecond
	t.Cleanup(func() { streamPing = old })
	const writeTimeout = 100 * time.Millisecond
	f := newAlarmFixtureWith(t, func(s *httptest.Server) { s.Config.WriteTimeout = writeTimeout })
	start := time.Now()
	c := connect(t, f, "", adminTok)
	pings := 0
	for time.Since(start) < 3*writeTimeout {
		ev := c.next()
		if ev.event != "" || len(ev.comments) != 1 || ev.comments[0] != "ping" {
			t.Fatalf("idle stream sent %+v", ev)
		}
		pings++
	}
	f.hub.Publish(live.Event{Type: live.TypeAlarm, Data: []byte(`{"id":"a1"}`)})
	if ev := c.nextEvent(); ev.event != "alarm" || ev.id != "1" {
		t.Fatalf("after %d pings and 3× the write timeout: %+v", pings, ev)
	}
	// Other endpoints keep the server's timeout.
	if resp, _ := f.do(t, "GET", "/api/v1/alarms", adminTok, "", ""); resp.StatusCode != 200 {
		t.Fatalf("alarms: %d", resp.StatusCode)
	}
}
