package store

import (
	"crypto/rand"
	"encoding/hex"
)

// NewID returns a fresh random record id of 16 hex digits: valid as a FHIR
// logical id, a URL path segment and a device id alike.
func NewID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// ValidDeviceID reports whether id may name a device. A device id becomes
// an MQTT user name and topic level (tend/v1/devices/{id}/...) and may end
// up in NATS subjects, so it is limited to letters, digits, '-' and '_':
// no MQTT wildcards ('+', '#') or separator ('/'), no NATS wildcards ('*',
// '>') or separator ('.'), no spaces or control characters.
func ValidDeviceID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
