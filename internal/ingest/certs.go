package ingest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/tendhealth/tend/internal/deviceca"
	"github.com/tendhealth/tend/internal/mqtt"
)

// CertVerifier verifies device certificates for mutual TLS; package
// deviceca implements it over the store.
type CertVerifier interface {
	// DeviceID is the device a certificate names ("" for none); it proves nothing.
	DeviceID(leaf *x509.Certificate) string
	// Verify checks the chain proves that device now; refusals wrap deviceca.ErrUntrusted.
	Verify(ctx context.Context, chain []*x509.Certificate) (deviceca.Identity, error)
}

var _ mqtt.CertAuthenticator = MQTT{}

// CertificateDevice returns the device a client certificate names, or ""
// when it names none or the pipeline takes no certificates.
func (p *Pipeline) CertificateDevice(leaf *x509.Certificate) string {
	if p.Certs == nil || leaf == nil {
		return ""
	}
	return p.Certs.DeviceID(leaf)
}

// AuthenticateCertificate checks that a client certificate chain (leaf
// first) proves device: issued by the CA of the device's organisation,
// valid now, recorded and not revoked. A refusal is ErrBadCredentials,
// like a wrong secret, so a caller learns nothing about why.
func (p *Pipeline) AuthenticateCertificate(ctx context.Context, device string, chain []*x509.Certificate) error {
	if p.Certs == nil || len(chain) == 0 {
		return ErrBadCredentials
	}
	id, err := p.Certs.Verify(ctx, chain)
	if errors.Is(err, deviceca.ErrUntrusted) {
		p.Logger.Info("device certificate refused", "device", device, "err", err)
		return ErrBadCredentials
	}
	if err != nil {
		return fmt.Errorf("verify device certificate: %w", err)
	}
	if id.Device != device {
		p.Logger.Info("device certificate refused", "device", device, "certificate_device", id.Device)
		return ErrBadCredentials
	}
	return nil
}

// CertificateDevice implements mqtt.CertAuthenticator.
func (a MQTT) CertificateDevice(leaf *x509.Certificate) string { return a.P.CertificateDevice(leaf) }

// AuthenticateCertificate implements mqtt.CertAuthenticator: the device is
// the one the certificate names.
func (a MQTT) AuthenticateCertificate(ctx context.Context, clientID string, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return mqtt.ErrBadCredentials
	}
	err := a.P.AuthenticateCertificate(ctx, a.P.CertificateDevice(chain[0]), chain)
	if errors.Is(err, ErrBadCredentials) {
		return mqtt.ErrBadCredentials
	}
	return err
}
