package oauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// AssertionType is the client_assertion_type of private_key_jwt (RFC 7523).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Assertion rules (SMART Backend Services).
const (
	// MaxAssertionLifetime: an assertion's exp may be at most this far
	// ahead, so a leaked one is useless soon and its jti need not be
	// remembered long.
	MaxAssertionLifetime = 5 * time.Minute
	// ClockSkew is the tolerance for clocks of clients and server.
	ClockSkew = 30 * time.Second
	// maxAssertionBytes bounds what is parsed before any check.
	maxAssertionBytes = 16 << 10
	maxJTILen         = 256
)

// Assertion is a verified client assertion.
type Assertion struct {
	Client  string
	JTI     string
	Expires time.Time
}

// KeyLookup returns the registered JWK Set of a client; an unknown client
// is an error wrapping store.ErrNotFound.
type KeyLookup func(ctx context.Context, client string) (jose.JSONWebKeySet, error)

// errAssertion is the cause of every refused assertion; the detail in the
// wrapping message is for the server log, never for the client.
var errAssertion = errors.New("client assertion refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errAssertion, fmt.Sprintf(format, args...))
}

// VerifyAssertion checks a client assertion: compact JWS, alg in
// SigningAlgs, a kid naming a key of the issuing client's registered set,
// a valid signature by that key, iss == sub == the client, aud one of
// audiences (the token endpoint's URLs), exp present, not past and at
// most MaxAssertionLifetime ahead, nbf and iat (if present) not in the
// future, and a jti. It does not check jti replay: that needs the store.
func VerifyAssertion(ctx context.Context, raw string, audiences []string, now time.Time, keys KeyLookup) (Assertion, error) {
	if len(raw) > maxAssertionBytes {
		return Assertion{}, refuse("assertion is over %d bytes", maxAssertionBytes)
	}
	// ParseSigned refuses every alg outside the allowlist, "none" included.
	tok, err := jwt.ParseSigned(raw, SigningAlgs)
	if err != nil {
		return Assertion{}, refuse("parse: %v", err)
	}
	if len(tok.Headers) != 1 {
		return Assertion{}, refuse("want exactly one signature")
	}
	h := tok.Headers[0]
	if h.KeyID == "" {
		return Assertion{}, refuse("header has no kid")
	}
	// The client is known only from the unverified claims; nothing is
	// trusted until the signature by that client's own key is checked.
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Assertion{}, refuse("claims: %v", err)
	}
	client := unverified.Issuer
	if client == "" {
		return Assertion{}, refuse("no iss")
	}
	set, err := keys(ctx, client)
	if err != nil {
		return Assertion{}, fmt.Errorf("%w: client keys: %w", errAssertion, err)
	}
	found := set.Key(h.KeyID)
	if len(found) != 1 {
		return Assertion{}, refuse("kid not registered for the client (%d matches)", len(found))
	}
	key := found[0]
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return Assertion{}, refuse("alg %s does not match the registered key's %s", h.Algorithm, key.Algorithm)
	}
	if !key.IsPublic() {
		return Assertion{}, refuse("registered key is not a public key")
	}
	var c jwt.Claims
	if err := tok.Claims(key.Key, &c); err != nil {
		return Assertion{}, refuse("signature: %v", err)
	}
	if c.Issuer != client || c.Subject != client {
		return Assertion{}, refuse("iss and sub must both be the client id")
	}
	if !audienceMatches(c.Audience, audiences) {
		return Assertion{}, refuse("aud %v is not the token endpoint", []string(c.Audience))
	}
	if c.Expiry == nil {
		return Assertion{}, refuse("no exp")
	}
	exp := c.Expiry.Time()
	if !exp.After(now.Add(-ClockSkew)) {
		return Assertion{}, refuse("expired")
	}
	if exp.After(now.Add(MaxAssertionLifetime + ClockSkew)) {
		return Assertion{}, refuse("exp more than %s ahead", MaxAssertionLifetime)
	}
	if c.NotBefore != nil && c.NotBefore.Time().After(now.Add(ClockSkew)) {
		return Assertion{}, refuse("nbf in the future")
	}
	if c.IssuedAt != nil && c.IssuedAt.Time().After(now.Add(ClockSkew)) {
		return Assertion{}, refuse("iat in the future")
	}
	if c.ID == "" || len(c.ID) > maxJTILen {
		return Assertion{}, refuse("jti missing or longer than %d", maxJTILen)
	}
	return Assertion{Client: client, JTI: c.ID, Expires: exp}, nil
}

func audienceMatches(aud jwt.Audience, want []string) bool {
	for _, w := range want {
		if w != "" && aud.Contains(w) {
			return true
		}
	}
	return false
}
