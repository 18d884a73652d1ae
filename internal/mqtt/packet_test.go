package mqtt

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/golden")

func TestReadVarint(t *testing.T) {
	tests := []struct {
		in      []byte
		want    int
		wantErr error
	}{
		{[]byte{0x00}, 0, nil},
		{[]byte{0x7f}, 127, nil},
		{[]byte{0x80, 0x01}, 128, nil},
		{[]byte{0xff, 0x7f}, 16383, nil},
		{[]byte{0x80, 0x80, 0x01}, 16384, nil},
		{[]byte{0xff, 0xff, 0xff, 0x7f}, maxRemainingLength, nil},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x01}, 0, errMalformed},
		{[]byte{0x80}, 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		got, n, err := readVarint(bytes.NewReader(tt.in))
		if !errors.Is(err, tt.wantErr) || (err == nil && (got != tt.want || n != len(tt.in))) {
			t.Errorf("readVarint(%x) = %d, %d, %v; want %d, %v", tt.in, got, n, err, tt.want, tt.wantErr)
		}
		if err == nil {
			if enc := appendVarint(nil, tt.want); !bytes.Equal(enc, tt.in) || varintLen(tt.want) != len(tt.in) {
				t.Errorf("appendVarint(%d) = %x, want %x", tt.want, enc, tt.in)
			}
		}
	}
}

func TestReadPacketLimits(t *testing.T) {
	big := frame(typePublish<<4, bytes.Repeat([]byte{'a'}, 100000))
	tests := []struct {
		name    string
		in      []byte
		limit   int
		wantLen int
		wantErr string
	}{
		{"ping", []byte{0xC0, 0}, 100, 0, ""},
		{"exactly at limit", frame(0x30, make([]byte, 98)), 100, 98, ""},
		{"one over limit", frame(0x30, make([]byte, 99)), 100, 0, "exceeds limit"},
		{"large body grown progressively", big, 200000, 100000, ""},
		{"truncated body", []byte{0x30, 10, 1, 2}, 100, 0, "unexpected EOF"},
		{"empty", nil, 100, 0, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, body, err := readPacket(bufio.NewReader(bytes.NewReader(tt.in)), tt.limit, make([]byte, 0, 64))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(body) != tt.wantLen {
				t.Fatalf("len %d err %v; want %d", len(body), err, tt.wantLen)
			}
			if !bytes.Equal(body, tt.in[len(tt.in)-tt.wantLen:]) {
				t.Fatal("body differs from input")
			}
		})
	}
}

