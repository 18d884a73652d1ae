package mqtt

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
)

const cmdTopic = "tend/v1/devices/dev/cmd"

func TestSubackCodes(t *testing.T) {
	tests := []struct {
		name  string
		auth  Authenticator
		level byte
		subs  []subscription
		want  []byte
	}{
		{"3.1.1 own topic, QoS 2 downgraded", testAuth{}, level311,
			[]subscription{{cmdTopic, 2}, {cmdTopic, 1}, {cmdTopic, 0}}, []byte{1, 1, 0}},
		{"3.1.1 refused", testAuth{}, level311,
			[]subscription{{"tend/v1/devices/other/cmd", 1}, {"tend/v1/devices/+/cmd", 1}, {"#", 1}}, []byte{0x80, 0x80, 0x80}},
		{"3.1.1 wildcard allowed only as authorized", testAuth{}, level311,
			[]subscription{{"tend/v1/devices/dev/#", 1}, {"tend/v1/devices/dev/+", 1}}, []byte{1, 0x80}},
		{"3.1.1 invalid filter", testAuth{}, level311,
			[]subscription{{"tend/v1/devices/dev/cmd#", 1}, {cmdTopic, 1}}, []byte{0x80, 1}},
		{"3.1 own topic", testAuth{}, level31,
			[]subscription{{cmdTopic, 1}}, []byte{1}},
		{"5.0 granted and refused", testAuth{}, level5,
			[]subscription{{cmdTopic, 2}, {"tend/v1/devices/other/cmd", 1}, {"a/#/b", 1}, {"$share/g/" + cmdTopic, 1}},
			[]byte{1, 0x87, 0x8F, 0x9E}},
		{"3.1.1 no authorizer: deny", connectOnlyAuth{}, level311,
			[]subscription{{cmdTopic, 1}}, []byte{0x80}},
		{"5.0 no authorizer: deny", connectOnlyAuth{}, level5,
			[]subscription{{cmdTopic, 1}}, []byte{0x87}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, newRecorder(), func(s *Server) { s.Auth = tt.auth })
			c := dialRaw(t, s)
			c.connect(tt.level, "c", "dev", "secret", 0)
			if got := c.subscribe(tt.level, 3, tt.subs...); !bytes.Equal(got, tt.want) {
				t.Fatalf("SUBACK codes %x, want %x", got, tt.want)
			}
		})
	}
}

func TestSubscriptionIdentifierRefused(t *testing.T) {
	s := startServer(t, newRecorder())
	c := dialRaw(t, s)
	c.connect(level5, "c", "dev", "secret", 0)
	body := appendStr([]byte{0, 1, 2, 0x0B, 7}, cmdTopic)
	c.send(frame(typeSubscribe<<4|2, append(body, 1)))
	got := c.expectClosed(2 * time.Second)
	if len(got) != 1 || !bytes.Equal(got[0], []byte{0xE0, reasonSubIDsNotSupported, 0}) {
		t.Fatalf("want DISCONNECT 0xA1, got %x", got)
	}
}

