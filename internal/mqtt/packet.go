package mqtt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Control packet types (MQTT 3.1.1 §2.2.1, MQTT 5.0 §2.1.2).
const (
	typeConnect     = 1
	typeConnack     = 2
	typePublish     = 3
	typePuback      = 4
	typePubrec      = 5
	typePubrel      = 6
	typePubcomp     = 7
	typeSubscribe   = 8
	typeSuback      = 9
	typeUnsubscribe = 10
	typeUnsuback    = 11
	typePingreq     = 12
	typePingresp    = 13
	typeDisconnect  = 14
	typeAuth        = 15
)

// Protocol levels carried in CONNECT.
const (
	level31  = 3 // MQTT 3.1 ("MQIsdp")
	level311 = 4
	level5   = 5
)

// maxRemainingLength is the largest value the variable byte integer encodes.
const maxRemainingLength = 268435455

// MQTT 5.0 reason codes used by the server.
const (
	reasonSuccess              = 0x00
	reasonNoSubscriptionExists = 0x11
	reasonUnspecified          = 0x80
	reasonMalformed            = 0x81
	reasonProtocolError        = 0x82
	reasonImplementation       = 0x83
	reasonUnsupportedVersion   = 0x84
	reasonClientIDInvalid      = 0x85
	reasonBadCredentials       = 0x86
	reasonNotAuthorized        = 0x87
	reasonServerUnavailable    = 0x88
	reasonServerShuttingDown   = 0x8B
	reasonBadAuthMethod        = 0x8C
	reasonKeepAliveTimeout     = 0x8D
	reasonSessionTakenOver     = 0x8E
	reasonTopicNameInvalid     = 0x90
	reasonPacketIDNotFound     = 0x92
	reasonPacketTooLarge       = 0x95
	reasonTopicAliasInvalid    = 0x94
	reasonPayloadFormat        = 0x99
	reasonAdministrative       = 0x98
	reasonTopicFilterInvalid   = 0x8F
	reasonSharedNotSupported   = 0x9E
	reasonSubIDsNotSupported   = 0xA1
)

// protocolError is a violation by the peer. reason is the MQTT 5.0 reason
// code sent in DISCONNECT (or CONNACK) before the connection is closed.
type protocolError struct {
	reason byte
	msg    string
}

func (e *protocolError) Error() string { return e.msg }

var (
	errMalformed          = &protocolError{reasonMalformed, "malformed packet"}
	errProtocol           = &protocolError{reasonProtocolError, "protocol violation"}
	errTopicAlias         = &protocolError{reasonTopicAliasInvalid, "topic alias not supported"}
	errTopicInvalid       = &protocolError{reasonTopicNameInvalid, "invalid topic name"}
	errUnsupportedVersion = errors.New("unsupported protocol version")
)

// packetTooLargeError reports a packet whose declared size exceeds the limit.
// The body has not been read.
type packetTooLargeError struct{ size, limit int }

func (e *packetTooLargeError) Error() string {
	return fmt.Sprintf("packet of %d bytes exceeds limit of %d", e.size, e.limit)
}

// reuseLimit caps the per-connection read buffer that is kept between
// packets, so that one large packet does not pin memory for the life of the
// connection.
const reuseLimit = 4 << 10

// growChunk is the first allocation for a body larger than the reusable
// buffer. Bodies are grown as bytes actually arrive, so a peer that declares
// a large packet and then stalls costs at most this much.
const growChunk = 16 << 10

// readPacket reads one control packet: the fixed header byte and the body.
// The body aliases buf when buf is large enough; otherwise it is newly
// allocated, growing only as data arrives. A packet whose total size exceeds
// limit is refused before any of its body is read.
func readPacket(r *bufio.Reader, limit int, buf []byte) (header byte, body []byte, err error) {
	header, err = r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, lenBytes, err := readVarint(r)
	if err != nil {
		return header, nil, err
	}
	if total := 1 + lenBytes + n; total > limit {
		return header, nil, &packetTooLargeError{size: total, limit: limit}
	}
	if n <= cap(buf) {
		body = buf[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return header, nil, noEOF(err)
		}
		return header, body, nil
	}
	body = make([]byte, 0, min(n, growChunk))
	for len(body) < n {
		if len(body) == cap(body) {
			grown := make([]byte, len(body), min(n, 2*cap(body)))
			copy(grown, body)
			body = grown
		}
		m, err := io.ReadFull(r, body[len(body):cap(body)])
		body = body[:len(body)+m]
		if err != nil {
			return header, nil, noEOF(err)
		}
	}
	return header, body, nil
}

