package mqtt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// slot carries one PUBLISH from the reader, through the handler, to the
// writer. A connection owns MaxInflight slots; taking a free one is the
// in-flight limit.
type slot struct {
	msg      Message
	packetID uint16
	skip     bool       // no handler call: a resent QoS 2 PUBLISH already handled
	done     chan error // buffered(1): handler result
}

// control is a packet the writer sends without waiting for a handler:
// PINGRESP, PUBCOMP, SUBACK, UNSUBACK, or a downlink PUBLISH.
type control struct {
	packetType byte
	packetID   uint16
	reason     byte   // PUBCOMP
	codes      []byte // SUBACK, UNSUBACK

	// PUBLISH
	qos         byte
	topic       string
	contentType string
	payload     []byte
}

type conn struct {
	srv *Server
	nc  net.Conn
	r   *bufio.Reader
	w   *bufio.Writer

	// Set during CONNECT, read-only afterwards.
	level            byte
	clientID         string
	username         string
	keepAlive        time.Duration
	problemInfo      bool        // 5.0: client accepts reason strings on acks
	clientMaxSize    int         // 5.0: client's Maximum Packet Size, 0 = unlimited
	clientReceiveMax int         // 5.0: client's Receive Maximum, 0 = not sent (65535)
	identified       atomic.Bool // username is set

	free    chan *slot   // idle slots
	acks    chan *slot   // slots in arrival order, for the writer
	ctrl    chan control // immediate packets for the writer
	quit    chan struct{}
	once    sync.Once
	reason  atomic.Uint32 // 5.0 DISCONNECT reason chosen by kill
	scratch []byte        // writer's encoding buffer

	// QoS 2 packet ids handed to the handler and awaiting PUBREL, so a
	// resent PUBLISH (DUP) is acknowledged without a second hand-over.
	qos2mu sync.Mutex
	qos2   map[uint16]struct{}

	// Granted subscriptions, filter -> QoS. Written by the reader, read by
	// Deliver; never persisted, so they end with the connection.
	subMu sync.Mutex
	subs  map[string]byte

	// Downlink QoS 1 PUBLISHes awaiting PUBACK, by packet id (the server's
	// own id space, independent of the client's).
	outMu     sync.Mutex
	outClosed bool
	nextID    uint16
	pending   map[uint16]chan<- ackResult
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{
		srv:     s,
		nc:      nc,
		r:       bufio.NewReaderSize(nc, 4096),
		w:       bufio.NewWriterSize(nc, 4096),
		ctrl:    make(chan control, 16),
		quit:    make(chan struct{}),
		pending: make(map[uint16]chan<- ackResult),
	}
}

// kill asks the connection to end. For 5.0 clients the writer sends
// DISCONNECT with reason first (0 = none).
func (c *conn) kill(reason byte) {
	c.once.Do(func() {
		c.reason.Store(uint32(reason))
		close(c.quit)
		// Unblock the reader; the writer closes the socket.
		c.nc.SetReadDeadline(time.Unix(1, 0))
	})
}

func (c *conn) log() []any {
	return []any{"device", c.username, "client", c.clientID, "remote", c.nc.RemoteAddr().String()}
}

// serve runs the reader for the connection's whole life.
func (c *conn) serve() {
	s := c.srv
	defer s.wg.Done()
	defer s.unregister(c)
	defer c.endDownlink()
	defer c.nc.Close()

	if !c.handshake() {
		return
	}
	if s.Metrics != nil {
		s.Metrics.ConnectionOpened()
		defer s.Metrics.ConnectionClosed()
	}
	s.Logger.Debug("mqtt connected", c.log()...)

	n := s.MaxInflight
	c.free = make(chan *slot, n)
	c.acks = make(chan *slot, n)
	for range n {
		c.free <- &slot{done: make(chan error, 1)}
	}
	c.qos2 = make(map[uint16]struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()

	err := c.readLoop()
	reason := byte(0)
	var pe *protocolError
	var tooLarge *packetTooLargeError
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, io.EOF):
	case errors.As(err, &pe):
		reason = pe.reason
	case errors.As(err, &tooLarge):
		reason = reasonPacketTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		reason = reasonKeepAliveTimeout
	}
	c.kill(reason)
	<-writerDone
	s.Logger.Debug("mqtt disconnected", append(c.log(), "cause", errString(err))...)
}

func errString(err error) string {
	if err == nil {
		return "client disconnect"
	}
	return err.Error()
}