func TestUnsubscribe(t *testing.T) {
	s := startServer(t, newRecorder())
	for _, level := range []byte{level311, level5} {
		c := dialRaw(t, s)
		c.connect(level, "c", "dev", "secret", 0)
		c.subscribe(level, 1, subscription{cmdTopic, 1})
		c.send(buildUnsubscribe(level, 2, cmdTopic, "never/subscribed"))
		h, b := c.mustRead()
		want := []byte{0, 2}
		if level == level5 {
			want = []byte{0, 2, 0, reasonSuccess, reasonNoSubscriptionExists}
		}
		if h != typeUnsuback<<4 || !bytes.Equal(b, want) {
			t.Fatalf("level %d: UNSUBACK %#x %x, want %x", level, h, b, want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.Deliver(ctx, "dev", cmdTopic, []byte("x"), "")
		cancel()
		if !errors.Is(err, ErrNotSubscribed) {
			t.Fatalf("level %d: Deliver after UNSUBSCRIBE: %v", level, err)
		}
		c.nc.Close()
		waitForConnections(t, s, "dev", 0)
	}
}

// TestDeliverPaho311 uses the Eclipse Paho 3.1.1 client: its PUBACK (sent
// after the message callback returns) completes Deliver.
func TestDeliverPaho311(t *testing.T) {
	s := startServer(t, newRecorder())
	c := pahoConnect(t, s, "p311", "dev", "secret")
	got := make(chan paho.Message, 1)
	tok := c.Subscribe(cmdTopic, 1, func(_ paho.Client, m paho.Message) { got <- m })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if codes := tok.(*paho.SubscribeToken).Result(); codes[cmdTopic] != 1 {
		t.Fatalf("granted %v, want QoS 1", codes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	payload := []byte(`{"show":"alarm","id":"a1"}`)
	if err := s.Deliver(ctx, "dev", cmdTopic, payload, "application/json"); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	select {
	case m := <-got:
		if m.Topic() != cmdTopic || !bytes.Equal(m.Payload(), payload) || m.Qos() != 1 || m.Duplicate() || m.Retained() {
			t.Fatalf("paho got topic %q payload %q qos %d dup %v retained %v",
				m.Topic(), m.Payload(), m.Qos(), m.Duplicate(), m.Retained())
		}
	default:
		t.Fatal("Deliver returned before the client received the message")
	}
	// Uplink on the same connection still works.
	if tok := c.Publish("tend/v1/devices/dev/obs", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("uplink publish: %v", tok.Error())
	}
}

// TestDeliverPaho5 uses the Eclipse Paho MQTT 5.0 client: the content type
// arrives as a property and its PUBACK completes Deliver.
func TestDeliverPaho5(t *testing.T) {
	s := startServer(t, newRecorder())
	nc, err := net.Dial("tcp", s.ListenAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *paho5.Publish, 4)
	c := paho5.NewClient(paho5.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho5.PublishReceived) (bool, error){
			func(pr paho5.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil },
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho5.Connect{ClientID: "p5", Username: "dev", Password: []byte("secret"),
		UsernameFlag: true, PasswordFlag: true, CleanStart: true, KeepAlive: 30})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect: %v %+v", err, ca)
	}
	t.Cleanup(func() { c.Disconnect(&paho5.Disconnect{}) })
	sa, err := c.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{
		{Topic: cmdTopic, QoS: 2},
		{Topic: "tend/v1/devices/other/cmd", QoS: 1},
	}})
	// paho returns an error when any filter is refused, with the SUBACK.
	if sa == nil || !bytes.Equal(sa.Reasons, []byte{1, 0x87}) {
		t.Fatalf("SUBACK %+v (err %v), want reasons 01 87", sa, err)
	}
	payload := []byte(`{"remind":"pill"}`)
	if err := s.Deliver(ctx, "dev", cmdTopic, payload, "application/json"); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	select {
	case p := <-got:
		if p.Topic != cmdTopic || !bytes.Equal(p.Payload, payload) || p.QoS != 1 ||
			p.Properties == nil || p.Properties.ContentType != "application/json" {
			t.Fatalf("paho got %+v props %+v", p, p.Properties)
		}
	default:
		t.Fatal("Deliver returned before the client received the message")
	}
	if _, err := c.Publish(ctx, &paho5.Publish{Topic: "tend/v1/devices/dev/obs", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatalf("uplink publish: %v", err)
	}
}

func TestDeliverNotConnectedOrNotSubscribed(t *testing.T) {
	s := startServer(t, newRecorder())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Deliver(ctx, "dev", cmdTopic, []byte("x"), ""); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("nobody connected: %v", err)
	}
	c := dialRaw(t, s)
	c.connect(level311, "c", "dev", "secret", 0)
	if err := s.Deliver(ctx, "dev", cmdTopic, []byte("x"), ""); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("connected, no subscription: %v", err)
	}
	c.subscribe(level311, 1, subscription{cmdTopic, 1})
	if err := s.Deliver(ctx, "dev", "tend/v1/devices/dev/other", []byte("x"), ""); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("other topic: %v", err)
	}
	if err := s.Deliver(ctx, "dev-b", cmdTopic, []byte("x"), ""); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("other device: %v", err)
	}
	for _, topic := range []string{"", "a/+", "a/#", "a\x00"} {
		if err := s.Deliver(ctx, "dev", topic, []byte("x"), ""); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("topic %q: %v", topic, err)
		}
	}
	// After the device disconnects it is not connected any more.
	c.send([]byte{typeDisconnect << 4, 0})
	waitForConnections(t, s, "dev", 0)
	if err := s.Deliver(ctx, "dev", cmdTopic, []byte("x"), ""); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("after disconnect: %v", err)
	}
}

