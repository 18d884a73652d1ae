package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func pahoOptions(s *Server, clientID, user, pass string) *paho.ClientOptions {
	o := paho.NewClientOptions().
		AddBroker("tcp://" + s.ListenAddr().String()).
		SetClientID(clientID).
		SetUsername(user).
		SetPassword(pass).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetOrderMatters(false)
	return o
}

func pahoConnect(t *testing.T, s *Server, clientID, user, pass string) paho.Client {
	t.Helper()
	c := paho.NewClient(pahoOptions(s, clientID, user, pass))
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func TestConnectCredentials(t *testing.T) {
	s := startServer(t, newRecorder())
	tests := []struct {
		name, user, pass string
		want             error
	}{
		{"good", "dev", "secret", nil},
		{"wrong secret", "dev", "nope", packets.ErrorRefusedBadUsernameOrPassword},
		{"no password", "dev", "", packets.ErrorRefusedBadUsernameOrPassword},
		{"not authorized", "locked", "secret", packets.ErrorRefusedNotAuthorised},
		{"backend down", "broken", "secret", packets.ErrorRefusedServerUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := paho.NewClient(pahoOptions(s, "c-"+tt.user, tt.user, tt.pass))
			tok := c.Connect()
			if !tok.WaitTimeout(5 * time.Second) {
				t.Fatal("connect timed out")
			}
			defer c.Disconnect(0)
			if tt.want == nil && tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			if tt.want != nil && !errors.Is(tok.Error(), tt.want) {
				t.Fatalf("connect error = %v, want %v", tok.Error(), tt.want)
			}
		})
	}
}

func TestConnackCodesRaw(t *testing.T) {
	s := startServer(t, newRecorder())
	tests := []struct {
		name             string
		level            byte
		clientID, u, p   string
		wantFlags, wantC byte
	}{
		{"3.1.1 ok", level311, "a", "dev", "secret", 0, 0},
		{"3.1 ok", level31, "b", "dev", "secret", 0, 0},
		{"3.1.1 bad password", level311, "c", "dev", "x", 0, 4},
		{"3.1.1 not authorized", level311, "d", "locked", "secret", 0, 5},
		{"3.1.1 unavailable", level311, "e", "broken", "secret", 0, 3},
		{"5.0 bad password", level5, "f", "dev", "x", 0, 0x86},
		{"5.0 not authorized", level5, "g", "locked", "secret", 0, 0x87},
		{"5.0 unavailable", level5, "h", "broken", "secret", 0, 0x88},
		{"unknown level", 6, "i", "dev", "secret", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s)
			b := c.connect(tt.level, tt.clientID, tt.u, tt.p, 30)
			if len(b) < 2 || b[0] != tt.wantFlags || b[1] != tt.wantC {
				t.Fatalf("CONNACK body %x, want flags %#x code %#x", b, tt.wantFlags, tt.wantC)
			}
			if tt.wantC != 0 {
				c.expectClosed(2 * time.Second)
			}
		})
	}
}

func TestConnackV5Properties(t *testing.T) {
	s := startServer(t, newRecorder(), func(s *Server) { s.MaxInflight = 7; s.MaxPacketSize = 4096 })
	c := dialRaw(t, s)
	b := c.connect(level5, "", "dev", "secret", 30)
	d := decoder{b: b[2:]}
	var p properties
	d.readProperties(typeConnack, &p)
	if d.err != nil || b[1] != 0 {
		t.Fatalf("CONNACK %x: %v", b, d.err)
	}
	if v, ok := p.u(0x21); !ok || v != 7 {
		t.Errorf("Receive Maximum = %d, %v; want 7", v, ok)
	}
	if v, ok := p.u(0x27); !ok || v != 4096 {
		t.Errorf("Maximum Packet Size = %d, %v; want 4096", v, ok)
	}
	if !strings.HasPrefix(string(p.assignedID), "tend-") {
		t.Errorf("assigned client id %q", p.assignedID)
	}
}

