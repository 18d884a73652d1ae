package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tendhealth/tend/internal/store"
)

func jwkJSON(t testing.TB, k jose.JSONWebKey) json.RawMessage {
	t.Helper()
	b, err := k.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseJWKS(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	pub := func(key any, kid, alg string) json.RawMessage {
		return jwkJSON(t, jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: "sig"})
	}
	set := func(keys ...json.RawMessage) []byte {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return b
	}
	cases := []struct {
		name    string
		jwks    []byte
		errLike string // "" = accepted
	}{
		{"rsa public", set(pub(&rsaKey.PublicKey, "r1", "RS384")), ""},
		{"ec public, no alg", set(pub(&p384.PublicKey, "e1", "")), ""},
		{"two keys", set(pub(&rsaKey.PublicKey, "r1", ""), pub(&p384.PublicKey, "e1", "ES384")), ""},
		{"rsa private", set(pub(rsaKey, "r1", "RS384")), "private"},
		{"ec private", set(pub(p384, "e1", "ES384")), "private"},
		{"symmetric", set(jwkJSON(t, jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "h1", Algorithm: "HS256"})), "symmetric"},
		{"small rsa", set(pub(&small.PublicKey, "r1", "")), "2048"},
		{"p521", set(pub(&p521.PublicKey, "e1", "")), "P-256 or P-384"},
		{"no kid", set(pub(&rsaKey.PublicKey, "", "")), "kid"},
		{"duplicate kid", set(pub(&rsaKey.PublicKey, "k", ""), pub(&p384.PublicKey, "k", "")), "twice"},
		{"alg none", set(pub(&rsaKey.PublicKey, "r1", "none")), "not accepted"},
		{"alg mismatch", set(pub(&p384.PublicKey, "e1", "ES256")), "not accepted"},
		{"rsa with HS256 alg", set(pub(&rsaKey.PublicKey, "r1", "HS256")), "not accepted"},
		{"empty", []byte(`{"keys":[]}`), "no keys"},
		{"not json", []byte(`keys`), "not a JSON Web Key Set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseJWKS(c.jwks)
			switch {
			case c.errLike == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.errLike != "" && (err == nil || !strings.Contains(err.Error(), c.errLike)):
				t.Fatalf("got %v, want an error like %q", err, c.errLike)
			}
		})
	}
}

// fuzzKeys is one registered client for the assertion fuzzer.
type fuzzKeys struct {
	key *ecdsa.PrivateKey
	set jose.JSONWebKeySet
}

func newFuzzKeys(t testing.TB) fuzzKeys {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return fuzzKeys{key: k, set: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256"}}}}
}

func (f fuzzKeys) sign(t testing.TB, c jwt.Claims) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var fuzzNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

const fuzzAud = "https://tend.example/auth/token"

// FuzzVerifyAssertion: no input panics, and any input that verifies must
// be exactly a signed assertion: mutating the valid seed may only be
// accepted if the signed content is unchanged.
func FuzzVerifyAssertion(f *testing.F) {
	keys := newFuzzKeys(f)
	good := keys.sign(f, jwt.Claims{Issuer: "c1", Subject: "c1", Audience: jwt.Audience{fuzzAud}, ID: "j1", Expiry: jwt.NewNumericDate(fuzzNow.Add(time.Minute))})
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIiwia2lkIjoiazEifQ.eyJpc3MiOiJjMSJ9.")
	f.Add("a.b.c")
	f.Add("")
	lookup := func(_ context.Context, id string) (jose.JSONWebKeySet, error) {
		if id != "c1" {
			return jose.JSONWebKeySet{}, fmt.Errorf("client %q: %w", id, store.ErrNotFound)
		}
		return keys.set, nil
	}
	f.Fuzz(func(t *testing.T, raw string) {
		a, err := VerifyAssertion(context.Background(), raw, []string{fuzzAud}, fuzzNow, lookup)
		if err != nil {
			return
		}
		if a.Client != "c1" || a.JTI != "j1" {
			t.Fatalf("accepted a forged assertion: %+v", a)
		}
	})
}

// FuzzParseJWKS: no input panics, and every accepted key is a public
// signing key with a kid.
func FuzzParseJWKS(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1"}}})
	f.Add(good)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA","kid":"x"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := ParseJWKS(b)
		if err != nil {
			return
		}
		for _, key := range set.Keys {
			if key.KeyID == "" || !key.IsPublic() {
				t.Fatalf("accepted %+v", key)
			}
		}
	})
}
