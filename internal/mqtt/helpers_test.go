package mqtt

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// testAuth accepts user "dev"/"secret" and friends; "locked" is not
// authorized; "broken" makes the backend fail.
type testAuth struct{}

func (testAuth) Authenticate(_ context.Context, _, username string, password []byte) error {
	switch {
	case username == "locked":
		return ErrNotAuthorized
	case username == "broken":
		return errors.New("credential store down")
	case string(password) == "secret":
		return nil
	}
	return ErrBadCredentials
}

// AuthorizeSubscribe lets a device subscribe to its own command topic and,
// to show that a wildcard is allowed only as the exact filter the
// authorizer accepts, to "tend/v1/devices/{user}/#".
func (testAuth) AuthorizeSubscribe(username, filter string) bool {
	return filter == "tend/v1/devices/"+username+"/cmd" || filter == "tend/v1/devices/"+username+"/#"
}

// connectOnlyAuth authenticates like testAuth but has no subscribe hook.
type connectOnlyAuth struct{}

func (connectOnlyAuth) Authenticate(ctx context.Context, clientID, username string, password []byte) error {
	return testAuth{}.Authenticate(ctx, clientID, username, password)
}

// handlerFunc adapts a function to Handler.
type handlerFunc func(context.Context, Message) error

func (f handlerFunc) HandlePublish(ctx context.Context, m Message) error { return f(ctx, m) }

// recorder is a Handler that records every message.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
	got  chan Message
}

func newRecorder() *recorder { return &recorder{got: make(chan Message, 1024)} }

func (r *recorder) HandlePublish(_ context.Context, m Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.got <- m
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) wait(t *testing.T) Message {
	t.Helper()
	select {
	case m := <-r.got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called")
		return Message{}
	}
}

var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// startServer starts a server on 127.0.0.1:0; opts may adjust it first.
func startServer(t testing.TB, h Handler, opts ...func(*Server)) *Server {
	t.Helper()
	s := &Server{
		Addr:    "127.0.0.1:0",
		Auth:    testAuth{},
		Handler: h,
		Logger:  slog.New(slog.DiscardHandler),
		Now:     func() time.Time { return fixedNow },
	}
	for _, o := range opts {
		o(s)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient speaks MQTT byte by byte, for what paho cannot show.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t testing.TB, s *Server) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.ListenAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *rawClient) send(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next packet or an error (io.EOF when closed).
func (c *rawClient) read(timeout time.Duration) (byte, []byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	return readPacket(c.r, 1<<20, nil)
}

func (c *rawClient) mustRead() (byte, []byte) {
	c.t.Helper()
	h, b, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return h, b
}

// expectClosed asserts the server closes the connection within timeout,
// returning any packets received before the close.
func (c *rawClient) expectClosed(timeout time.Duration) [][]byte {
	c.t.Helper()
	var got [][]byte
	deadline := time.Now().Add(timeout)
	for {
		h, b, err := c.read(time.Until(deadline))
		if err == nil {
			got = append(got, append([]byte{h}, b...))
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open after %v", timeout)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
			c.t.Fatalf("unexpected read error: %v", err)
		}
		return got
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// connect sends CONNECT and returns the CONNACK body.
func (c *rawClient) connect(level byte, clientID, user, pass string, keepAlive uint16) []byte {
	c.t.Helper()
	c.send(buildConnect(level, clientID, user, pass, keepAlive, nil))
	h, b := c.mustRead()
	if h != typeConnack<<4 {
		c.t.Fatalf("want CONNACK, got header %#x", h)
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

func frame(header byte, body []byte) []byte {
	b := appendVarint([]byte{header}, len(body))
	return append(b, body...)
}

func buildConnect(level byte, clientID, user, pass string, keepAlive uint16, props []byte) []byte {
	var body []byte
	if level == level31 {
		body = appendStr(body, "MQIsdp")
	} else {
		body = appendStr(body, "MQTT")
	}
	flags := byte(0x02)
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	body = append(body, level, flags, byte(keepAlive>>8), byte(keepAlive))
	if level == level5 {
		body = appendVarint(body, len(props))
		body = append(body, props...)
	}
	body = appendStr(body, clientID)
	if user != "" {
		body = appendStr(body, user)
	}
	if pass != "" {
		body = appendStr(body, pass)
	}
	return frame(typeConnect<<4, body)
}

func buildPublish(level, qos byte, dup bool, packetID uint16, topic, payload string, props []byte) []byte {
	header := byte(typePublish<<4) | qos<<1
	if dup {
		header |= 0x08
	}
	body := appendStr(nil, topic)
	if qos > 0 {
		body = append(body, byte(packetID>>8), byte(packetID))
	}
	if level == level5 {
		body = appendVarint(body, len(props))
		body = append(body, props...)
	}
	body = append(body, payload...)
	return frame(header, body)
}

func buildSubscribe(level byte, packetID uint16, subs ...subscription) []byte {
	body := []byte{byte(packetID >> 8), byte(packetID)}
	if level == level5 {
		body = append(body, 0)
	}
	for _, sub := range subs {
		body = append(appendStr(body, sub.filter), sub.qos)
	}
	return frame(typeSubscribe<<4|2, body)
}

func buildUnsubscribe(level byte, packetID uint16, filters ...string) []byte {
	body := []byte{byte(packetID >> 8), byte(packetID)}
	if level == level5 {
		body = append(body, 0)
	}
	for _, f := range filters {
		body = appendStr(body, f)
	}
	return frame(typeUnsubscribe<<4|2, body)
}

func buildPuback(packetID uint16) []byte {
	return []byte{typePuback << 4, 2, byte(packetID >> 8), byte(packetID)}
}

// subscribe sends SUBSCRIBE and returns the SUBACK return codes.
func (c *rawClient) subscribe(level byte, packetID uint16, subs ...subscription) []byte {
	c.t.Helper()
	c.send(buildSubscribe(level, packetID, subs...))
	h, b := c.mustRead()
	if h != typeSuback<<4 || len(b) < 2 || uint16(b[0])<<8|uint16(b[1]) != packetID {
		c.t.Fatalf("want SUBACK %d, got %#x %x", packetID, h, b)
	}
	b = b[2:]
	if level == level5 {
		b = b[1:] // empty property block
	}
	return b
}

// readPublish reads the next packet and requires a PUBLISH.
func (c *rawClient) readPublish(level byte) publishPacket {
	c.t.Helper()
	h, b := c.mustRead()
	var p publishPacket
	if h>>4 != typePublish {
		c.t.Fatalf("want PUBLISH, got %#x %x", h, b)
	}
	if err := decodePublish(h, b, level, &p); err != nil {
		c.t.Fatalf("decode PUBLISH: %v", err)
	}
	return p
}
