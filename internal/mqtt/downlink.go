package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// SubscribeAuthorizer is implemented by an Authenticator that lets devices
// subscribe. The server asks it once per topic filter of every SUBSCRIBE,
// with the filter exactly as sent (wildcards included); it must be cheap,
// as it runs on the connection's reader. If Server.Auth does not implement
// it, every SUBSCRIBE is refused.
type SubscribeAuthorizer interface {
	AuthorizeSubscribe(username, filter string) bool
}

// Errors returned by Deliver. The caller retries later on any of them except
// ErrInvalidMessage (never deliverable) and ErrPacketTooLarge (deliverable
// only once the device reconnects announcing a larger Maximum Packet Size).
var (
	ErrNotConnected     = errors.New("mqtt: device not connected")
	ErrNotSubscribed    = errors.New("mqtt: device connected but not subscribed to the topic")
	ErrInflightFull     = errors.New("mqtt: too many unacknowledged messages to the device")
	ErrPacketTooLarge   = errors.New("mqtt: message larger than the device accepts")
	ErrConnectionClosed = errors.New("mqtt: connection closed before the device acknowledged")
	ErrNoReceipt        = errors.New("mqtt: sent at QoS 0 (the device subscribed at QoS 0): no receipt")
	ErrInvalidMessage   = errors.New("mqtt: invalid topic or content type")
)

// RefusedError reports an MQTT 5.0 PUBACK with an error reason code: the
// device received the message and refused it.
type RefusedError struct{ Code byte }

func (e *RefusedError) Error() string {
	return fmt.Sprintf("mqtt: device refused the message (reason code %#x)", e.Code)
}

// downlinkInflight bounds unacknowledged QoS 1 PUBLISHes per connection
// (lowered further by a 5.0 client's Receive Maximum).
const downlinkInflight = 16

// ackResult ends one QoS 1 downlink PUBLISH.
type ackResult struct {
	reason byte // PUBACK reason code (0 for 3.1.1)
	closed bool // the connection ended first
}

// Deliver sends payload on topic to every current connection of username
// whose subscriptions match topic, as a QoS 1 PUBLISH (QoS 0 to a
// subscription granted QoS 0), with contentType as the MQTT 5.0 content
// type property for 5.0 clients (it is dropped for 3.1.1). It returns nil
// once any of them has acknowledged with PUBACK: the delivery receipt.
//
// Otherwise it returns ErrNotConnected, ErrNotSubscribed, the context's
// error if no PUBACK came in time, or the per-connection failures joined
// (ErrInflightFull, ErrPacketTooLarge, ErrConnectionClosed, *RefusedError,
// ErrNoReceipt). Sessions are not persisted and nothing is resent, so the
// caller retries; a device may then see a message twice and should
// deduplicate by an id in the payload.
//
// A PUBLISH whose wait timed out keeps its place in the connection's
// in-flight window until the device acknowledges it or disconnects, as
// Receive Maximum requires; a full window makes Deliver fail at once with
// ErrInflightFull rather than wait.
func (s *Server) Deliver(ctx context.Context, username, topic string, payload []byte, contentType string) error {
	if !validTopicName(topic) || len(contentType) > 0xFFFF || !validUTF8([]byte(contentType)) {
		return fmt.Errorf("deliver on %q: %w", topic, ErrInvalidMessage)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deliver to %s: %w", username, err)
	}
	conns := s.connectionsOf(username)
	if len(conns) == 0 {
		return fmt.Errorf("deliver to %s: %w", username, ErrNotConnected)
	}
	// The writer may send after Deliver returns, so it gets its own copy.
	payload = bytes.Clone(payload)
	results := make(chan ackResult, len(conns))
	var (
		subscribed bool
		waiting    int
		sentQoS0   bool
		errs       []error
	)
	for _, c := range conns {
		qos, ok := c.subscribedQoS(topic)
		if !ok {
			continue
		}
		subscribed = true
		wait, err := c.startDelivery(ctx, qos, topic, payload, contentType, results)
		switch {
		case err != nil:
			errs = append(errs, err)
		case wait:
			waiting++
		default:
			sentQoS0 = true
		}
	}
	if !subscribed {
		return fmt.Errorf("deliver to %s on %q: %w", username, topic, ErrNotSubscribed)
	}
	for ; waiting > 0; waiting-- {
		select {
		case r := <-results:
			switch {
			case r.closed:
				errs = append(errs, ErrConnectionClosed)
			case r.reason >= 0x80:
				errs = append(errs, &RefusedError{Code: r.reason})
			default:
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("deliver to %s on %q: no acknowledgement: %w", username, topic, ctx.Err())
		}
	}
	if sentQoS0 {
		errs = append(errs, ErrNoReceipt)
	}
	return fmt.Errorf("deliver to %s on %q: %w", username, topic, errors.Join(errs...))
}

// connectionsOf returns the established connections of username.
func (s *Server) connectionsOf(username string) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*conn, 0, len(s.users[username]))
	for c := range s.users[username] {
		conns = append(conns, c)
	}
	return conns
}

