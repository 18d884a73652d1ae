package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// SigningAlgs are the assertion signature algorithms Tend accepts: the two
// SMART requires (RS384, ES384) and their SHA-256 siblings. Never "none",
// never HMAC: an HMAC "verified" with a registered public key as the secret
// would let anyone who read the JWK Set sign.
var SigningAlgs = []jose.SignatureAlgorithm{jose.RS384, jose.ES384, jose.RS256, jose.ES256}

// Limits on a registered JWK Set.
const (
	maxJWKSKeys  = 16
	maxJWKSBytes = 32 << 10
	minRSABits   = 2048
)

// ParseJWKS validates a client's JWK Set for registration: every key is a
// public RSA (2048 bits or more) or EC P-256/P-384 signing key with a kid
// unique in the set, and an alg, if given, that Tend accepts and that fits
// the key. Private and symmetric keys are refused: a client must never
// send its private key, and a shared secret is not private_key_jwt.
func ParseJWKS(b []byte) (jose.JSONWebKeySet, error) {
	if len(b) > maxJWKSBytes {
		return jose.JSONWebKeySet{}, fmt.Errorf("jwks is larger than %d bytes", maxJWKSBytes)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("jwks is not a JSON Web Key Set: %w", err)
	}
	if len(raw.Keys) == 0 {
		return jose.JSONWebKeySet{}, errors.New("jwks has no keys")
	}
	if len(raw.Keys) > maxJWKSKeys {
		return jose.JSONWebKeySet{}, fmt.Errorf("jwks has more than %d keys", maxJWKSKeys)
	}
	set := jose.JSONWebKeySet{}
	seen := map[string]bool{}
	for i, rk := range raw.Keys {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(rk, &members); err != nil {
			return jose.JSONWebKeySet{}, fmt.Errorf("jwks key %d is not a JSON object", i)
		}
		// Refuse private material by member, before the library sees it:
		// "d" (RSA and EC private exponent/scalar), "k" (symmetric).
		for _, m := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := members[m]; ok {
				return jose.JSONWebKeySet{}, fmt.Errorf("jwks key %d holds private or symmetric key material (%q): register public keys only", i, m)
			}
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(rk); err != nil {
			return jose.JSONWebKeySet{}, fmt.Errorf("jwks key %d: %w", i, err)
		}
		if err := checkKey(k); err != nil {
			return jose.JSONWebKeySet{}, fmt.Errorf("jwks key %d: %w", i, err)
		}
		if seen[k.KeyID] {
			return jose.JSONWebKeySet{}, fmt.Errorf("jwks key %d: kid %q is used twice", i, k.KeyID)
		}
		seen[k.KeyID] = true
		set.Keys = append(set.Keys, k)
	}
	return set, nil
}

func checkKey(k jose.JSONWebKey) error {
	if k.KeyID == "" {
		return errors.New("kid is required")
	}
	if !k.IsPublic() {
		return errors.New("only public keys may be registered")
	}
	if k.Use != "" && k.Use != "sig" {
		return fmt.Errorf("use %q: keys must be for signatures", k.Use)
	}
	var fits []jose.SignatureAlgorithm
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA keys must have at least %d bits", minRSABits)
		}
		fits = []jose.SignatureAlgorithm{jose.RS384, jose.RS256}
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			fits = []jose.SignatureAlgorithm{jose.ES256}
		case elliptic.P384():
			fits = []jose.SignatureAlgorithm{jose.ES384}
		default:
			return errors.New("EC keys must be on P-256 or P-384")
		}
	default:
		return fmt.Errorf("key type %T is not accepted: use RSA or EC", k.Key)
	}
	if k.Algorithm == "" {
		return nil
	}
	for _, a := range fits {
		if string(a) == k.Algorithm {
			return nil
		}
	}
	return fmt.Errorf("alg %q is not accepted for this key (use one of %v)", k.Algorithm, fits)
}
