package ingest

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/deviceca"
	"github.com/tendhealth/tend/internal/mqtt"
)

// fakeCerts names the device in the common name and verifies those in ok;
// "down" makes the store fail.
type fakeCerts struct{ ok map[string]bool }

func (f fakeCerts) DeviceID(leaf *x509.Certificate) string { return leaf.Subject.CommonName }

func (f fakeCerts) Verify(_ context.Context, chain []*x509.Certificate) (deviceca.Identity, error) {
	cn := chain[0].Subject.CommonName
	switch {
	case cn == "down":
		return deviceca.Identity{}, errors.New("store unavailable")
	case f.ok[cn]:
		return deviceca.Identity{Device: cn, Org: "default", Serial: "1"}, nil
	}
	return deviceca.Identity{}, deviceca.ErrUntrusted
}

func leaf(cn string) []*x509.Certificate {
	return []*x509.Certificate{{Subject: pkix.Name{CommonName: cn}}}
}

func TestAuthenticateCertificate(t *testing.T) {
	p := NewPipeline(nil, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if p.CertificateDevice(leaf("d1")[0]) != "" {
		t.Fatal("a pipeline without a verifier named a device")
	}
	if err := p.AuthenticateCertificate(context.Background(), "d1", leaf("d1")); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("without a verifier: %v", err)
	}
	p.Certs = fakeCerts{ok: map[string]bool{"d1": true}}
	tests := []struct {
		device, cn string
		want       error // nil: accepted; errAny: an internal error
	}{
		{"d1", "d1", nil},
		{"d2", "d1", ErrBadCredentials}, // a good certificate for another device
		{"d2", "d2", ErrBadCredentials}, // refused by the verifier
		{"down", "down", errAny},
	}
	for _, tc := range tests {
		err := p.AuthenticateCertificate(context.Background(), tc.device, leaf(tc.cn))
		switch {
		case tc.want == nil && err != nil, tc.want == ErrBadCredentials && !errors.Is(err, ErrBadCredentials),
			tc.want == errAny && (err == nil || errors.Is(err, ErrBadCredentials)):
			t.Errorf("device %s, certificate %s: %v, want %v", tc.device, tc.cn, err, tc.want)
		}
	}
	a := MQTT{P: p}
	if a.CertificateDevice(leaf("d1")[0]) != "d1" {
		t.Fatal("MQTT adapter does not name the device")
	}
	if err := a.AuthenticateCertificate(context.Background(), "c", leaf("d1")); err != nil {
		t.Fatalf("MQTT good certificate: %v", err)
	}
	if err := a.AuthenticateCertificate(context.Background(), "c", leaf("d2")); !errors.Is(err, mqtt.ErrBadCredentials) {
		t.Fatalf("MQTT refused certificate: %v", err)
	}
}

var errAny = errors.New("any internal error")