func TestPublishReachesHandler(t *testing.T) {
	rec := newRecorder()
	s := startServer(t, rec)
	c := pahoConnect(t, s, "client-1", "dev", "secret")
	for qos := byte(0); qos <= 2; qos++ {
		payload := []byte(fmt.Sprintf(`[{"n":"8867-4","u":"/min","v":%d}]`, 60+qos))
		payload = append(payload, 0, 0xff) // arbitrary bytes survive
		tok := c.Publish("tend/v1/devices/dev/obs", qos, false, payload)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("qos %d publish: %v", qos, tok.Error())
		}
		got := rec.wait(t)
		want := Message{ClientID: "client-1", Username: "dev", Topic: "tend/v1/devices/dev/obs",
			Payload: payload, QoS: qos, Received: fixedNow, ProtocolVersion: 4}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("qos %d message (-want +got):\n%s", qos, diff)
		}
	}
}

// blockingHandler blocks every call until release is closed or fed.
type blockingHandler struct {
	entered chan Message
	release chan error
}

func (h *blockingHandler) HandlePublish(ctx context.Context, m Message) error {
	h.entered <- m
	select {
	case err := <-h.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestPubackWithheldUntilHandlerReturns(t *testing.T) {
	h := &blockingHandler{entered: make(chan Message, 1), release: make(chan error)}
	s := startServer(t, h)
	c := pahoConnect(t, s, "c", "dev", "secret")
	tok := c.Publish("tend/v1/devices/dev/obs", 1, false, "x")
	<-h.entered
	if tok.WaitTimeout(300 * time.Millisecond) {
		t.Fatal("PUBACK arrived before the handler returned")
	}
	h.release <- nil
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish after release: %v", tok.Error())
	}
}

func TestPubackOrder(t *testing.T) {
	// Handler completion order is 3, 2, 1; acks must still be 1, 2, 3.
	h := &blockingHandler{entered: make(chan Message, 3)}
	releases := map[string]chan error{"1": make(chan error), "2": make(chan error), "3": make(chan error)}
	s := startServer(t, handlerFunc(func(ctx context.Context, m Message) error {
		h.entered <- m
		return <-releases[string(m.Payload)]
	}))
	c := dialRaw(t, s)
	c.connect(level311, "c", "dev", "secret", 0)
	for i := 1; i <= 3; i++ {
		c.send(buildPublish(level311, 1, false, uint16(i), "t", fmt.Sprint(i), nil))
	}
	for range 3 {
		<-h.entered
	}
	releases["3"] <- nil
	releases["2"] <- nil
	if _, _, err := c.read(200 * time.Millisecond); err == nil {
		t.Fatal("an ack was written before the first message was durable")
	}
	releases["1"] <- nil
	for i := 1; i <= 3; i++ {
		hdr, b := c.mustRead()
		if hdr != typePuback<<4 || !bytes.Equal(b, []byte{0, byte(i)}) {
			t.Fatalf("ack %d: header %#x body %x", i, hdr, b)
		}
	}
}

func TestHandlerErrorClosesWithoutAck(t *testing.T) {
	var calls atomic.Int32
	s := startServer(t, handlerFunc(func(context.Context, Message) error {
		if calls.Add(1) == 2 {
			panic("handler bug")
		}
		return errors.New("stream unavailable")
	}))
	for _, level := range []byte{level311, level5} {
		c := dialRaw(t, s)
		c.connect(level, fmt.Sprint("c", level), "dev", "secret", 0)
		c.send(buildPublish(level, 1, false, 9, "t", "x", nil))
		got := c.expectClosed(3 * time.Second)
		for _, p := range got {
			if p[0]>>4 == typePuback {
				t.Fatalf("level %d: PUBACK %x sent despite handler error", level, p)
			}
		}
		if level == level5 && (len(got) != 1 || got[0][0] != typeDisconnect<<4) {
			t.Errorf("level 5: want one DISCONNECT before close, got %x", got)
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("handler calls = %d, want 2", calls.Load())
	}
	// A handler panic above (second call) must not take the server down.
	c := dialRaw(t, s)
	if b := c.connect(level311, "after", "dev", "secret", 0); b[1] != 0 {
		t.Fatalf("CONNACK after handler panic: %x", b)
	}
}

func TestRejectV311IsAcked(t *testing.T) {
	s := startServer(t, handlerFunc(func(context.Context, Message) error {
		return Reject(ReasonPayloadFormatInvalid, "payload is not SenML")
	}))
	c := pahoConnect(t, s, "c", "dev", "secret")
	tok := c.Publish("tend/v1/devices/dev/obs", 1, false, "garbage")
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if !c.IsConnectionOpen() {
		t.Fatal("connection closed after a rejected message")
	}
}

func TestRejectV5ReasonCodes(t *testing.T) {
	s := startServer(t, handlerFunc(func(_ context.Context, m Message) error {
		switch m.Topic {
		case "bad-format":
			return Reject(ReasonPayloadFormatInvalid, "payload is not SenML")
		case "other-device":
			return Reject(ReasonNotAuthorized, "topic belongs to another device")
		case "weird":
			return Reject(0x42, "x")
		}
		return nil
	}))
	c := dialRaw(t, s)
	c.connect(level5, "c", "dev", "secret", 0)
	tests := []struct {
		topic      string
		qos        byte
		wantType   byte
		wantCode   byte
		wantReason string
	}{
		{"bad-format", 1, typePuback, 0x99, "payload is not SenML"},
		{"other-device", 2, typePubrec, 0x87, "topic belongs to another device"},
		{"weird", 1, typePuback, 0x83, "x"},
		{"fine", 1, typePuback, 0, ""},
	}
	for i, tt := range tests {
		c.send(buildPublish(level5, tt.qos, false, uint16(i+1), tt.topic, "p", nil))
		hdr, b := c.mustRead()
		id, code, props, err := decodeAck(int(hdr>>4), b, level5)
		if err != nil || hdr>>4 != tt.wantType || id != uint16(i+1) || code != tt.wantCode || string(props.reasonString) != tt.wantReason {
			t.Errorf("%s: got type %d id %d code %#x reason %q err %v; want type %d code %#x reason %q",
				tt.topic, hdr>>4, id, code, props.reasonString, err, tt.wantType, tt.wantCode, tt.wantReason)
		}
	}
}

func TestV5RequestProblemInfoZeroOmitsReasonString(t *testing.T) {
	s := startServer(t, handlerFunc(func(context.Context, Message) error {
		return Reject(ReasonPayloadFormatInvalid, "bad")
	}))
	c := dialRaw(t, s)
	c.send(buildConnect(level5, "c", "dev", "secret", 0, []byte{0x17, 0}))
	if h, b := c.mustRead(); h != typeConnack<<4 || b[1] != 0 {
		t.Fatalf("CONNACK %#x %x", h, b)
	}
	c.send(buildPublish(level5, 1, false, 1, "t", "p", nil))
	_, b := c.mustRead()
	if want := []byte{0, 1, 0x99, 0}; !bytes.Equal(b, want) {
		t.Fatalf("PUBACK body %x, want %x", b, want)
	}
}

func TestQoS2ResendNotHandledTwice(t *testing.T) {
	rec := newRecorder()
	s := startServer(t, rec)
	c := dialRaw(t, s)
	c.connect(level311, "c", "dev", "secret", 0)
	c.send(buildPublish(level311, 2, false, 7, "t", "once", nil))
	if h, b := c.mustRead(); h != typePubrec<<4 || !bytes.Equal(b, []byte{0, 7}) {
		t.Fatalf("want PUBREC 7, got %#x %x", h, b)
	}
	c.send(buildPublish(level311, 2, true, 7, "t", "once", nil))
	if h, b := c.mustRead(); h != typePubrec<<4 || !bytes.Equal(b, []byte{0, 7}) {
		t.Fatalf("want second PUBREC 7, got %#x %x", h, b)
	}
	c.send([]byte{typePubrel<<4 | 2, 2, 0, 7})
	if h, b := c.mustRead(); h != typePubcomp<<4 || !bytes.Equal(b, []byte{0, 7}) {
		t.Fatalf("want PUBCOMP 7, got %#x %x", h, b)
	}
	// After PUBREL the id is free again: a new message with it is new.
	c.send(buildPublish(level311, 2, false, 7, "t", "twice", nil))
	c.mustRead()
	if n := rec.count(); n != 2 {
		t.Fatalf("handler calls = %d, want 2", n)
	}
}

func TestDisconnectUsername(t *testing.T) {
	s := startServer(t, newRecorder())
	lost := make(chan string, 3)
	connect := func(clientID, user string) paho.Client {
		o := pahoOptions(s, clientID, user, "secret").
			SetConnectionLostHandler(func(paho.Client, error) { lost <- clientID })
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	connect("a1", "dev-a")
	connect("a2", "dev-a")
	b := connect("b1", "dev-b")
	if n := s.Disconnect("dev-a"); n != 2 {
		t.Fatalf("Disconnect = %d, want 2", n)
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case id := <-lost:
			got[id] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("connections lost so far: %v", got)
		}
	}
	if !got["a1"] || !got["a2"] {
		t.Fatalf("lost %v, want a1 and a2", got)
	}
	if tok := b.Publish("t", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("other device affected: %v", tok.Error())
	}
	if n := s.Disconnect("nobody"); n != 0 {
		t.Fatalf("Disconnect(nobody) = %d", n)
	}
}

func TestOversizePacketClosesWithoutReadingBody(t *testing.T) {
	s := startServer(t, newRecorder(), func(s *Server) { s.MaxPacketSize = 1024 })
	for _, level := range []byte{level311, level5} {
		c := dialRaw(t, s)
		c.connect(level, fmt.Sprint("c", level), "dev", "secret", 0)
		// Declare a 1 MiB PUBLISH and send none of it: a server that waited
		// for the body would keep the connection open.
		c.send(append([]byte{typePublish << 4}, appendVarint(nil, 1<<20)...))
		got := c.expectClosed(2 * time.Second)
		if level == level5 {
			if len(got) != 1 || !bytes.Equal(got[0], []byte{0xE0, reasonPacketTooLarge, 0}) {
				t.Fatalf("want DISCONNECT 0x95, got %x", got)
			}
		} else if len(got) != 0 {
			t.Fatalf("3.1.1: unexpected packets %x", got)
		}
	}
}

func TestKeepAlive(t *testing.T) {
	s := startServer(t, newRecorder())
	// Silent client with keep alive 1 s: closed after 1.5 s, not before 1 s.
	c := dialRaw(t, s)
	c.connect(level311, "silent", "dev", "secret", 1)
	start := time.Now()
	c.expectClosed(4 * time.Second)
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed after %v, before the keep-alive allowance", d)
	}
	// Pinging client stays up past the allowance.
	p := dialRaw(t, s)
	p.connect(level311, "pinger", "dev", "secret", 1)
	for range 4 {
		time.Sleep(600 * time.Millisecond)
		p.send([]byte{typePingreq << 4, 0})
		if h, _ := p.mustRead(); h != typePingresp<<4 {
			t.Fatalf("want PINGRESP, got %#x", h)
		}
	}
}

func TestSessionTakeover(t *testing.T) {
	s := startServer(t, newRecorder())
	old := dialRaw(t, s)
	old.connect(level5, "same", "dev", "secret", 0)
	other := dialRaw(t, s)
	other.connect(level311, "same", "dev-x", "secret", 0) // other device: no takeover
	nu := dialRaw(t, s)
	nu.connect(level311, "same", "dev", "secret", 0)
	got := old.expectClosed(3 * time.Second)
	if len(got) != 1 || !bytes.Equal(got[0], []byte{0xE0, reasonSessionTakenOver, 0}) {
		t.Fatalf("old session: want DISCONNECT 0x8E, got %x", got)
	}
	for _, c := range []*rawClient{nu, other} {
		c.send([]byte{typePingreq << 4, 0})
		if h, _ := c.mustRead(); h != typePingresp<<4 {
			t.Fatalf("live session: want PINGRESP, got %#x", h)
		}
	}
}

// TestSubscribeRefused: filters the authorizer does not allow are refused,
// 0x80 in 3.1.1 and 0x87 (not authorized) in 5.0.
func TestSubscribeRefused(t *testing.T) {
	s := startServer(t, newRecorder())
	tests := []struct {
		level byte
		body  []byte
		want  []byte
	}{
		{level311, append(appendStr(append(appendStr([]byte{0, 5}, "a/#"), 1), "b"), 0), []byte{0, 5, 0x80, 0x80}},
		{level5, append(appendStr([]byte{0, 6, 0}, "a/+"), 2), []byte{0, 6, 0, 0x87}},
	}
	for _, tt := range tests {
		c := dialRaw(t, s)
		c.connect(tt.level, "c", "dev", "secret", 0)
		c.send(frame(typeSubscribe<<4|2, tt.body))
		h, b := c.mustRead()
		if h != typeSuback<<4 || !bytes.Equal(b, tt.want) {
			t.Errorf("level %d: SUBACK %#x %x, want %x", tt.level, h, b, tt.want)
		}
		unsub := []byte{0, 8}
		if tt.level == level5 {
			unsub = append(unsub, 0)
		}
		c.send(frame(typeUnsubscribe<<4|2, appendStr(unsub, "a/#")))
		h, b = c.mustRead()
		if h != typeUnsuback<<4 || b[0] != 0 || b[1] != 8 {
			t.Errorf("level %d: UNSUBACK %#x %x", tt.level, h, b)
		}
	}
	// paho sees the refusal too.
	pc := pahoConnect(t, s, "p", "dev", "secret")
	tok := pc.Subscribe("tend/#", 1, nil)
	tok.WaitTimeout(5 * time.Second)
	if codes := tok.(*paho.SubscribeToken).Result(); codes["tend/#"] != 0x80 {
		t.Fatalf("paho subscribe result %v, want 0x80", codes)
	}
}

func TestProtocolViolationsClose(t *testing.T) {
	s := startServer(t, newRecorder(), func(s *Server) { s.ConnectTimeout = 300 * time.Millisecond })
	tests := []struct {
		name     string
		level    byte // 0: send before CONNECT
		packet   []byte
		wantDisc byte // 5.0 DISCONNECT reason, 0 for none expected
	}{
		{"first packet not CONNECT", 0, []byte{typePingreq << 4, 0}, 0},
		{"no CONNECT in time", 0, nil, 0},
		{"wildcard topic", level311, buildPublish(level311, 1, false, 1, "a/+/b", "x", nil), 0},
		{"wildcard topic v5", level5, buildPublish(level5, 1, false, 1, "a/#", "x", nil), reasonTopicNameInvalid},
		{"invalid utf-8 topic", level311, buildPublish(level311, 0, false, 0, "a\xffb", "x", nil), 0},
		{"nul in topic", level311, buildPublish(level311, 0, false, 0, "a\x00b", "x", nil), 0},
		{"topic alias v5", level5, buildPublish(level5, 1, false, 1, "t", "x", []byte{0x23, 0, 1}), reasonTopicAliasInvalid},
		{"qos 3", level311, []byte{0x36, 5, 0, 1, 't', 0, 1}, 0},
		{"packet id 0", level311, buildPublish(level311, 1, false, 0, "t", "x", nil), 0},
		{"second CONNECT", level311, buildConnect(level311, "c", "dev", "secret", 0, nil), 0},
		{"bad SUBSCRIBE flags", level311, frame(typeSubscribe<<4, appendStr([]byte{0, 1}, "a")), 0},
		{"remaining length too long", level311, []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, 0},
		{"unknown v5 property", level5, buildPublish(level5, 1, false, 1, "t", "x", []byte{0x7f, 0}), reasonProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s)
			if tt.level != 0 {
				c.connect(tt.level, "c-"+tt.name, "dev", "secret", 0)
			}
			if tt.packet != nil {
				c.send(tt.packet)
			}
			got := c.expectClosed(2 * time.Second)
			if tt.wantDisc != 0 {
				if len(got) != 1 || !bytes.Equal(got[0], []byte{0xE0, tt.wantDisc, 0}) {
					t.Fatalf("want DISCONNECT %#x, got %x", tt.wantDisc, got)
				}
			} else if len(got) != 0 {
				t.Fatalf("unexpected packets before close: %x", got)
			}
		})
	}
}

