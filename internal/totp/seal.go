package totp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Sealer encrypts TOTP secrets for storage with AES-256-GCM under a key
// kept outside the database. The user id is authenticated with the secret,
// so a sealed secret copied onto another user's row does not open.
type Sealer struct {
	aead cipher.AEAD
}

// sealVersion prefixes sealed secrets so the scheme can change later.
const sealVersion = 1

// NewSealer uses the first 32 bytes of key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) < 32 {
		return nil, errors.New("totp: the sealing key must be at least 32 bytes")
	}
	block, err := aes.NewCipher(key[:32])
	if err != nil {
		return nil, fmt.Errorf("totp: sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("totp: sealing key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts secret for user.
func (s *Sealer) Seal(user string, secret []byte) []byte {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(secret)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return s.aead.Seal(out, out[1:], secret, []byte(user))
}

// ErrUnseal means a sealed secret does not open with this key for this
// user: another key (a node with a different key file) or tampering.
var ErrUnseal = errors.New("totp: sealed secret does not open with this key")

// Open decrypts a sealed secret of user.
func (s *Sealer) Open(user string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrUnseal
	}
	b, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(user))
	if err != nil {
		return nil, ErrUnseal
	}
	return b, nil
}

// DerivedSealer seals with a key derived from master (HMAC-SHA256 with a
// fixed label), so one key file can serve several purposes without any of
// them seeing another's key.
func DerivedSealer(master []byte) (*Sealer, error) {
	if len(master) < 32 {
		return nil, errors.New("totp: the master key must be at least 32 bytes")
	}
	m := hmac.New(sha256.New, master)
	m.Write([]byte("tend totp seal v1"))
	return NewSealer(m.Sum(nil))
}