// subscribedQoS returns the highest QoS granted to a subscription of c
// matching topic, so overlapping subscriptions get one copy (as 5.0
// requires and 3.1.1 allows).
func (c *conn) subscribedQoS(topic string) (qos byte, ok bool) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for f, q := range c.subs {
		if matchTopic(f, topic) {
			qos, ok = max(qos, q), true
		}
	}
	return qos, ok
}

// startDelivery queues one PUBLISH for the writer. For QoS 1 it reserves a
// packet id whose PUBACK (or the connection's end) is reported on results;
// wait tells whether that will happen.
func (c *conn) startDelivery(ctx context.Context, qos byte, topic string, payload []byte, contentType string, results chan<- ackResult) (wait bool, err error) {
	if c.level != level5 {
		contentType = ""
	}
	rl := publishRemaining(c.level, qos, topic, contentType, len(payload))
	size := 1 + varintLen(rl) + rl
	if rl > maxRemainingLength || (c.clientMaxSize > 0 && size > c.clientMaxSize) {
		return false, fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, size)
	}
	p := control{packetType: typePublish, qos: qos, topic: topic, contentType: contentType, payload: payload}
	if qos > 0 {
		c.outMu.Lock()
		switch {
		case c.outClosed:
			c.outMu.Unlock()
			return false, ErrConnectionClosed
		case len(c.pending) >= c.downlinkLimit():
			c.outMu.Unlock()
			return false, ErrInflightFull
		}
		p.packetID = c.nextPacketID()
		c.pending[p.packetID] = results
		c.outMu.Unlock()
	}
	select {
	case c.ctrl <- p:
		return qos > 0, nil
	case <-c.quit:
		// endDownlink reports a reserved id as closed.
		if qos == 0 {
			return false, ErrConnectionClosed
		}
		return true, nil
	case <-ctx.Done():
		if qos > 0 {
			c.outMu.Lock()
			delete(c.pending, p.packetID) // never sent
			c.outMu.Unlock()
		}
		return false, ctx.Err()
	}
}

// downlinkLimit is the in-flight window: ours, or the client's Receive
// Maximum if lower.
func (c *conn) downlinkLimit() int {
	if c.clientReceiveMax > 0 {
		return min(downlinkInflight, c.clientReceiveMax)
	}
	return downlinkInflight
}

// nextPacketID returns an id not in flight; the caller holds outMu and has
// checked that the window is not full, so the loop is short.
func (c *conn) nextPacketID() uint16 {
	for {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		if _, used := c.pending[c.nextID]; !used {
			return c.nextID
		}
	}
}

// acked routes a PUBACK to the waiting Deliver. An unknown id (a late
// PUBACK after a timed-out Deliver was retried elsewhere, or a confused
// client) is ignored.
func (c *conn) acked(id uint16, reason byte) {
	c.outMu.Lock()
	results, ok := c.pending[id]
	delete(c.pending, id)
	c.outMu.Unlock()
	if ok {
		results <- ackResult{reason: reason}
	}
}

// endDownlink reports every unacknowledged PUBLISH as closed and refuses
// new ones. It runs once the connection is over.
func (c *conn) endDownlink() {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	c.outClosed = true
	for id, results := range c.pending {
		results <- ackResult{closed: true}
		delete(c.pending, id)
	}
}

// subscribe answers the filters of one SUBSCRIBE with their SUBACK codes,
// recording the granted ones.
func (c *conn) subscribe(subs []subscription) []byte {
	authz, _ := c.srv.Auth.(SubscribeAuthorizer)
	codes := make([]byte, len(subs))
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for i, sub := range subs {
		switch {
		case !validFilter(sub.filter):
			codes[i] = c.pick(reasonUnspecified, reasonTopicFilterInvalid)
		case c.level == level5 && isShared(sub.filter):
			codes[i] = reasonSharedNotSupported
		case authz == nil || !authz.AuthorizeSubscribe(c.username, sub.filter):
			codes[i] = c.pick(reasonUnspecified, reasonNotAuthorized)
		default:
			granted := min(sub.qos, 1) // QoS 2 is not offered downlink
			if c.subs == nil {
				c.subs = make(map[string]byte)
			}
			c.subs[sub.filter] = granted // a repeated filter replaces (§3.8.4)
			codes[i] = granted
		}
	}
	return codes
}

// unsubscribe removes filters and returns the 5.0 UNSUBACK codes.
// Deliveries already in flight on a removed filter still complete.
func (c *conn) unsubscribe(filters []string) []byte {
	codes := make([]byte, len(filters))
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for i, f := range filters {
		if _, ok := c.subs[f]; ok {
			delete(c.subs, f)
			codes[i] = reasonSuccess
		} else {
			codes[i] = reasonNoSubscriptionExists
		}
	}
	return codes
}

// pick chooses the 3.1.1 or the 5.0 code for this connection.
func (c *conn) pick(code311, code5 byte) byte {
	if c.level == level5 {
		return code5
	}
	return code311
}

// isShared reports a 5.0 shared subscription filter (§4.8.2), which the
// server announces it does not support.
func isShared(filter string) bool {
	return strings.HasPrefix(filter, "$share/")
}