func TestV5PublishProperties(t *testing.T) {
	rec := newRecorder()
	s := startServer(t, rec)
	c := dialRaw(t, s)
	c.connect(level5, "c", "dev", "secret", 0)
	props := []byte{0x01, 1, 0x02, 0, 0, 0, 60}
	props = appendStr(append(props, 0x03), "application/senml+cbor")
	props = appendStr(appendStr(append(props, 0x26), "k"), "v")
	props = appendStr(append(props, 0x08), "reply/topic")
	c.send(buildPublish(level5, 1, false, 3, "tend/v1/devices/dev/obs", "\x81\xa0", props))
	if h, b := c.mustRead(); h != typePuback<<4 || !bytes.Equal(b, []byte{0, 3}) {
		t.Fatalf("PUBACK %#x %x", h, b)
	}
	m := rec.wait(t)
	if m.ContentType != "application/senml+cbor" || string(m.Payload) != "\x81\xa0" || m.ProtocolVersion != 5 {
		t.Fatalf("message %+v", m)
	}
}

func TestReceiveMaximumBackpressure(t *testing.T) {
	// With MaxInflight 2 the third PUBLISH is not handed over until the
	// first is acknowledged (in-flight means unacknowledged).
	entered := make(chan string, 3)
	release := map[string]chan error{"1": make(chan error, 1), "2": make(chan error, 1), "3": make(chan error, 1)}
	s := startServer(t, handlerFunc(func(_ context.Context, m Message) error {
		entered <- string(m.Payload)
		return <-release[string(m.Payload)]
	}), func(s *Server) { s.MaxInflight = 2 })
	c := dialRaw(t, s)
	c.connect(level311, "c", "dev", "secret", 0)
	for i := 1; i <= 3; i++ {
		c.send(buildPublish(level311, 1, false, uint16(i), "t", fmt.Sprint(i), nil))
	}
	<-entered
	<-entered
	release["2"] <- nil // done but not acknowledged: still in flight
	select {
	case m := <-entered:
		t.Fatalf("message %s handed over beyond MaxInflight", m)
	case <-time.After(200 * time.Millisecond):
	}
	release["1"] <- nil
	if m := <-entered; m != "3" {
		t.Fatalf("entered %s, want 3", m)
	}
	release["3"] <- nil
	for i := 1; i <= 3; i++ {
		if hdr, b := c.mustRead(); hdr != typePuback<<4 || b[1] != byte(i) {
			t.Fatalf("ack %d: %#x %x", i, hdr, b)
		}
	}
}

