package mqtt

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Errors an Authenticator returns to choose the CONNACK code. Any other
// error is reported to the client as "server unavailable".
var (
	ErrBadCredentials = errors.New("mqtt: bad user name or password")
	ErrNotAuthorized  = errors.New("mqtt: not authorized")
)

// Reason codes accepted by Reject (MQTT 5.0 §2.4).
const (
	ReasonImplementationSpecific byte = 0x83
	ReasonNotAuthorized          byte = 0x87
	ReasonTopicNameInvalid       byte = 0x90
	ReasonPayloadFormatInvalid   byte = 0x99
)

// maxReasonString bounds the reason string sent to the device.
const maxReasonString = 256

// RejectError is returned by a Handler for a message it has already
// durably dead-lettered. The reason is user-facing: it is sent to the device.
type RejectError struct {
	Code   byte
	Reason string
}

func (e *RejectError) Error() string { return "mqtt: rejected: " + e.Reason }

// Reject wraps a reason the handler has already durably dead-lettered.
// MQTT 3.1.1 clients receive a normal acknowledgement (3.1.1 has no
// per-message error); MQTT 5.0 clients receive PUBACK/PUBREC with code and
// a reason string. Codes other than 0x87, 0x90, 0x99 and 0x83 are sent as
// 0x83 (implementation specific error). The reason must not contain secrets
// or patient data.
func Reject(code byte, reason string) error {
	switch code {
	case ReasonNotAuthorized, ReasonTopicNameInvalid, ReasonPayloadFormatInvalid, ReasonImplementationSpecific:
	default:
		code = ReasonImplementationSpecific
	}
	return &RejectError{Code: code, Reason: cleanReason(reason)}
}

// cleanReason makes a reason string valid MQTT UTF-8 of bounded length.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "?")
	if len(s) <= maxReasonString {
		return s
	}
	s = s[:maxReasonString]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
