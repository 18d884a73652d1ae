package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/certs"
)

// certAuth takes client certificates whose common name starts with "dev-"
// as naming that device; "dev-revoked" names a device but does not verify.
type certAuth struct{ testAuth }

func (certAuth) CertificateDevice(leaf *x509.Certificate) string {
	if strings.HasPrefix(leaf.Subject.CommonName, "dev-") {
		return leaf.Subject.CommonName
	}
	return ""
}

func (certAuth) AuthenticateCertificate(_ context.Context, _ string, chain []*x509.Certificate) error {
	if chain[0].Subject.CommonName == "dev-revoked" {
		return ErrBadCredentials
	}
	return nil
}

func clientWithCert(t *testing.T, name string) (srv, cli *tls.Config) {
	t.Helper()
	set, err := certs.Dev(certs.Options{ClientName: name})
	if err != nil {
		t.Fatal(err)
	}
	srvKP, err := tls.X509KeyPair(set.Server.Cert, set.Server.Key)
	if err != nil {
		t.Fatal(err)
	}
	cliKP, err := tls.X509KeyPair(set.Client.Cert, set.Client.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(set.CA.Cert)
	// The server asks for a certificate and leaves its verification to
	// the authenticator (in Tend: tlsconf with package deviceca).
	return &tls.Config{Certificates: []tls.Certificate{srvKP}, ClientAuth: tls.RequestClientCert},
		&tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cliKP}}
}

func TestCertificateAuthentication(t *testing.T) {
	tests := []struct {
		name       string
		cert       string
		user, pass string
		level      byte
		code       byte   // CONNACK code
		device     string // the identity the session gets
	}{
		{"certificate alone", "dev-a", "", "", level311, 0, "dev-a"},
		{"certificate alone, MQTT 5", "dev-a", "", "", level5, 0, "dev-a"},
		{"certificate and its own user name", "dev-a", "dev-a", "", level311, 0, "dev-a"},
		{"certificate, own user name and a password", "dev-a", "dev-a", "ignored", level5, 0, "dev-a"},
		{"certificate and another device's name", "dev-a", "dev", "secret", level311, 0x04, ""},
		{"certificate and another device's name, MQTT 5", "dev-a", "dev", "secret", level5, reasonBadCredentials, ""},
		{"refused certificate", "dev-revoked", "", "", level311, 0x04, ""},
		{"refused certificate with a good secret", "dev-revoked", "dev-revoked", "secret", level311, 0x04, ""},
		{"certificate naming no device: secret path", "gateway", "dev", "secret", level311, 0, "dev"},
		{"certificate naming no device, no user name", "gateway", "", "", level311, 0x04, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srvCfg, cliCfg := clientWithCert(t, tc.cert)
			rec := newRecorder()
			s := startServer(t, rec, func(s *Server) {
				s.Auth = certAuth{}
				s.Addr, s.TLSAddr, s.TLSConfig = "", "127.0.0.1:0", srvCfg
			})
			c := dialTLS(t, s.TLSListenAddr(), cliCfg)
			ack := c.connect(tc.level, "client-1", tc.user, tc.pass, 30)
			if ack[1] != tc.code {
				t.Fatalf("CONNACK code %#x, want %#x", ack[1], tc.code)
			}
			if tc.code != 0 {
				return
			}
			c.send(buildPublish(tc.level, 1, false, 1, "tend/v1/devices/"+tc.device+"/obs", "x", nil))
			if h, _ := c.mustRead(); h != typePuback<<4 {
				t.Fatalf("want PUBACK, got %#x", h)
			}
			if m := rec.wait(t); m.Username != tc.device {
				t.Fatalf("message from %q, want %q", m.Username, tc.device)
			}
			// Revocation closes the session like a credential rotation.
			if n := s.Disconnect(tc.device); n != 1 {
				t.Fatalf("Disconnect closed %d connections", n)
			}
			c.expectClosed(5 * time.Second)
		})
	}
}

// Without a CertAuthenticator a client certificate changes nothing: the
// user name and password are required.
func TestCertificateIgnoredWithoutCertAuthenticator(t *testing.T) {
	srvCfg, cliCfg := clientWithCert(t, "dev-a")
	s := startServer(t, newRecorder(), func(s *Server) { s.TLSAddr, s.TLSConfig = "127.0.0.1:0", srvCfg })
	if ack := dialTLS(t, s.TLSListenAddr(), cliCfg).connect(level311, "c", "", "", 30); ack[1] != 0x04 {
		t.Fatalf("CONNACK %#x, want 0x04", ack[1])
	}
}
