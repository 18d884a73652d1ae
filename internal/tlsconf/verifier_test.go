package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tendhealth/tend/internal/certs"
)

// fakeVerifier claims certificates whose common name starts with "dev-"
// and accepts those named in ok; its authorities are the CA of another
// development set.
type fakeVerifier struct {
	cas   []*x509.Certificate
	ok    map[string]bool
	calls atomic.Int32
}

func (f *fakeVerifier) Claims(leaf *x509.Certificate) bool {
	return strings.HasPrefix(leaf.Subject.CommonName, "dev-")
}

func (f *fakeVerifier) VerifyClient(ctx context.Context, chain []*x509.Certificate) error {
	f.calls.Add(1)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if f.ok[chain[0].Subject.CommonName] {
		return nil
	}
	return errors.New("not this one")
}

func (f *fakeVerifier) Authorities(context.Context) []*x509.Certificate { return f.cas }

func caOf(t *testing.T, set *certs.Set) *x509.Certificate {
	t.Helper()
	c := parseCerts(set.CA.Cert)
	if len(c) != 1 {
		t.Fatal("no CA certificate")
	}
	return c[0]
}

func devSet(t *testing.T, client string) *certs.Set {
	t.Helper()
	s, err := certs.Dev(certs.Options{ClientName: client})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClientVerifier(t *testing.T) {
	dir := t.TempDir()
	set, files := devFiles(t, dir) // server, and a client from the static --tls-client-ca
	devices := devSet(t, "dev-good")
	bad := devSet(t, "dev-bad")
	stranger := devSet(t, "someone") // unclaimed, from an unknown CA
	fv := &fakeVerifier{ok: map[string]bool{"dev-good": true}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	for _, static := range []bool{true, false} {
		f := files
		if !static {
			f.ClientCAFile = ""
		}
		r, err := Load(f, Options{ClientVerifier: fv, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		srv := r.ServerConfig()

		// No device CA yet: exactly the behaviour without a verifier.
		fv.cas = nil
		if err, _ := handshake(t, srv, clientConfig(t, set, nil)); err != nil {
			t.Fatalf("static=%v, no authorities: handshake without certificate: %v", static, err)
		}
		if static {
			if err, peers := handshake(t, srv, clientConfig(t, set, &set.Client)); err != nil || len(peers) != 1 {
				t.Fatalf("no authorities: static client certificate: %v, %d peers", err, len(peers))
			}
		}

		fv.cas = []*x509.Certificate{caOf(t, devices), caOf(t, bad)}
		tests := []struct {
			name  string
			cert  *certs.PEM
			ok    bool
			peers int
		}{
			{"no certificate", nil, true, 0},
			{"claimed and verified", &devices.Client, true, 1},
			{"claimed and refused", &bad.Client, false, 0},
			{"unclaimed from the static CA", &set.Client, static, 1},
			{"unclaimed from an unknown CA", &stranger.Client, false, 0},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				cli := clientConfig(t, set, tc.cert)
				var named [][]byte
				if tc.cert != nil {
					// Go clients send a certificate only if the request names its CA.
					kp := cli.Certificates[0]
					cli.Certificates = nil
					cli.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
						named = cri.AcceptableCAs
						return &kp, nil
					}
				}
				err, peers := handshake(t, srv, cli)
				if (err == nil) != tc.ok || (tc.ok && len(peers) != tc.peers) {
					t.Fatalf("static=%v: error %v, %d peers; want ok=%v with %d", static, err, len(peers), tc.ok, tc.peers)
				}
				if tc.cert != nil {
					want := 2
					if static {
						want = 3
					}
					if len(named) != want {
						t.Fatalf("certificate request named %d CAs, want %d", len(named), want)
					}
				}
			})
		}
	}
	// A listener that requires a certificate from the static CA keeps
	// requiring it: the device CAs do not open it.
	r, err := Load(files, Options{ClientVerifier: fv, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	strict := r.ServerConfig()
	strict.ClientAuth = tls.RequireAndVerifyClientCert
	for _, tc := range []struct {
		name string
		cert *certs.PEM
		ok   bool
	}{{"static", &set.Client, true}, {"device", &devices.Client, false}, {"none", nil, false}} {
		if err, _ := handshake(t, strict, clientConfig(t, set, tc.cert)); (err == nil) != tc.ok {
			t.Errorf("strict listener, %s certificate: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if fv.calls.Load() == 0 {
		t.Fatal("the verifier was never asked")
	}
}