// handshake reads and answers CONNECT. It reports whether the session is
// established.
func (c *conn) handshake() bool {
	s := c.srv
	deadline := time.Now().Add(s.ConnectTimeout)
	c.nc.SetDeadline(deadline)
	header, body, err := readPacket(c.r, s.MaxPacketSize, nil)
	if err != nil {
		s.Logger.Debug("mqtt handshake read failed", "remote", c.nc.RemoteAddr().String(), "err", err)
		return false
	}
	if header != typeConnect<<4 {
		s.Logger.Debug("mqtt first packet not CONNECT", "remote", c.nc.RemoteAddr().String())
		return false
	}
	var cp connectPacket
	err = decodeConnect(body, &cp)
	defer clear(body) // the password lives in body
	c.level = cp.level
	refuse := func(code3, code5 byte) bool {
		code := code3
		if c.level == level5 {
			code = code5
		}
		if s.Metrics != nil {
			s.Metrics.ConnectRefused(code)
		}
		c.w.Write(appendConnack(nil, c.level, false, code, 0, 0, ""))
		c.w.Flush()
		s.Logger.Debug("mqtt connect refused", "device", string(cp.username), "code", code, "remote", c.nc.RemoteAddr().String())
		return false
	}
	if errors.Is(err, errUnsupportedVersion) {
		c.level = level311 // answer in a format every version reads
		return refuse(0x01, 0x01)
	}
	if err != nil {
		var pe *protocolError
		if c.level == level5 && errors.As(err, &pe) {
			return refuse(0, pe.reason)
		}
		s.Logger.Debug("mqtt bad CONNECT", "remote", c.nc.RemoteAddr().String(), "err", err)
		return false
	}
	if cp.props.authMethodGiven {
		return refuse(0x05, reasonBadAuthMethod)
	}
	c.clientID = string(cp.clientID)
	assigned := ""
	if c.clientID == "" {
		if c.level != level5 && !cp.cleanStart {
			return refuse(0x02, reasonClientIDInvalid) // §3.1.3.1
		}
		c.clientID = newClientID()
		if c.level == level5 {
			assigned = c.clientID
		}
	}
	certAuth, chain, certDevice := s.peerCertificate(c.nc)
	switch {
	case certDevice != "":
		// A client certificate naming a device is the credential; a user
		// name, if sent, must be that device and the password is ignored.
		if cp.hasUsername && len(cp.username) > 0 && string(cp.username) != certDevice {
			return refuse(0x04, reasonBadCredentials)
		}
		c.username = certDevice
	case !cp.hasUsername || !cp.hasPassword || len(cp.username) == 0:
		return refuse(0x04, reasonBadCredentials)
	default:
		c.username = string(cp.username)
	}
	// Visible to Disconnect from here on, so a credential rotation (or a
	// certificate revocation) that races with this check still closes the
	// connection.
	c.identified.Store(true)
	actx, cancel := context.WithDeadline(s.ctx, deadline)
	if certDevice != "" {
		err = certAuth.AuthenticateCertificate(actx, c.clientID, chain)
	} else {
		err = s.Auth.Authenticate(actx, c.clientID, c.username, cp.password)
	}
	cancel()
	select {
	case <-c.quit:
		return false
	default:
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrBadCredentials):
		return refuse(0x04, reasonBadCredentials)
	case errors.Is(err, ErrNotAuthorized):
		return refuse(0x05, reasonNotAuthorized)
	default:
		s.Logger.Warn("mqtt authenticator failed", "device", c.username, "err", err)
		return refuse(0x03, reasonServerUnavailable)
	}
	c.keepAlive = time.Duration(cp.keepAlive) * time.Second
	if c.level == level5 {
		c.problemInfo = true
		if v, ok := cp.props.u(0x17); ok && v == 0 {
			c.problemInfo = false
		}
		if v, ok := cp.props.u(0x27); ok {
			c.clientMaxSize = int(v)
		}
		if v, ok := cp.props.u(0x21); ok {
			c.clientReceiveMax = int(v)
		}
	}
	c.srv.register(c)
	c.w.Write(appendConnack(nil, c.level, false, 0, s.MaxInflight, s.MaxPacketSize, assigned))
	if err := c.w.Flush(); err != nil {
		return false
	}
	c.nc.SetDeadline(time.Time{})
	select {
	case <-c.quit:
		// Taken over (or shut down) between CONNACK and here: the client
		// holds an accepted session, so it is told why it ends, as an
		// established session would be.
		c.writeDisconnect()
		return false
	default:
		return true
	}
}