// TestDeliverWithoutAck: a client that never acknowledges makes Deliver
// end with the context's error; uplink on that connection keeps working,
// and a late or unknown PUBACK is ignored rather than a protocol error.
func TestDeliverWithoutAck(t *testing.T) {
	rec := newRecorder()
	s := startServer(t, rec)
	c := dialRaw(t, s)
	c.connect(level311, "c", "dev", "secret", 0)
	c.subscribe(level311, 1, subscription{cmdTopic, 1})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := s.Deliver(ctx, "dev", cmdTopic, []byte("alarm"), "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Deliver without PUBACK: %v", err)
	}
	p := c.readPublish(level311)
	if string(p.topic) != cmdTopic || string(p.payload) != "alarm" || p.qos != 1 || p.packetID == 0 {
		t.Fatalf("PUBLISH %+v", p)
	}
	c.send(buildPublish(level311, 1, false, 1, "tend/v1/devices/dev/obs", "up", nil))
	if h, b := c.mustRead(); h != typePuback<<4 || !bytes.Equal(b, []byte{0, 1}) {
		t.Fatalf("uplink PUBACK: %#x %x", h, b)
	}
	if m := rec.wait(t); string(m.Payload) != "up" {
		t.Fatalf("handler got %q", m.Payload)
	}
	// Late PUBACK for the timed-out delivery, then one for an id never used.
	c.send(buildPuback(p.packetID))
	c.send(buildPuback(p.packetID + 100))
	c.ping()
	// The next delivery gets a new packet id and completes.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Deliver(ctx, "dev", cmdTopic, []byte("again"), "")
	}()
	p2 := c.readPublish(level311)
	if p2.packetID == p.packetID {
		t.Fatalf("packet id %d reused", p2.packetID)
	}
	c.send(buildPuback(p2.packetID))
	if err := <-done; err != nil {
		t.Fatalf("Deliver after late PUBACK: %v", err)
	}
}

