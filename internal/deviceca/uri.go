package deviceca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"

	"github.com/tendhealth/tend/internal/store"
)

// uriPrefix starts the URI SAN naming the device a certificate belongs
// to: urn:tend:device:ID. RFC 8141 makes "urn" and the namespace case
// insensitive; the id is not.
const uriPrefix = "urn:tend:device:"

// DeviceURI is the URI a device certificate carries for id.
func DeviceURI(id string) string { return uriPrefix + id }

// ParseDeviceURI returns the device id of a urn:tend:device:ID URI. The id
// must be a valid device id: MQTT and NATS wildcards and separators never
// make it into a topic.
func ParseDeviceURI(s string) (string, error) {
	if len(s) < len(uriPrefix) || !strings.EqualFold(s[:len(uriPrefix)], uriPrefix) {
		return "", fmt.Errorf("%q is not a %sID URI", s, uriPrefix)
	}
	id := s[len(uriPrefix):]
	if !store.ValidDeviceID(id) {
		return "", fmt.Errorf("device id %q in the certificate is not valid (letters, digits, '-' and '_', at most 64)", id)
	}
	return id, nil
}

func uriString(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.String()
}

// names reports whether the certificate carries a device URI at all, well
// formed or not: such a certificate is decided by the device CA alone.
func names(leaf *x509.Certificate) bool {
	for _, u := range leaf.URIs {
		s := uriString(u)
		if len(s) >= len(uriPrefix) && strings.EqualFold(s[:len(uriPrefix)], uriPrefix) {
			return true
		}
	}
	return false
}

// DeviceOf returns the device id a certificate names: exactly one
// urn:tend:device URI, and a common name that is empty or the same id.
func DeviceOf(leaf *x509.Certificate) (string, error) {
	id := ""
	for _, u := range leaf.URIs {
		s := uriString(u)
		if len(s) < len(uriPrefix) || !strings.EqualFold(s[:len(uriPrefix)], uriPrefix) {
			continue
		}
		if id != "" {
			return "", errors.New("the certificate names more than one device")
		}
		var err error
		if id, err = ParseDeviceURI(s); err != nil {
			return "", err
		}
	}
	if id == "" {
		return "", errors.New("the certificate names no device (no " + uriPrefix + "ID URI)")
	}
	if cn := leaf.Subject.CommonName; cn != "" && cn != id {
		return "", fmt.Errorf("the certificate's common name %q differs from its device URI %q", cn, id)
	}
	return id, nil
}

// ParseSerial reads a certificate serial number as hex, with or without
// colons between bytes (as openssl prints it) or a 0x prefix, and returns
// it as Tend records it: lowercase hex without leading zeros.
func ParseSerial(s string) (string, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	t = strings.ReplaceAll(t, ":", "")
	if t == "" || len(t) > 40 { // RFC 5280: at most 20 octets
		return "", fmt.Errorf("serial %q: want up to 40 hex digits", s)
	}
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("serial %q: want a positive hex number", s)
	}
	return n.Text(16), nil
}

func serialText(n *big.Int) string { return n.Text(16) }
