package deviceca

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// ErrUntrusted marks a certificate that does not prove a device: unknown
// device, no CA, wrong CA, expired, not recorded or revoked.
var ErrUntrusted = errors.New("device certificate not trusted")

type untrusted struct{ reason string }

func (e *untrusted) Error() string        { return "device certificate not trusted: " + e.reason }
func (e *untrusted) Is(target error) bool { return target == ErrUntrusted }

func refuse(format string, a ...any) error { return &untrusted{reason: fmt.Sprintf(format, a...)} }

// Identity is what a verified device certificate proves.
type Identity struct {
	Device, Org, Serial string
}

// VerifyStore is what verification needs of the store.
type VerifyStore interface {
	Device(ctx context.Context, id string) (store.Device, error)
	DeviceCA(ctx context.Context, org string) (store.DeviceCA, error)
	DeviceCAs(ctx context.Context) ([]store.DeviceCA, error)
	DeviceCert(ctx context.Context, serial string) (store.DeviceCert, error)
}

// DefaultAuthoritiesTTL is how long the list of CAs named in TLS
// certificate requests is reused before it is read again.
const DefaultAuthoritiesTTL = 5 * time.Second

// Verifier checks device certificates against the store on every call, so
// that a CA created or a certificate revoked on any node or from the
// command line takes effect at the next handshake without a restart.
type Verifier struct {
	store VerifyStore
	now   func() time.Time
	ttl   time.Duration

	mu      sync.Mutex
	cas     map[string]*x509.Certificate // parsed CA by org, reused while its DER is unchanged
	list    []*x509.Certificate
	listAt  time.Time
	listSet bool
}

// NewVerifier returns a verifier over st; now may be nil (time.Now).
func NewVerifier(st VerifyStore, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{store: st, now: now, ttl: DefaultAuthoritiesTTL, cas: make(map[string]*x509.Certificate)}
}

// Claims reports whether the certificate names a device (a urn:tend:device
// URI): such a certificate is accepted only by Verify, never by another CA.
func (v *Verifier) Claims(leaf *x509.Certificate) bool { return leaf != nil && names(leaf) }

// DeviceID is the device the certificate names, or "" when it names none
// or is malformed. It proves nothing: call Verify.
func (v *Verifier) DeviceID(leaf *x509.Certificate) string {
	if leaf == nil {
		return ""
	}
	id, err := DeviceOf(leaf)
	if err != nil {
		return ""
	}
	return id
}

// Verify checks a presented chain (leaf first): the device exists, its
// organisation's CA signed the leaf for client authentication, the leaf
// is within its validity, was recorded at issue for this device and is not
// revoked. Errors wrap ErrUntrusted unless the store failed.
func (v *Verifier) Verify(ctx context.Context, chain []*x509.Certificate) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, refuse("no certificate")
	}
	leaf := chain[0]
	id, err := DeviceOf(leaf)
	if err != nil {
		return Identity{}, refuse("%v", err)
	}
	d, err := v.store.Device(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, refuse("no device %q", id)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("verify device certificate: load device: %w", err)
	}
	org := store.OrgOrDefault(d.Org)
	ca, err := v.ca(ctx, org)
	if err != nil {
		return Identity{}, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	var inter *x509.CertPool
	if len(chain) > 1 {
		inter = x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: v.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return Identity{}, refuse("device %q of %q: %v", id, org, err)
	}
	serial := serialText(leaf.SerialNumber)
	rec, err := v.store.DeviceCert(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, refuse("certificate %s of device %q was never issued by Tend", serial, id)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("verify device certificate: load record: %w", err)
	}
	if rec.Device != id || rec.Org != org {
		return Identity{}, refuse("certificate %s was issued to device %q of %q, not %q of %q", serial, rec.Device, rec.Org, id, org)
	}
	if !rec.Revoked.IsZero() {
		return Identity{}, refuse("certificate %s of device %q was revoked at %s", serial, id, rec.Revoked.Format(time.RFC3339))
	}
	return Identity{Device: id, Org: org, Serial: serial}, nil
}

// ca returns the organisation's CA certificate, parsed once per DER.
func (v *Verifier) ca(ctx context.Context, org string) (*x509.Certificate, error) {
	rec, err := v.store.DeviceCA(ctx, org)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse("organisation %q has no device CA", org)
	}
	if err != nil {
		return nil, fmt.Errorf("verify device certificate: load CA: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.cas[org]; c != nil && bytes.Equal(c.Raw, rec.Cert) {
		return c, nil
	}
	c, err := x509.ParseCertificate(rec.Cert)
	if err != nil {
		return nil, fmt.Errorf("verify device certificate: CA of %q: %w", org, err)
	}
	v.cas[org] = c
	return c, nil
}

// Authorities returns every organisation's device CA, to name in TLS
// certificate requests; the list is reread at most every few seconds. On
// a store error the previous list stays.
func (v *Verifier) Authorities(ctx context.Context) []*x509.Certificate {
	now := v.now()
	v.mu.Lock()
	if v.listSet && now.Sub(v.listAt) < v.ttl && !now.Before(v.listAt) {
		l := v.list
		v.mu.Unlock()
		return l
	}
	v.mu.Unlock()
	recs, err := v.store.DeviceCAs(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		return v.list
	}
	var list []*x509.Certificate
	for _, r := range recs {
		if c, err := x509.ParseCertificate(r.Cert); err == nil {
			list = append(list, c)
		}
	}
	v.list, v.listAt, v.listSet = list, now, true
	return list
}

// VerifyClient implements tlsconf.ClientVerifier.
func (v *Verifier) VerifyClient(ctx context.Context, chain []*x509.Certificate) error {
	_, err := v.Verify(ctx, chain)
	return err
}