func TestCloseEndsConnections(t *testing.T) {
	s := startServer(t, newRecorder())
	c := dialRaw(t, s)
	c.connect(level5, "c", "dev", "secret", 0)
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	got := c.expectClosed(3 * time.Second)
	if len(got) != 1 || got[0][1] != reasonServerShuttingDown {
		t.Fatalf("want DISCONNECT 0x8B, got %x", got)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not return")
	}
}

func TestMosquittoPub(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub not on PATH; install Debian package mosquitto-clients to run this test")
	}
	rec := newRecorder()
	s := startServer(t, rec)
	_, port, _ := net.SplitHostPort(s.ListenAddr().String())
	payload := `[{"bn":"urn:dev:dev:","n":"8867-4","u":"/min","v":72}]`
	for _, version := range []string{"mqttv31", "mqttv311", "mqttv5"} {
		for _, qos := range []string{"0", "1", "2"} {
			t.Run(version+"/qos"+qos, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, "mosquitto_pub", "-h", "127.0.0.1", "-p", port,
					"-u", "dev", "-P", "secret", "-q", qos, "-V", version, "-i", "mp-"+version+qos,
					"-t", "tend/v1/devices/dev/obs", "-m", payload)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("mosquitto_pub: %v\n%s", err, out)
				}
				m := rec.wait(t)
				if string(m.Payload) != payload || m.Username != "dev" || fmt.Sprint(m.QoS) != qos {
					t.Fatalf("handler saw %+v", m)
				}
			})
		}
	}
	// Wrong secret: mosquitto_pub must fail.
	cmd := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-u", "dev", "-P", "wrong",
		"-q", "1", "-t", "tend/v1/devices/dev/obs", "-m", payload)
	if err := cmd.Run(); err == nil {
		t.Fatal("mosquitto_pub succeeded with a wrong secret")
	}
}

func TestPrometheusMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	pm, err := NewPrometheusMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, handlerFunc(func(_ context.Context, m Message) error {
		if m.Topic == "bad" {
			return Reject(ReasonPayloadFormatInvalid, "bad")
		}
		return nil
	}), func(s *Server) { s.Metrics = pm })
	c := dialRaw(t, s)
	c.connect(level311, "c", "dev", "secret", 0)
	c.send(buildPublish(level311, 1, false, 1, "ok", "x", nil))
	c.send(buildPublish(level311, 1, false, 2, "bad", "x", nil))
	c.mustRead()
	c.mustRead()
	r := dialRaw(t, s)
	r.connect(level311, "r", "dev", "wrong", 0)
	r.expectClosed(2 * time.Second)
	// The gauge drops once the refused connection is gone; wait for it.
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := gatherValues(t, reg)
		want := map[string]float64{
			`tend_mqtt_connect_refused_total{code="4"}`:          1,
			`tend_mqtt_connections_open{}`:                       1,
			`tend_mqtt_publish_total{qos="1",result="ok"}`:       1,
			`tend_mqtt_publish_total{qos="1",result="rejected"}`: 1,
		}
		diff := ""
		for k, v := range want {
			if got[k] != v {
				diff += fmt.Sprintf("%s = %v, want %v\n", k, got[k], v)
			}
		}
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(diff)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gatherValues flattens counters and gauges to "name{k="v",...}" -> value.
func gatherValues(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func TestStuckConnectionDoesNotBlockOthers(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	entered := make(chan struct{}, 1)
	s := startServer(t, handlerFunc(func(ctx context.Context, m Message) error {
		if m.Topic == "stuck" {
			entered <- struct{}{}
			select {
			case <-stuck:
			case <-ctx.Done():
			}
		}
		return nil
	}), func(s *Server) { s.MaxInflight = 1 })
	a := dialRaw(t, s)
	a.connect(level311, "a", "dev-a", "secret", 0)
	a.send(buildPublish(level311, 1, false, 1, "stuck", "x", nil))
	a.send(buildPublish(level311, 1, false, 2, "t", "x", nil)) // waits behind the first
	<-entered
	b := dialRaw(t, s)
	b.connect(level311, "b", "dev-b", "secret", 0)
	for i := 1; i <= 3; i++ {
		b.send(buildPublish(level311, 1, false, uint16(i), "t", "x", nil))
		if h, body := b.mustRead(); h != typePuback<<4 || body[1] != byte(i) {
			t.Fatalf("other device: %#x %x", h, body)
		}
	}
}
