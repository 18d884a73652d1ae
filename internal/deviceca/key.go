// Package deviceca runs each organisation's device certificate authority:
// it creates the CA (ECDSA P-256, ten years), issues device certificates
// for mutual TLS, records and revokes them, verifies the certificate a
// device presents and maps it to the device, and tells running listeners
// about revocations made elsewhere.
//
// The CA's private key is kept in the store sealed (AES-256-GCM) with a
// key the operator holds outside it (--ca-key-file): every node can verify
// with the CA certificate alone, and only holders of the key can issue.
// Only certificates recorded at issue are accepted, so neither a copy of
// the database nor a leaked CA key alone is enough to mint a device
// identity that a node believes without also writing to the store.
package deviceca

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of the key that seals CA private keys.
const KeySize = 32

// Key seals and opens CA private keys. The zero Key is not usable.
type Key struct{ b [KeySize]byte }

// NewKey returns a random key.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k.b[:]); err != nil {
		return Key{}, fmt.Errorf("generate CA key-encryption key: %w", err)
	}
	return k, nil
}

// ParseKey reads a key file's contents: 32 bytes as 64 hex digits or as
// base64 (standard or URL alphabet, padded or not); surrounding white
// space is ignored.
func ParseKey(text []byte) (Key, error) {
	s := strings.TrimSpace(string(text))
	var raw []byte
	if len(s) == 2*KeySize {
		if b, err := hex.DecodeString(s); err == nil {
			raw = b
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw != nil {
			break
		}
		if b, err := enc.DecodeString(s); err == nil {
			raw = b
		}
	}
	if raw == nil {
		return Key{}, errors.New("the CA key file must hold 32 bytes as base64 or hex; make one with: head -c 32 /dev/urandom | base64")
	}
	if len(raw) != KeySize {
		return Key{}, fmt.Errorf("the CA key file holds %d bytes; it must hold %d (head -c 32 /dev/urandom | base64)", len(raw), KeySize)
	}
	var k Key
	copy(k.b[:], raw)
	return k, nil
}

// Encode returns the key as base64, as ParseKey reads it.
func (k Key) Encode() string { return base64.StdEncoding.EncodeToString(k.b[:]) }

func (k Key) usable() bool { return k.b != [KeySize]byte{} }

const sealVersion = 1

// ErrWrongKey means a sealed CA key did not open with the key given.
var ErrWrongKey = errors.New("the CA key file does not open this organisation's CA key (is it the file the CA was created with?)")

// aad binds a sealed key to its organisation, so that a sealed key copied
// to another organisation's row does not open.
func aad(org string) []byte { return []byte("tend device CA key v1\x00" + org) }

func (k Key) aead() (cipher.AEAD, error) {
	if !k.usable() {
		return nil, errors.New("no CA key-encryption key")
	}
	block, err := aes.NewCipher(k.b[:])
	if err != nil {
		return nil, fmt.Errorf("CA key-encryption key: %w", err)
	}
	return cipher.NewGCM(block)
}

// seal encrypts plain for org: version byte, nonce, ciphertext and tag.
func (k Key) seal(org string, plain []byte) ([]byte, error) {
	g, err := k.aead()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+g.NonceSize(), 1+g.NonceSize()+len(plain)+g.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal CA key: %w", err)
	}
	return g.Seal(out, out[1:], plain, aad(org)), nil
}

func (k Key) open(org string, sealed []byte) ([]byte, error) {
	g, err := k.aead()
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+g.NonceSize()+g.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("sealed CA key: unknown format")
	}
	plain, err := g.Open(nil, sealed[1:1+g.NonceSize()], sealed[1+g.NonceSize():], aad(org))
	if err != nil {
		return nil, ErrWrongKey
	}
	return plain, nil
}