func connectBody(t *testing.T, pkt []byte) []byte {
	t.Helper()
	_, body, err := readPacket(bufio.NewReader(bytes.NewReader(pkt)), 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestDecodeConnect(t *testing.T) {
	good := connectBody(t, buildConnect(level311, "cid", "dev", "secret", 60, nil))
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	// Offsets in a 3.1.1 CONNECT body: 0-5 "MQTT", 6 level, 7 flags.
	tests := []struct {
		name    string
		body    []byte
		wantErr error
		check   func(*connectPacket) bool
	}{
		{"3.1.1", good, nil, func(c *connectPacket) bool {
			return c.level == 4 && c.keepAlive == 60 && string(c.clientID) == "cid" &&
				string(c.username) == "dev" && string(c.password) == "secret" && c.cleanStart
		}},
		{"3.1", connectBody(t, buildConnect(level31, "x", "dev", "secret", 0, nil)), nil, nil},
		{"5.0 with properties", connectBody(t, buildConnect(level5, "x", "dev", "secret", 0,
			[]byte{0x11, 0, 0, 0, 10, 0x21, 0, 5, 0x27, 0, 0, 1, 0})), nil,
			func(c *connectPacket) bool { v, ok := c.props.u(0x21); return ok && v == 5 }},
		{"5.0 receive maximum 0", connectBody(t, buildConnect(level5, "x", "dev", "secret", 0, []byte{0x21, 0, 0})), errProtocol, nil},
		{"5.0 duplicate property", connectBody(t, buildConnect(level5, "x", "dev", "secret", 0, []byte{0x17, 1, 0x17, 1})), errProtocol, nil},
		{"5.0 publish-only property", connectBody(t, buildConnect(level5, "x", "dev", "secret", 0, []byte{0x23, 0, 1})), errProtocol, nil},
		{"level 6", mutate(func(b []byte) []byte { b[6] = 6; return b }), errUnsupportedVersion, nil},
		{"3.1 without credentials", connectBody(t, buildConnect(level31, "x", "", "", 0, nil)), nil, nil},
		{"bad protocol name", mutate(func(b []byte) []byte { b[2] = 'X'; return b }), errMalformed, nil},
		{"reserved flag", mutate(func(b []byte) []byte { b[7] |= 1; return b }), errMalformed, nil},
		{"password without username", mutate(func(b []byte) []byte { b[7] &^= 0x80; return b }), errMalformed, nil},
		{"will qos without will", mutate(func(b []byte) []byte { b[7] |= 0x08; return b }), errMalformed, nil},
		{"trailing bytes", append(append([]byte(nil), good...), 0), errMalformed, nil},
		{"truncated", good[:len(good)-2], errMalformed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c connectPacket
			err := decodeConnect(tt.body, &c)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.check != nil && !tt.check(&c) {
				t.Fatalf("decoded %+v", c)
			}
		})
	}
}

func TestDecodeConnectWill(t *testing.T) {
	for _, level := range []byte{level311, level5} {
		body := appendStr(nil, "MQTT")
		body = append(body, level, 0x80|0x40|0x04|0x08|0x02, 0, 30)
		if level == level5 {
			body = append(body, 0)
		}
		body = appendStr(body, "cid")
		if level == level5 {
			body = append(body, 5, 0x18, 0, 0, 0, 9) // will delay interval
		}
		body = appendStr(appendStr(body, "will/topic"), "bye")
		body = appendStr(appendStr(body, "dev"), "secret")
		var c connectPacket
		if err := decodeConnect(body, &c); err != nil || string(c.password) != "secret" {
			t.Fatalf("level %d: %v %+v", level, err, c)
		}
	}
}

// TestEncodeGolden pins the exact bytes the server sends.
func TestEncodeGolden(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
	}{
		{"connack_311_accepted", appendConnack(nil, level311, false, 0, 64, 512<<10, "")},
		{"connack_311_bad_credentials", appendConnack(nil, level311, false, 4, 0, 0, "")},
		{"connack_5_accepted", appendConnack(nil, level5, false, 0, 64, 512<<10, "tend-0001")},
		{"connack_5_not_authorized", appendConnack(nil, level5, false, reasonNotAuthorized, 0, 0, "")},
		{"puback_311", appendAck(nil, typePuback, 0x1234, level311, 0, "")},
		{"puback_5_success", appendAck(nil, typePuback, 0x1234, level5, 0, "")},
		{"puback_5_payload_format_invalid", appendAck(nil, typePuback, 1, level5, 0x99, "payload is not SenML")},
		{"pubrec_5_not_authorized_no_reason", appendAck(nil, typePubrec, 2, level5, 0x87, "")},
		{"suback_311_two_failures", appendSubackLike(nil, typeSuback, 5, level311, []byte{0x80, 0x80})},
		{"suback_5_one_failure", appendSubackLike(nil, typeSuback, 5, level5, []byte{0x80})},
		{"suback_311_granted_and_refused", appendSubackLike(nil, typeSuback, 7, level311, []byte{1, 0, 0x80})},
		{"suback_5_granted_and_refused", appendSubackLike(nil, typeSuback, 7, level5, []byte{1, 0x87, 0x8F, 0x9E})},
		{"unsuback_311", appendSubackLike(nil, typeUnsuback, 6, level311, []byte{0x11})},
		{"unsuback_5", appendSubackLike(nil, typeUnsuback, 6, level5, []byte{0x11, 0x11})},
		{"publish_311_qos1", publishPacketBytes(level311, 1, 0x0102, "tend/v1/devices/d/cmd", "application/json", `{"show":"alarm"}`)},
		{"publish_311_qos0", publishPacketBytes(level311, 0, 0, "tend/v1/devices/d/cmd", "", "x")},
		{"publish_5_qos1_content_type", publishPacketBytes(level5, 1, 0x0102, "tend/v1/devices/d/cmd", "application/json", `{"show":"alarm"}`)},
		{"publish_5_qos1_no_content_type", publishPacketBytes(level5, 1, 3, "t", "", "x")},
		{"disconnect_5_packet_too_large", appendDisconnect(nil, reasonPacketTooLarge)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("testdata", "golden", tt.name+".hex")
			got := hex.EncodeToString(tt.got) + "\n"
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Fatalf("got %s want %s", got, want)
			}
			// Every encoded packet must itself be a well-formed packet.
			if _, _, err := readPacket(bufio.NewReader(bytes.NewReader(tt.got)), 1<<20, nil); err != nil {
				t.Fatalf("encoded packet does not parse: %v", err)
			}
		})
	}
}

// publishPacketBytes is a whole server PUBLISH as the writer sends it
// (the content type is dropped for 3.1.1 by the caller of the encoder).
func publishPacketBytes(level, qos byte, id uint16, topic, contentType, payload string) []byte {
	if level != level5 {
		contentType = ""
	}
	return append(appendPublishHeader(nil, level, qos, id, topic, contentType, len(payload)), payload...)
}