// noEOF turns a clean EOF inside a packet into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readVarint reads a variable byte integer (at most four bytes).
func readVarint(r io.ByteReader) (value, size int, err error) {
	mult := 1
	for size < 4 {
		b, err := r.ReadByte()
		if err != nil {
			return 0, size, noEOF(err)
		}
		size++
		value += int(b&0x7f) * mult
		if b&0x80 == 0 {
			return value, size, nil
		}
		mult *= 128
	}
	return 0, size, errMalformed
}

// appendVarint appends v as a variable byte integer.
func appendVarint(b []byte, v int) []byte {
	for {
		d := byte(v % 128)
		v /= 128
		if v > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if v == 0 {
			return b
		}
	}
}

// decoder reads fields from a packet body. The first error sticks, so
// callers check err once after a sequence of reads.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) u8() byte {
	if len(d.b) < 1 {
		d.fail(errMalformed)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u16() uint16 {
	if len(d.b) < 2 {
		d.fail(errMalformed)
		return 0
	}
	v := uint16(d.b[0])<<8 | uint16(d.b[1])
	d.b = d.b[2:]
	return v
}

func (d *decoder) u32() uint32 {
	if len(d.b) < 4 {
		d.fail(errMalformed)
		return 0
	}
	v := uint32(d.b[0])<<24 | uint32(d.b[1])<<16 | uint32(d.b[2])<<8 | uint32(d.b[3])
	d.b = d.b[4:]
	return v
}

func (d *decoder) varint() int {
	v, size := 0, 0
	mult := 1
	for {
		if size == 4 || len(d.b) == 0 {
			d.fail(errMalformed)
			return 0
		}
		c := d.b[0]
		d.b = d.b[1:]
		size++
		v += int(c&0x7f) * mult
		if c&0x80 == 0 {
			return v
		}
		mult *= 128
	}
}

// binary reads two-byte-length-prefixed bytes, aliasing the body.
func (d *decoder) binary() []byte {
	n := int(d.u16())
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail(errMalformed)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// str reads a UTF-8 encoded string (§1.5.3): well-formed UTF-8 without
// U+0000. Surrogates are rejected by utf8.Valid.
func (d *decoder) str() []byte {
	v := d.binary()
	if d.err == nil && !validUTF8(v) {
		d.fail(errMalformed)
		return nil
	}
	return v
}

func validUTF8(b []byte) bool {
	for _, c := range b {
		if c == 0 {
			return false
		}
	}
	return utf8.Valid(b)
}

// Property value kinds (MQTT 5.0 §2.2.2.2).
const (
	propByte = iota + 1
	propU16
	propU32
	propVarint
	propString
	propBinary
	propPair
)

// willProps is the pseudo packet type used for will properties in CONNECT.
const willProps = 0

type propSpec struct {
	kind  uint8
	where uint16 // bit set of packet types where the property may appear
}

func in(types ...int) uint16 {
	var m uint16
	for _, t := range types {
		m |= 1 << t
	}
	return m
}

var propSpecs = map[byte]propSpec{
	0x01: {propByte, in(typePublish, willProps)},
	0x02: {propU32, in(typePublish, willProps)},
	0x03: {propString, in(typePublish, willProps)},
	0x08: {propString, in(typePublish, willProps)},
	0x09: {propBinary, in(typePublish, willProps)},
	0x0B: {propVarint, in(typePublish, typeSubscribe)},
	0x11: {propU32, in(typeConnect, typeConnack, typeDisconnect)},
	0x12: {propString, in(typeConnack)},
	0x13: {propU16, in(typeConnack)},
	0x15: {propString, in(typeConnect, typeConnack, typeAuth)},
	0x16: {propBinary, in(typeConnect, typeConnack, typeAuth)},
	0x17: {propByte, in(typeConnect)},
	0x18: {propU32, in(willProps)},
	0x19: {propByte, in(typeConnect)},
	0x1A: {propString, in(typeConnack)},
	0x1C: {propString, in(typeConnack, typeDisconnect)},
	0x1F: {propString, in(typeConnack, typePuback, typePubrec, typePubrel, typePubcomp, typeSuback, typeUnsuback, typeDisconnect, typeAuth)},
	0x21: {propU16, in(typeConnect, typeConnack)},
	0x22: {propU16, in(typeConnect, typeConnack)},
	0x23: {propU16, in(typePublish)},
	0x24: {propByte, in(typeConnack)},
	0x25: {propByte, in(typeConnack)},
	0x26: {propPair, 0xffff},
	0x27: {propU32, in(typeConnect, typeConnack)},
	0x28: {propByte, in(typeConnack)},
	0x29: {propByte, in(typeConnack)},
	0x2A: {propByte, in(typeConnack)},
}

// properties holds the MQTT 5.0 properties the server acts on; the rest
// are validated and skipped.
type properties struct {
	has             [64]bool // by property id; only ids < 64 exist
	byteVals        [64]byte
	intVals         [64]uint32
	contentType     []byte
	reasonString    []byte
	assignedID      []byte
	authMethodGiven bool
}

func (p *properties) u(id byte) (uint32, bool) { return p.intVals[id], p.has[id] }

// readProperties reads a property block for the given packet type.
func (d *decoder) readProperties(packetType int, p *properties) {
	n := d.varint()
	if d.err != nil {
		return
	}
	if n > len(d.b) {
		d.fail(errMalformed)
		return
	}
	pd := decoder{b: d.b[:n]}
	d.b = d.b[n:]
	for len(pd.b) > 0 && pd.err == nil {
		id := pd.varint()
		if pd.err != nil {
			break
		}
		spec, ok := propSpecs[byte(min(id, 0xff))]
		if !ok || id > 0xff || spec.where&(1<<packetType) == 0 {
			pd.fail(errProtocol)
			break
		}
		if spec.kind != propPair && !(id == 0x0B && packetType == typePublish) {
			if p.has[id] {
				pd.fail(errProtocol) // single-valued property repeated
				break
			}
		}
		p.has[id] = true
		switch spec.kind {
		case propByte:
			v := pd.u8()
			if v > 1 && id != 0x24 {
				pd.fail(errProtocol)
			}
			p.byteVals[id] = v
			p.intVals[id] = uint32(v)
		case propU16:
			p.intVals[id] = uint32(pd.u16())
		case propU32:
			p.intVals[id] = pd.u32()
		case propVarint:
			p.intVals[id] = uint32(pd.varint())
		case propString:
			v := pd.str()
			switch id {
			case 0x03:
				p.contentType = v
			case 0x1F:
				p.reasonString = v
			case 0x12:
				p.assignedID = v
			case 0x15:
				p.authMethodGiven = true
			}
		case propBinary:
			pd.binary()
		case propPair:
			pd.str()
			pd.str()
		}
	}
	if pd.err != nil {
		d.fail(pd.err)
		return
	}
	// Zero is a protocol error for these (§3.1.2.11).
	for _, id := range []byte{0x21, 0x27, 0x0B} {
		if p.has[id] && p.intVals[id] == 0 {
			d.fail(errProtocol)
			return
		}
	}
}

// connectPacket is a decoded CONNECT.
type connectPacket struct {
	level       byte
	cleanStart  bool
	keepAlive   uint16
	clientID    []byte
	hasUsername bool
	username    []byte
	hasPassword bool
	password    []byte
	props       properties
}

// decodeConnect decodes a CONNECT body. For an unknown protocol level it
// returns errUnsupportedVersion with level set, so the caller can answer
// with CONNACK 0x01.
func decodeConnect(body []byte, c *connectPacket) error {
	d := decoder{b: body}
	name := d.str()
	c.level = d.u8()
	if d.err != nil {
		return d.err
	}
	switch {
	case string(name) == "MQTT" && (c.level == level311 || c.level == level5):
	case string(name) == "MQIsdp" && c.level == level31:
	case string(name) == "MQTT" || string(name) == "MQIsdp":
		return errUnsupportedVersion
	default:
		return errMalformed
	}
	flags := d.u8()
	c.keepAlive = d.u16()
	if d.err != nil {
		return d.err
	}
	if flags&0x01 != 0 {
		return errMalformed // reserved flag (§3.1.2.3)
	}
	c.cleanStart = flags&0x02 != 0
	will := flags&0x04 != 0
	willQoS := (flags >> 3) & 0x03
	willRetain := flags&0x20 != 0
	c.hasPassword = flags&0x40 != 0
	c.hasUsername = flags&0x80 != 0
	if willQoS == 3 || (!will && (willQoS != 0 || willRetain)) {
		return errMalformed
	}
	if c.level != level5 && c.hasPassword && !c.hasUsername {
		return errMalformed // §3.1.2.9 (relaxed in 5.0)
	}
	if c.level == level5 {
		d.readProperties(typeConnect, &c.props)
	}
	c.clientID = d.str()
	if will {
		// The will is accepted and ignored: devices uplink only.
		if c.level == level5 {
			var wp properties
			d.readProperties(willProps, &wp)
		}
		d.str()    // will topic
		d.binary() // will payload
	}
	if c.hasUsername {
		c.username = d.str()
	}
	if c.hasPassword {
		c.password = d.binary()
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return errMalformed
	}
	return nil
}

// publishPacket is a decoded PUBLISH. Slices alias the packet body.
type publishPacket struct {
	dup, retain bool
	qos         byte
	topic       []byte
	packetID    uint16
	props       properties
	payload     []byte
}

// decodePublish decodes a PUBLISH body given the fixed header flags.
func decodePublish(header byte, body []byte, level byte, p *publishPacket) error {
	p.dup = header&0x08 != 0
	p.qos = (header >> 1) & 0x03
	p.retain = header&0x01 != 0
	if p.qos == 3 {
		return errMalformed
	}
	if p.qos == 0 && p.dup {
		return errMalformed // §3.3.1.1
	}
	d := decoder{b: body}
	p.topic = d.str()
	if p.qos > 0 {
		p.packetID = d.u16()
		if d.err == nil && p.packetID == 0 {
			return errProtocol
		}
	}
	if level == level5 {
		p.props = properties{}
		d.readProperties(typePublish, &p.props)
		if d.err == nil {
			if p.props.has[0x23] {
				return errTopicAlias // Topic Alias Maximum 0 is advertised
			}
			if p.props.has[0x0B] {
				return errProtocol // server-to-client only
			}
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(p.topic) == 0 {
		return errTopicInvalid
	}
	for _, c := range p.topic {
		if c == '+' || c == '#' {
			return errTopicInvalid
		}
	}
	p.payload = d.b
	return nil
}

// subscription is one topic filter of a SUBSCRIBE with its requested QoS.
type subscription struct {
	filter string
	qos    byte
}

// errSubscriptionIDs answers a SUBSCRIBE carrying a Subscription Identifier,
// which CONNACK announced as unsupported (MQTT 5.0 §3.8.2.1.2).
var errSubscriptionIDs = &protocolError{reasonSubIDsNotSupported, "subscription identifiers not supported"}

// decodeSubscribe decodes a SUBSCRIBE: its packet id and its filters in
// order. Filters are only checked to be non-empty UTF-8 here; their syntax
// is answered per filter in SUBACK.
func decodeSubscribe(body []byte, level byte) (packetID uint16, subs []subscription, err error) {
	d := decoder{b: body}
	packetID = d.u16()
	if level == level5 {
		var p properties
		d.readProperties(typeSubscribe, &p)
		if d.err == nil && p.has[0x0B] {
			return 0, nil, errSubscriptionIDs
		}
	}
	for d.err == nil && len(d.b) > 0 {
		f := d.str()
		opts := d.u8()
		if d.err != nil {
			break
		}
		if len(f) == 0 {
			return 0, nil, errProtocol
		}
		if level == level5 {
			if opts&0xC0 != 0 || opts&0x03 == 3 || (opts>>4)&0x03 == 3 {
				return 0, nil, errMalformed
			}
		} else if opts&0xFC != 0 || opts&0x03 == 3 {
			return 0, nil, errMalformed
		}
		subs = append(subs, subscription{filter: string(f), qos: opts & 0x03})
	}
	if d.err != nil {
		return 0, nil, d.err
	}
	if packetID == 0 || len(subs) == 0 {
		return 0, nil, errProtocol
	}
	return packetID, subs, nil
}

// decodeUnsubscribe decodes an UNSUBSCRIBE: its packet id and filters.
func decodeUnsubscribe(body []byte, level byte) (packetID uint16, filters []string, err error) {
	d := decoder{b: body}
	packetID = d.u16()
	if level == level5 {
		var p properties
		d.readProperties(typeUnsubscribe, &p)
	}
	for d.err == nil && len(d.b) > 0 {
		f := d.str()
		if d.err != nil {
			break
		}
		if len(f) == 0 {
			return 0, nil, errProtocol
		}
		filters = append(filters, string(f))
	}
	if d.err != nil {
		return 0, nil, d.err
	}
	if packetID == 0 || len(filters) == 0 {
		return 0, nil, errProtocol
	}
	return packetID, filters, nil
}

// decodeAck decodes PUBACK, PUBREC, PUBREL and PUBCOMP bodies.
func decodeAck(packetType int, body []byte, level byte) (packetID uint16, reason byte, props properties, err error) {
	d := decoder{b: body}
	packetID = d.u16()
	if level == level5 && len(d.b) > 0 {
		reason = d.u8()
		if len(d.b) > 0 {
			d.readProperties(packetType, &props)
		}
	}
	if d.err != nil {
		return 0, 0, props, d.err
	}
	if len(d.b) != 0 {
		return 0, 0, props, errMalformed
	}
	if packetID == 0 {
		return 0, 0, props, errProtocol
	}
	return packetID, reason, props, nil
}

// decodeDisconnect validates a DISCONNECT body.
func decodeDisconnect(body []byte, level byte) (reason byte, err error) {
	if level != level5 {
		if len(body) != 0 {
			return 0, errMalformed
		}
		return 0, nil
	}
	d := decoder{b: body}
	if len(d.b) > 0 {
		reason = d.u8()
	}
	if len(d.b) > 0 {
		var p properties
		d.readProperties(typeDisconnect, &p)
	}
	if d.err == nil && len(d.b) != 0 {
		return 0, errMalformed
	}
	return reason, d.err
}

// requiredFlags are the fixed-header flags mandated per packet type
// (§2.2.2); PUBLISH is checked separately.
var requiredFlags = [16]byte{typePubrel: 0x02, typeSubscribe: 0x02, typeUnsubscribe: 0x02}

// checkFlags validates the low nibble of a fixed header.
func checkFlags(header byte) error {
	t := header >> 4
	if t == typePublish {
		return nil
	}
	if header&0x0f != requiredFlags[t] {
		return errMalformed
	}
	return nil
}

// Encoders append complete packets to b.

func appendConnack(b []byte, level byte, sessionPresent bool, code byte, receiveMax, maxPacket int, assignedID string) []byte {
	var flags byte
	if sessionPresent {
		flags = 1
	}
	if level != level5 {
		return append(b, typeConnack<<4, 2, flags, code)
	}
	var props []byte
	var scratch [64]byte
	props = scratch[:0]
	if code == reasonSuccess {
		props = append(props, 0x21, byte(receiveMax>>8), byte(receiveMax))
		props = append(props, 0x27, byte(maxPacket>>24), byte(maxPacket>>16), byte(maxPacket>>8), byte(maxPacket))
		// Wildcard subscriptions are available (absent property), subject to
		// the authorizer; subscription ids and shared subscriptions are not.
		props = append(props, 0x29, 0, 0x2A, 0)
		if assignedID != "" {
			props = append(props, 0x12, byte(len(assignedID)>>8), byte(len(assignedID)))
			props = append(props, assignedID...)
		}
	}
	rl := 2 + varintLen(len(props)) + len(props)
	b = append(b, typeConnack<<4)
	b = appendVarint(b, rl)
	b = append(b, flags, code)
	b = appendVarint(b, len(props))
	return append(b, props...)
}

// appendAck appends PUBACK, PUBREC or PUBCOMP. In 5.0 a non-zero reason
// code and an optional reason string are included.
func appendAck(b []byte, packetType byte, packetID uint16, level byte, reason byte, reasonString string) []byte {
	if level != level5 || (reason == reasonSuccess && reasonString == "") {
		return append(b, packetType<<4, 2, byte(packetID>>8), byte(packetID))
	}
	propLen := 0
	if reasonString != "" {
		propLen = 3 + len(reasonString)
	}
	b = append(b, packetType<<4)
	b = appendVarint(b, 3+varintLen(propLen)+propLen)
	b = append(b, byte(packetID>>8), byte(packetID), reason)
	b = appendVarint(b, propLen)
	if reasonString != "" {
		b = append(b, 0x1F, byte(len(reasonString)>>8), byte(len(reasonString)))
		b = append(b, reasonString...)
	}
	return b
}

// appendSubackLike appends SUBACK or UNSUBACK with one code per filter.
// A 3.1.1 UNSUBACK carries no codes.
func appendSubackLike(b []byte, packetType byte, packetID uint16, level byte, codes []byte) []byte {
	if packetType == typeUnsuback && level != level5 {
		return append(b, typeUnsuback<<4, 2, byte(packetID>>8), byte(packetID))
	}
	rl := 2 + len(codes)
	if level == level5 {
		rl++ // empty property block
	}
	b = append(b, packetType<<4)
	b = appendVarint(b, rl)
	b = append(b, byte(packetID>>8), byte(packetID))
	if level == level5 {
		b = append(b, 0)
	}
	return append(b, codes...)
}

// publishRemaining is the remaining length of a server PUBLISH carrying
// payloadLen bytes; the content type property is sent to 5.0 clients only.
func publishRemaining(level, qos byte, topic, contentType string, payloadLen int) int {
	n := 2 + len(topic) + payloadLen
	if qos > 0 {
		n += 2
	}
	if level == level5 {
		props := 0
		if contentType != "" {
			props = 3 + len(contentType)
		}
		n += varintLen(props) + props
	}
	return n
}

// appendPublishHeader appends a server PUBLISH up to, not including, the
// payload, so a large payload can be written without copying it. DUP and
// RETAIN are never set: nothing is resent or retained.
func appendPublishHeader(b []byte, level, qos byte, packetID uint16, topic, contentType string, payloadLen int) []byte {
	b = append(b, typePublish<<4|qos<<1)
	b = appendVarint(b, publishRemaining(level, qos, topic, contentType, payloadLen))
	b = append(b, byte(len(topic)>>8), byte(len(topic)))
	b = append(b, topic...)
	if qos > 0 {
		b = append(b, byte(packetID>>8), byte(packetID))
	}
	if level == level5 {
		if contentType == "" {
			return append(b, 0)
		}
		b = appendVarint(b, 3+len(contentType))
		b = append(b, 0x03, byte(len(contentType)>>8), byte(len(contentType)))
		b = append(b, contentType...)
	}
	return b
}

func appendDisconnect(b []byte, reason byte) []byte {
	return append(b, typeDisconnect<<4, 2, reason, 0)
}

func varintLen(v int) int {
	n := 1
	for v >= 128 {
		v /= 128
		n++
	}
	return n
}
