// Package totp implements time-based one-time passwords (RFC 6238, on HOTP
// of RFC 4226) as authenticator apps use them: SHA-1, 6 digits, a 30 s
// step, with the otpauth:// URI those apps enrol from. It also seals the
// shared secrets for storage (AES-256-GCM) so that a copy of the database
// alone does not yield them.
//
// Validation accepts one step either side of now for clock drift and
// returns the step that matched; callers refuse a step at or before the
// last one accepted for the user, so a code works once.
package totp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strings"
	"time"
)

// Parameters every authenticator app supports; Tend uses no others.
const (
	Digits = 6
	Period = 30 * time.Second
	// Window is how many steps either side of now a code may come from.
	Window = 1
	// SecretSize is the secret length in bytes (160 bits, RFC 4226's
	// recommendation for HMAC-SHA-1).
	SecretSize = 20
)

// ErrBadCode is returned by ParseCode for anything that is not a code.
var ErrBadCode = errors.New("totp: a code is 6 digits")

// HOTP is RFC 4226's HOTP value of counter with the given hash and digits
// (6 to 9), zero-padded.
func HOTP(h func() hash.Hash, secret []byte, counter uint64, digits int) string {
	m := hmac.New(h, secret)
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], counter)
	m.Write(c[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, bin%mod)
}

// Step is the RFC 6238 time step of t (T0 = Unix epoch).
func Step(t time.Time) int64 {
	return t.Unix() / int64(Period/time.Second)
}

// Generate returns the code of secret at t.
func Generate(secret []byte, t time.Time) string {
	return HOTP(sha1.New, secret, uint64(Step(t)), Digits)
}

// Validate checks code against the steps around now and returns the step
// it matched. Every step in the window is compared, in constant time, so
// the time taken does not say which one matched.
func Validate(secret []byte, code string, now time.Time) (step int64, ok bool) {
	if len(code) != Digits {
		return 0, false
	}
	cur := Step(now)
	for s := cur - Window; s <= cur+Window; s++ {
		if s < 0 {
			continue
		}
		want := HOTP(sha1.New, secret, uint64(s), Digits)
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && !ok {
			step, ok = s, true
		}
	}
	return step, ok
}

// ParseCode normalises what a person typed: spaces and dashes (apps show
// "123 456") are dropped, and the rest must be exactly 6 ASCII digits.
func ParseCode(s string) (string, error) {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == ' ' || r == '-' || r == '\t':
		case r >= '0' && r <= '9':
			if b.Len() == Digits {
				return "", ErrBadCode
			}
			b.WriteRune(r)
		default:
			return "", ErrBadCode
		}
	}
	if b.Len() != Digits {
		return "", ErrBadCode
	}
	return b.String(), nil
}

// NewSecret returns a fresh random secret.
func NewSecret() []byte {
	b := make([]byte, SecretSize)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // cannot happen on supported platforms
	}
	return b
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeSecret is the base32 form people type into an authenticator app.
func EncodeSecret(secret []byte) string { return b32.EncodeToString(secret) }

// DecodeSecret reads the base32 form (case, spaces and padding forgiven).
func DecodeSecret(s string) ([]byte, error) {
	s = strings.ToUpper(strings.NewReplacer(" ", "", "-", "", "=", "").Replace(s))
	b, err := b32.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("totp: secret is not base32: %w", err)
	}
	return b, nil
}

// URI is the otpauth:// key URI authenticator apps enrol from (the format
// of Google Authenticator's Key Uri Format, which the others follow).
func URI(issuer, account string, secret []byte) string {
	q := url.Values{}
	q.Set("secret", EncodeSecret(secret))
	q.Set("issuer", issuer)
	q.Set("algorithm", "SHA1")
	q.Set("digits", fmt.Sprint(Digits))
	q.Set("period", fmt.Sprint(int(Period/time.Second)))
	label := url.PathEscape(issuer) + ":" + url.PathEscape(account)
	return "otpauth://totp/" + label + "?" + q.Encode()
}
