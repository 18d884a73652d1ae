package deviceca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// Store is what the CA needs of Tend's store.
type Store interface {
	Device(ctx context.Context, id string) (store.Device, error)
	Org(ctx context.Context, id string) (store.Organisation, error)
	store.DeviceCAStore
}

const (
	caValidity = 10 * 365 * 24 * time.Hour
	// DefaultValidity is how long a device certificate is valid unless
	// the issuer says otherwise.
	DefaultValidity = 365 * 24 * time.Hour
	backdate        = 5 * time.Minute // tolerate small clock skew between devices and Tend
)

// Authority creates CAs, issues device certificates and revokes them.
// Issuing and creating need Key; revoking does not.
type Authority struct {
	Store Store
	Key   *Key             // nil: Init and Issue refuse with ErrNoKey
	Now   func() time.Time // nil: time.Now
}

// ErrNoKey is returned by Init and Issue without a key.
var ErrNoKey = errors.New("no CA key: give the key file with --ca-key-file (or TEND_CA_KEY_FILE)")

// ErrNoCA is returned when the organisation has no device CA yet.
var ErrNoCA = errors.New("the organisation has no device CA: create it with tend ca init --org ORG")

func (a *Authority) now() time.Time {
	if a.Now == nil {
		return time.Now()
	}
	return a.Now()
}

// Init creates the device CA of org (which must exist; the default
// organisation always does). A second CA for the same organisation is
// refused with store.ErrConflict: it would orphan every certificate issued.
func (a *Authority) Init(ctx context.Context, org string) (*x509.Certificate, error) {
	if a.Key == nil || !a.Key.usable() {
		return nil, ErrNoKey
	}
	org = store.OrgOrDefault(org)
	if org != store.DefaultOrg {
		if _, err := a.Store.Org(ctx, org); err != nil {
			return nil, fmt.Errorf("organisation %q: %w", org, err)
		}
	}
	now := a.now()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Tend device CA " + org, Organization: []string{org}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	sealed, err := a.Key.seal(org, pk)
	clear(pk)
	if err != nil {
		return nil, err
	}
	if err := a.Store.CreateDeviceCA(ctx, store.DeviceCA{Org: org, Cert: der, SealedKey: sealed, Created: now.UTC()}); err != nil {
		return nil, fmt.Errorf("store device CA: %w", err)
	}
	return x509.ParseCertificate(der)
}

// CA returns the organisation's CA certificate (ErrNoCA if none).
func (a *Authority) CA(ctx context.Context, org string) (*x509.Certificate, error) {
	ca, err := a.Store.DeviceCA(ctx, store.OrgOrDefault(org))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoCA
	}
	if err != nil {
		return nil, fmt.Errorf("load device CA: %w", err)
	}
	return x509.ParseCertificate(ca.Cert)
}

// OpenCA parses a stored CA and opens its private key with key.
func OpenCA(ca store.DeviceCA, key Key) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := x509.ParseCertificate(ca.Cert)
	if err != nil {
		return nil, nil, fmt.Errorf("device CA of %q: %w", ca.Org, err)
	}
	pk, err := key.open(ca.Org, ca.SealedKey)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pk)
	k, err := x509.ParsePKCS8PrivateKey(pk)
	if err != nil {
		return nil, nil, fmt.Errorf("device CA key of %q: %w", ca.Org, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("device CA key of %q is not ECDSA", ca.Org)
	}
	return cert, ek, nil
}

// Issued is a new device certificate with its private key, PEM encoded.
// The key is shown once: Tend keeps only the certificate's serial.
type Issued struct {
	Device, Org string
	Serial      string
	NotAfter    time.Time
	Cert, Key   []byte // PEM
	CA          []byte // PEM of the issuing CA
}

// Issue makes a certificate for an existing device, signed by the CA of
// the device's organisation, valid for validity (0: DefaultValidity; never
// beyond the CA), and records it.
func (a *Authority) Issue(ctx context.Context, device string, validity time.Duration) (Issued, error) {
	if a.Key == nil || !a.Key.usable() {
		return Issued{}, ErrNoKey
	}
	if !store.ValidDeviceID(device) {
		return Issued{}, fmt.Errorf("device id %q: %w", device, store.ErrNotFound)
	}
	d, err := a.Store.Device(ctx, device)
	if err != nil {
		return Issued{}, fmt.Errorf("device %q: %w", device, err)
	}
	org := store.OrgOrDefault(d.Org)
	rec, err := a.Store.DeviceCA(ctx, org)
	if errors.Is(err, store.ErrNotFound) {
		return Issued{}, ErrNoCA
	}
	if err != nil {
		return Issued{}, fmt.Errorf("load device CA: %w", err)
	}
	caCert, caKey, err := OpenCA(rec, *a.Key)
	if err != nil {
		return Issued{}, err
	}
	if validity <= 0 {
		validity = DefaultValidity
	}
	now := a.now()
	notAfter := now.Add(validity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	certPEM, keyPEM, serial, err := IssueCertificate(caCert, caKey, device, now.Add(-backdate), notAfter)
	if err != nil {
		return Issued{}, err
	}
	if err := a.Store.AddDeviceCert(ctx, store.DeviceCert{Serial: serialText(serial), Device: device, Org: org,
		Issued: now.UTC(), NotAfter: notAfter.UTC().Truncate(time.Second)}); err != nil {
		return Issued{}, fmt.Errorf("record device certificate: %w", err)
	}
	return Issued{Device: device, Org: org, Serial: serialText(serial), NotAfter: notAfter.UTC().Truncate(time.Second),
		Cert: certPEM, Key: keyPEM, CA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rec.Cert})}, nil
}

// IssueCertificate signs a client certificate for device with a fresh
// P-256 key: common name and a urn:tend:device URI carry the id, and the
// serial is 128 random bits. It records nothing (see Authority.Issue).
func IssueCertificate(ca *x509.Certificate, caKey *ecdsa.PrivateKey, device string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, serial *big.Int, err error) {
	u, err := url.Parse(DeviceURI(device))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("device URI: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate device key: %w", err)
	}
	if serial, err = newSerial(); err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: device},
		URIs:         []*url.URL{u},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sign device certificate: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encode device key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), serial, nil
}

// newSerial is 128 random bits, never zero (RFC 5280 wants it positive).
func newSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// RevokeDevice revokes every valid certificate of the device.
func (a *Authority) RevokeDevice(ctx context.Context, device string) ([]store.DeviceCert, error) {
	if _, err := a.Store.Device(ctx, device); err != nil {
		return nil, fmt.Errorf("device %q: %w", device, err)
	}
	out, err := a.Store.RevokeDeviceCerts(ctx, device, a.now().UTC())
	if err != nil {
		return nil, fmt.Errorf("revoke device certificates: %w", err)
	}
	return out, nil
}

// RevokeSerial revokes one certificate by serial (see ParseSerial).
func (a *Authority) RevokeSerial(ctx context.Context, serial string) (store.DeviceCert, error) {
	s, err := ParseSerial(serial)
	if err != nil {
		return store.DeviceCert{}, err
	}
	c, err := a.Store.RevokeDeviceCert(ctx, s, a.now().UTC())
	if err != nil {
		return store.DeviceCert{}, fmt.Errorf("revoke certificate %s: %w", s, err)
	}
	return c, nil
}

// Fingerprint is the SHA-256 of a certificate, as colon-separated hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := hex.EncodeToString(sum[:])
	out := make([]byte, 0, len(h)*3/2)
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, h[i:i+2]...)
	}
	return string(out)
}