// TestPublishEncodingRoundTrip decodes what the server encodes.
func TestPublishEncodingRoundTrip(t *testing.T) {
	tests := []struct {
		level, qos         byte
		topic, ct, payload string
	}{
		{level311, 1, "a/b", "", "hello"},
		{level311, 0, "a", "", ""},
		{level5, 1, "tend/v1/devices/x/cmd", "application/json", strings.Repeat("p", 300)},
		{level5, 1, strings.Repeat("t", 200), "", "\x00\xff"},
	}
	for _, tt := range tests {
		b := publishPacketBytes(tt.level, tt.qos, 9, tt.topic, tt.ct, tt.payload)
		rl := publishRemaining(tt.level, tt.qos, tt.topic, tt.ct, len(tt.payload))
		if len(b) != 1+varintLen(rl)+rl {
			t.Errorf("%q: %d bytes, publishRemaining says %d", tt.topic, len(b), 1+varintLen(rl)+rl)
		}
		h, body, err := readPacket(bufio.NewReader(bytes.NewReader(b)), 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		var p publishPacket
		if err := decodePublish(h, body, tt.level, &p); err != nil {
			t.Fatalf("%q: %v", tt.topic, err)
		}
		wantID := uint16(0)
		if tt.qos > 0 {
			wantID = 9
		}
		if string(p.topic) != tt.topic || string(p.payload) != tt.payload || p.qos != tt.qos ||
			p.packetID != wantID || string(p.props.contentType) != tt.ct || p.dup || p.retain {
			t.Errorf("round trip of %q: %+v", tt.topic, p)
		}
	}
}

func TestRejectCleansReason(t *testing.T) {
	tests := []struct {
		code     byte
		reason   string
		wantCode byte
		wantLen  int
	}{
		{0x99, "ok", 0x99, 2},
		{0x10, "x", 0x83, 1},
		{0x87, "a\x00b\xff", 0x87, 3},
		{0x90, strings.Repeat("é", 200), 0x90, 256},
	}
	for _, tt := range tests {
		var rej *RejectError
		if !errors.As(Reject(tt.code, tt.reason), &rej) {
			t.Fatal("Reject does not return *RejectError")
		}
		if rej.Code != tt.wantCode || len(rej.Reason) != tt.wantLen || !validUTF8([]byte(rej.Reason)) {
			t.Errorf("Reject(%#x, %q) = %#x %q", tt.code, tt.reason, rej.Code, rej.Reason)
		}
	}
}

// FuzzReadPacket feeds arbitrary bytes through the reader and every
// decoder for both protocol levels: nothing may panic, and no body may be
// larger than the declared limit.
func FuzzReadPacket(f *testing.F) {
	f.Add(buildConnect(level311, "c", "dev", "secret", 30, nil))
	f.Add(buildConnect(level5, "c", "dev", "secret", 30, []byte{0x21, 0, 10}))
	f.Add(buildPublish(level311, 1, false, 1, "tend/v1/devices/d/obs", "[]", nil))
	f.Add(buildPublish(level5, 2, false, 2, "t", "x", []byte{0x03, 0, 1, 'a'}))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f})
	f.Add(frame(typeSubscribe<<4|2, append(appendStr([]byte{0, 1}, "tend/+/#"), 1)))
	f.Add(frame(typeSubscribe<<4|2, append(appendStr([]byte{0, 1, 0}, "a/b"), 0x2d)))
	f.Add(frame(typeUnsubscribe<<4|2, appendStr([]byte{0, 2, 0}, "a/#")))
	const limit = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		buf := make([]byte, 0, 64)
		for range 16 {
			header, body, err := readPacket(r, limit, buf)
			if err != nil {
				return
			}
			if len(body) > limit || cap(body) > max(limit, cap(buf)) {
				t.Fatalf("body len %d cap %d beyond limit %d", len(body), cap(body), limit)
			}
			_ = checkFlags(header)
			for _, level := range []byte{level31, level311, level5} {
				switch header >> 4 {
				case typeConnect:
					var c connectPacket
					_ = decodeConnect(body, &c)
				case typePublish:
					var p publishPacket
					if decodePublish(header, body, level, &p) == nil {
						if !validUTF8(p.topic) || len(p.topic) == 0 {
							t.Fatalf("accepted invalid topic %q", p.topic)
						}
					}
				case typeSubscribe:
					if _, subs, err := decodeSubscribe(body, level); err == nil {
						for _, sub := range subs {
							if sub.filter == "" || !validUTF8([]byte(sub.filter)) || sub.qos > 2 {
								t.Fatalf("accepted filter %q qos %d", sub.filter, sub.qos)
							}
							// A valid filter without wildcards matches itself.
							if validFilter(sub.filter) && !strings.ContainsAny(sub.filter, "+#") && !matchTopic(sub.filter, sub.filter) {
								t.Fatalf("filter %q does not match itself", sub.filter)
							}
						}
					}
				case typeUnsubscribe:
					decodeUnsubscribe(body, level)
				case typePuback, typePubrec, typePubrel, typePubcomp:
					decodeAck(int(header>>4), body, level)
				case typeDisconnect:
					decodeDisconnect(body, level)
				case typeConnack:
					var p properties
					d := decoder{b: body}
					d.u16()
					d.readProperties(typeConnack, &p)
				}
			}
		}
	})
}