// readLoop reads packets until error or DISCONNECT (nil).
func (c *conn) readLoop() error {
	s := c.srv
	buf := make([]byte, 0, 512)
	var pub publishPacket
	for {
		if c.keepAlive > 0 {
			// §3.1.2.10: one and a half times the keep alive.
			c.nc.SetReadDeadline(time.Now().Add(c.keepAlive * 3 / 2))
		}
		select {
		case <-c.quit:
			return nil
		default:
		}
		header, body, err := readPacket(c.r, s.MaxPacketSize, buf)
		if err != nil {
			return fmt.Errorf("read packet: %w", err)
		}
		if cap(body) <= reuseLimit && cap(body) > cap(buf) {
			buf = body[:0]
		}
		if err := checkFlags(header); err != nil {
			return err
		}
		switch header >> 4 {
		case typePublish:
			if err := decodePublish(header, body, c.level, &pub); err != nil {
				return fmt.Errorf("PUBLISH: %w", err)
			}
			if err := c.dispatch(&pub); err != nil {
				return err
			}
		case typePubrel:
			id, _, _, err := decodeAck(typePubrel, body, c.level)
			if err != nil {
				return fmt.Errorf("PUBREL: %w", err)
			}
			c.qos2mu.Lock()
			_, known := c.qos2[id]
			delete(c.qos2, id)
			c.qos2mu.Unlock()
			reason := byte(reasonSuccess)
			if !known {
				reason = reasonPacketIDNotFound
			}
			if !c.send(control{packetType: typePubcomp, packetID: id, reason: reason}) {
				return nil
			}
		case typePuback:
			id, reason, _, err := decodeAck(typePuback, body, c.level)
			if err != nil {
				return fmt.Errorf("PUBACK: %w", err)
			}
			c.acked(id, reason)
		case typePubrec, typePubcomp:
			// The server sends no QoS 2 PUBLISH, so there is nothing to match.
			if _, _, _, err := decodeAck(int(header>>4), body, c.level); err != nil {
				return err
			}
		case typeSubscribe:
			id, subs, err := decodeSubscribe(body, c.level)
			if err != nil {
				return fmt.Errorf("SUBSCRIBE: %w", err)
			}
			if !c.send(control{packetType: typeSuback, packetID: id, codes: c.subscribe(subs)}) {
				return nil
			}
		case typeUnsubscribe:
			id, filters, err := decodeUnsubscribe(body, c.level)
			if err != nil {
				return fmt.Errorf("UNSUBSCRIBE: %w", err)
			}
			if !c.send(control{packetType: typeUnsuback, packetID: id, codes: c.unsubscribe(filters)}) {
				return nil
			}
		case typePingreq:
			if len(body) != 0 {
				return errMalformed
			}
			if !c.send(control{packetType: typePingresp}) {
				return nil
			}
		case typeDisconnect:
			if _, err := decodeDisconnect(body, c.level); err != nil {
				return err
			}
			return nil
		default: // CONNECT again, AUTH, server-to-client types
			return errProtocol
		}
	}
}

// send queues a control packet; false if the connection is ending.
func (c *conn) send(p control) bool {
	select {
	case c.ctrl <- p:
		return true
	case <-c.quit:
		return false
	}
}

// dispatch hands a PUBLISH to the handler, waiting for a free slot first
// (backpressure), and queues its acknowledgement in arrival order.
func (c *conn) dispatch(p *publishPacket) error {
	var sl *slot
	select {
	case sl = <-c.free:
	case <-c.quit:
		return nil
	}
	sl.packetID = p.packetID
	sl.skip = false
	if p.qos == 2 {
		c.qos2mu.Lock()
		_, seen := c.qos2[p.packetID]
		if !seen {
			c.qos2[p.packetID] = struct{}{}
		}
		c.qos2mu.Unlock()
		sl.skip = seen
	}
	if sl.skip {
		sl.msg = Message{QoS: 2}
		sl.done <- nil
		c.acks <- sl
		return nil
	}
	// The handler owns the payload, so it must not alias the read buffer.
	payload := make([]byte, len(p.payload))
	copy(payload, p.payload)
	sl.msg = Message{
		ClientID:        c.clientID,
		Username:        c.username,
		Topic:           string(p.topic),
		Payload:         payload,
		QoS:             p.qos,
		Received:        c.srv.Now(),
		ProtocolVersion: c.level,
	}
	if len(p.props.contentType) > 0 {
		sl.msg.ContentType = string(p.props.contentType)
	}
	c.acks <- sl // never blocks: capacity equals the number of slots
	c.srv.wg.Add(1)
	go c.runHandler(sl)
	return nil
}