// TestDeliverInflightBound: unacknowledged deliveries are bounded per
// connection by 16, or by a 5.0 client's Receive Maximum; beyond that
// Deliver fails at once, and an acknowledgement frees a place.
func TestDeliverInflightBound(t *testing.T) {
	tests := []struct {
		name    string
		level   byte
		props   []byte
		allowed int
	}{
		{"3.1.1", level311, nil, downlinkInflight},
		{"5.0 default", level5, nil, downlinkInflight},
		{"5.0 Receive Maximum 3", level5, []byte{0x21, 0, 3}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, newRecorder())
			c := dialRaw(t, s)
			c.send(buildConnect(tt.level, "c", "dev", "secret", 0, tt.props))
			if h, b := c.mustRead(); h != typeConnack<<4 || b[1] != 0 {
				t.Fatalf("CONNACK %#x %x", h, b)
			}
			c.subscribe(tt.level, 1, subscription{cmdTopic, 1})
			// Fill the window with deliveries that are sent and never acked.
			waiting, stopWaiting := context.WithCancel(context.Background())
			results := make(chan error, tt.allowed)
			for range tt.allowed {
				go func() { results <- s.Deliver(waiting, "dev", cmdTopic, []byte("x"), "") }()
			}
			ids := map[uint16]bool{}
			for range tt.allowed {
				ids[c.readPublish(tt.level).packetID] = true
			}
			if len(ids) != tt.allowed {
				t.Fatalf("packet ids %v not distinct", ids)
			}
			// Giving up waiting does not free the places: the device has not
			// acknowledged.
			stopWaiting()
			for range tt.allowed {
				if err := <-results; !errors.Is(err, context.Canceled) {
					t.Fatalf("abandoned Deliver: %v", err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			if err := s.Deliver(ctx, "dev", cmdTopic, []byte("x"), ""); !errors.Is(err, ErrInflightFull) {
				t.Fatalf("Deliver beyond %d in flight: %v", tt.allowed, err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("full window blocked for %v", d)
			}
			var first uint16
			for id := range ids {
				first = id
				break
			}
			c.send(buildPuback(first))
			c.ping() // the server has read the PUBACK once it answers the ping
			done := make(chan error, 1)
			go func() { done <- s.Deliver(ctx, "dev", cmdTopic, []byte("y"), "") }()
			p := c.readPublish(tt.level)
			c.send(buildPuback(p.packetID))
			if err := <-done; err != nil {
				t.Fatalf("Deliver after an ack freed a place: %v", err)
			}
		})
	}
}

func TestDeliverRespectsMaximumPacketSize(t *testing.T) {
	s := startServer(t, newRecorder())
	c := dialRaw(t, s)
	c.send(buildConnect(level5, "c", "dev", "secret", 0, []byte{0x27, 0, 0, 0, 64}))
	if h, b := c.mustRead(); h != typeConnack<<4 || b[1] != 0 {
		t.Fatalf("CONNACK %#x %x", h, b)
	}
	c.subscribe(level5, 1, subscription{cmdTopic, 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// 1 + 1 fixed header, 2 + 23 topic, 2 id, 1 property length: 30 bytes of overhead.
	if err := s.Deliver(ctx, "dev", cmdTopic, make([]byte, 64-30+1), ""); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("65-byte packet to a 64-byte client: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Deliver(ctx, "dev", cmdTopic, make([]byte, 64-30), "") }()
	p := c.readPublish(level5)
	c.send(buildPuback(p.packetID))
	if err := <-done; err != nil {
		t.Fatalf("64-byte packet: %v", err)
	}
}

func TestDeliverV5Refused(t *testing.T) {
	s := startServer(t, newRecorder())
	c := dialRaw(t, s)
	c.connect(level5, "c", "dev", "secret", 0)
	c.subscribe(level5, 1, subscription{cmdTopic, 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Deliver(ctx, "dev", cmdTopic, []byte("x"), "application/json") }()
	p := c.readPublish(level5)
	if string(p.props.contentType) != "application/json" {
		t.Fatalf("content type %q", p.props.contentType)
	}
	c.send([]byte{typePuback << 4, 3, byte(p.packetID >> 8), byte(p.packetID), 0x99})
	var refused *RefusedError
	if err := <-done; !errors.As(err, &refused) || refused.Code != 0x99 {
		t.Fatalf("Deliver refused by device: %v", err)
	}
	// 0x10 "no matching subscribers" is a success code: a receipt.
	go func() { done <- s.Deliver(ctx, "dev", cmdTopic, []byte("x"), "") }()
	p = c.readPublish(level5)
	c.send([]byte{typePuback << 4, 3, byte(p.packetID >> 8), byte(p.packetID), 0x10})
	if err := <-done; err != nil {
		t.Fatalf("PUBACK 0x10: %v", err)
	}
}

func TestDeliverConnectionClosedWhileWaiting(t *testing.T) {
	s := startServer(t, newRecorder())
	c := dialRaw(t, s)
	c.connect(level311, "c", "dev", "secret", 0)
	c.subscribe(level311, 1, subscription{cmdTopic, 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Deliver(ctx, "dev", cmdTopic, []byte("x"), "") }()
	c.readPublish(level311)
	c.nc.Close()
	if err := <-done; !errors.Is(err, ErrConnectionClosed) {
		t.Fatalf("Deliver when the connection closed: %v", err)
	}
}

// TestDeliverQoS0Subscription: a QoS 0 subscription gets a QoS 0 PUBLISH,
// which has no receipt.
func TestDeliverQoS0Subscription(t *testing.T) {
	s := startServer(t, newRecorder())
	c := dialRaw(t, s)
	c.connect(level311, "c", "dev", "secret", 0)
	if got := c.subscribe(level311, 1, subscription{cmdTopic, 0}); !bytes.Equal(got, []byte{0}) {
		t.Fatalf("SUBACK %x", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Deliver(ctx, "dev", cmdTopic, []byte("x"), ""); !errors.Is(err, ErrNoReceipt) {
		t.Fatalf("Deliver to QoS 0 subscription: %v", err)
	}
	if p := c.readPublish(level311); p.qos != 0 || string(p.payload) != "x" {
		t.Fatalf("PUBLISH %+v", p)
	}
	// Overlapping subscriptions: one copy at the highest granted QoS.
	c.subscribe(level311, 2, subscription{"tend/v1/devices/dev/#", 1})
	done := make(chan error, 1)
	go func() { done <- s.Deliver(ctx, "dev", cmdTopic, []byte("y"), "") }()
	p := c.readPublish(level311)
	if p.qos != 1 {
		t.Fatalf("PUBLISH qos %d, want 1", p.qos)
	}
	c.send(buildPuback(p.packetID))
	if err := <-done; err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if _, _, err := c.read(100 * time.Millisecond); err == nil {
		t.Fatal("second copy sent for overlapping subscriptions")
	}
}

// TestDeliverAnyConnectionAcks: with two connections of one device, the
// first PUBACK completes Deliver even if the other never answers.
func TestDeliverAnyConnectionAcks(t *testing.T) {
	s := startServer(t, newRecorder())
	silent := dialRaw(t, s)
	silent.connect(level311, "silent", "dev", "secret", 0)
	silent.subscribe(level311, 1, subscription{cmdTopic, 1})
	acker := dialRaw(t, s)
	acker.connect(level5, "acker", "dev", "secret", 0)
	acker.subscribe(level5, 1, subscription{cmdTopic, 1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Deliver(ctx, "dev", cmdTopic, []byte("x"), "") }()
	if p := silent.readPublish(level311); string(p.payload) != "x" {
		t.Fatalf("silent got %+v", p)
	}
	p := acker.readPublish(level5)
	acker.send(buildPuback(p.packetID))
	if err := <-done; err != nil {
		t.Fatalf("Deliver: %v", err)
	}
}

// TestSubscriptionsEndWithConnection: sessions are not persisted, so a
// reconnecting device, even asking for a persistent session, must
// subscribe again.
func TestSubscriptionsEndWithConnection(t *testing.T) {
	s := startServer(t, newRecorder())
	got := make(chan paho.Message, 1)
	c := paho.NewClient(pahoOptions(s, "p", "dev", "secret").SetCleanSession(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if tok := c.Subscribe(cmdTopic, 1, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Deliver(ctx, "dev", cmdTopic, []byte("1"), ""); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	<-got
	c.Disconnect(100)
	waitForConnections(t, s, "dev", 0)
	c = paho.NewClient(pahoOptions(s, "p", "dev", "secret").SetCleanSession(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("reconnect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if err := s.Deliver(ctx, "dev", cmdTopic, []byte("2"), ""); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("Deliver after reconnect without SUBSCRIBE: %v", err)
	}
}

// TestMosquittoSub: the Debian mosquitto_sub client receives a delivered
// payload and its PUBACK completes Deliver.
func TestMosquittoSub(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Skip("mosquitto_sub not on PATH; install Debian package mosquitto-clients to run this test")
	}
	s := startServer(t, newRecorder())
	_, port, _ := net.SplitHostPort(s.ListenAddr().String())
	tests := []struct {
		version string
		format  []string
		want    string
	}{
		{"mqttv311", nil, "{\"show\":\"alarm\"}\n"},
		{"mqttv5", []string{"-F", "%C %p"}, "application/json {\"show\":\"alarm\"}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			// The previous run's connection must be gone, or Deliver would
			// also try it.
			waitForConnections(t, s, "dev1", 0)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			args := append([]string{"-h", "127.0.0.1", "-p", port, "-V", tt.version, "-q", "1",
				"-t", "tend/v1/devices/dev1/cmd", "-u", "dev1", "-P", "secret", "-C", "1"}, tt.format...)
			cmd := exec.CommandContext(ctx, "mosquitto_sub", args...)
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Retry until mosquitto_sub has connected and subscribed.
			var err error
			for {
				dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
				err = s.Deliver(dctx, "dev1", "tend/v1/devices/dev1/cmd", []byte(`{"show":"alarm"}`), "application/json")
				dcancel()
				if !errors.Is(err, ErrNotConnected) && !errors.Is(err, ErrNotSubscribed) {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("mosquitto_sub never subscribed: %v\n%s", err, stderr.String())
				case <-time.After(10 * time.Millisecond):
				}
			}
			if err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("mosquitto_sub: %v\n%s", err, stderr.String())
			}
			if out.String() != tt.want {
				t.Fatalf("mosquitto_sub printed %q, want %q", out.String(), tt.want)
			}
		})
	}
}

// waitForConnections waits until the server holds n established
// connections of username (closing is asynchronous on the server side).
func waitForConnections(t *testing.T, s *Server, username string, n int) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for len(s.connectionsOf(username)) != n {
		select {
		case <-deadline:
			t.Fatalf("%s still has %d connections, want %d", username, len(s.connectionsOf(username)), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ping sends PINGREQ and waits for PINGRESP: the server has read
// everything sent before it.
func (c *rawClient) ping() {
	c.t.Helper()
	c.send([]byte{typePingreq << 4, 0})
	if h, b := c.mustRead(); h != typePingresp<<4 {
		c.t.Fatalf("want PINGRESP, got %#x %x", h, b)
	}
}