func (c *conn) runHandler(sl *slot) {
	s := c.srv
	defer s.wg.Done()
	start := time.Now()
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.Logger.Error("mqtt handler panic", "device", c.username, "panic", fmt.Sprint(r))
				err = errors.New("mqtt: handler panicked")
			}
		}()
		err = s.Handler.HandlePublish(s.ctx, sl.msg)
	}()
	if s.Metrics != nil {
		s.Metrics.PublishHandled(sl.msg.QoS, time.Since(start), err)
	}
	sl.done <- err
}

// writeLoop writes control packets at once and acknowledgements in arrival
// order as their handlers finish, flushing whenever nothing is ready.
func (c *conn) writeLoop() {
	var head *slot
	for {
		var acks chan *slot
		var headDone chan error
		if head == nil {
			acks = c.acks
		} else {
			headDone = head.done
		}
		select {
		case <-c.quit:
			c.writeDisconnect()
			return
		case head = <-acks:
		case p := <-c.ctrl:
			c.writeControl(p)
		case err := <-headDone:
			if !c.writeAck(head, err) {
				c.kill(reasonUnspecified)
				c.writeDisconnect()
				return
			}
			head.msg = Message{}
			c.free <- head
			head = nil
		}
		ready := len(c.ctrl) > 0 || (head == nil && len(c.acks) > 0) || (head != nil && len(head.done) > 0)
		if !ready && c.w.Buffered() > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := c.w.Flush(); err != nil {
				c.kill(0)
				c.nc.Close()
				return
			}
		}
	}
}

// writeAck writes the acknowledgement for a handled PUBLISH. It returns
// false if the handler failed: nothing is acknowledged and the connection
// must close so the device resends.
func (c *conn) writeAck(sl *slot, err error) bool {
	reason, reasonString := byte(reasonSuccess), ""
	if err != nil {
		var rej *RejectError
		if !errors.As(err, &rej) {
			c.srv.Logger.Warn("mqtt publish not made durable; closing connection", append(c.log(), "err", err)...)
			return false
		}
		if c.level == level5 {
			reason = rej.Code
			if c.problemInfo {
				reasonString = rej.Reason
			}
		}
	}
	var packetType byte
	switch sl.msg.QoS {
	case 0:
		return true
	case 1:
		packetType = typePuback
	default:
		packetType = typePubrec
		if reason >= 0x80 {
			// A 5.0 PUBREC with an error ends the exchange (§4.3.3).
			c.qos2mu.Lock()
			delete(c.qos2, sl.packetID)
			c.qos2mu.Unlock()
		}
	}
	if c.clientMaxSize > 0 && 9+len(reasonString) > c.clientMaxSize {
		reasonString = ""
	}
	c.scratch = appendAck(c.scratch[:0], packetType, sl.packetID, c.level, reason, reasonString)
	c.write(c.scratch)
	return true
}

func (c *conn) writeControl(p control) {
	b := c.scratch[:0]
	switch p.packetType {
	case typePingresp:
		b = append(b, typePingresp<<4, 0)
	case typePubcomp:
		reason := p.reason
		if c.level != level5 {
			reason = 0
		}
		b = appendAck(b, typePubcomp, p.packetID, c.level, reason, "")
	case typeSuback, typeUnsuback:
		b = appendSubackLike(b, p.packetType, p.packetID, c.level, p.codes)
	case typePublish:
		b = appendPublishHeader(b, c.level, p.qos, p.packetID, p.topic, p.contentType, len(p.payload))
		c.scratch = b
		c.write(b)
		c.write(p.payload) // not copied into scratch: it may be large
		return
	}
	c.scratch = b
	c.write(b)
}

// write buffers b. When b does not fit, bufio writes to the socket at once,
// so the write deadline (otherwise set only before a flush, and possibly
// long expired) is renewed first.
func (c *conn) write(b []byte) {
	if len(b) > c.w.Available() {
		c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	c.w.Write(b)
}

// writeDisconnect flushes what is buffered and, for 5.0 clients, sends
// DISCONNECT with the kill reason, then closes the socket.
func (c *conn) writeDisconnect() {
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	if r := byte(c.reason.Load()); r != 0 && c.level == level5 {
		c.w.Write(appendDisconnect(c.scratch[:0], r))
	}
	c.w.Flush()
	c.nc.Close()
}
