package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/certs"
)

func devFiles(t *testing.T, dir string) (*certs.Set, Files) {
	t.Helper()
	set, err := certs.Dev(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Write(dir, true); err != nil {
		t.Fatal(err)
	}
	return set, Files{CertFile: filepath.Join(dir, certs.ServerFile), KeyFile: filepath.Join(dir, certs.ServerKeyFile),
		ClientCAFile: filepath.Join(dir, certs.CAFile)}
}

// handshake runs one TLS handshake over a pipe and returns the client's
// error and the client certificates the server saw.
func handshake(t *testing.T, srv *tls.Config, cli *tls.Config) (error, []*x509.Certificate) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var wg sync.WaitGroup
	var peers []*x509.Certificate
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := tls.Server(a, srv)
		if s.Handshake() == nil {
			peers = s.ConnectionState().PeerCertificates
			s.Write([]byte("x"))
		}
		a.Close()
	}()
	c := tls.Client(b, cli)
	err := c.Handshake()
	if err == nil {
		// TLS 1.3 reports a rejected client certificate on the first read.
		_, err = c.Read(make([]byte, 1))
	}
	b.Close()
	wg.Wait()
	return err, peers
}

func clientConfig(t *testing.T, set *certs.Set, withCert *certs.PEM) *tls.Config {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(set.CA.Cert) {
		t.Fatal("bad CA PEM")
	}
	c := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if withCert != nil {
		kp, err := tls.X509KeyPair(withCert.Cert, withCert.Key)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c
}

func TestHandshakes(t *testing.T) {
	set, files := devFiles(t, t.TempDir())
	r, err := Load(files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := certs.Dev(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tls11 := clientConfig(t, set, nil)
	tls11.MaxVersion = tls.VersionTLS11
	weak := clientConfig(t, set, nil)
	weak.MaxVersion = tls.VersionTLS12
	weak.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	tests := []struct {
		name      string
		cli       *tls.Config
		ok        bool
		peerCerts int
	}{
		{"no client certificate", clientConfig(t, set, nil), true, 0},
		{"client certificate from the CA", clientConfig(t, set, &set.Client), true, 1},
		{"client certificate from another CA", clientConfig(t, set, &foreign.Client), false, 0},
		{"server not trusted", clientConfig(t, foreign, nil), false, 0},
		{"TLS 1.1", tls11, false, 0},
		{"CBC cipher suite", weak, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err, peers := handshake(t, r.ServerConfig(), tt.cli)
			if (err == nil) != tt.ok {
				t.Fatalf("err=%v, want ok=%v", err, tt.ok)
			}
			if len(peers) != tt.peerCerts {
				t.Fatalf("server saw %d client certificates, want %d", len(peers), tt.peerCerts)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, files := devFiles(t, dir)
	mismatch := files
	mismatch.KeyFile = filepath.Join(dir, certs.ClientKeyFile)
	noCA := files
	noCA.ClientCAFile = filepath.Join(dir, certs.ServerKeyFile) // a key, not a certificate
	for name, f := range map[string]Files{
		"key of another certificate":    mismatch,
		"client CA without certificate": noCA,
		"missing key":                   {CertFile: files.CertFile},
		"missing file":                  {CertFile: filepath.Join(dir, "nope.pem"), KeyFile: files.KeyFile},
	} {
		if _, err := Load(f, Options{}); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	set, files := devFiles(t, dir)
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	r, err := Load(files, Options{Now: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	first := r.Certificate()
	// A renewal from a new CA; file times are pushed forward so that the
	// change is seen even on file systems with coarse timestamps.
	renewed, err := certs.Dev(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(files.CertFile, renewed.Server.Cert, 0o644)
	os.WriteFile(files.KeyFile, renewed.Server.Key, 0o600)
	later := time.Now().Add(time.Minute)
	os.Chtimes(files.CertFile, later, later)
	os.Chtimes(files.KeyFile, later, later)
	if r.Certificate() != first {
		t.Fatal("reloaded before the check interval passed")
	}
	now = now.Add(DefaultCheckInterval)
	if r.Certificate() == first {
		t.Fatal("not reloaded after the files changed")
	}
	if err, _ := handshake(t, r.ServerConfig(), clientConfig(t, renewed, nil)); err != nil {
		t.Fatalf("handshake with the renewed certificate: %v", err)
	}
	if err, _ := handshake(t, r.ServerConfig(), clientConfig(t, set, nil)); err == nil {
		t.Fatal("old CA still verifies after renewal")
	}
	// A half-written renewal keeps the working certificate.
	current := r.Certificate()
	os.WriteFile(files.KeyFile, []byte("garbage"), 0o600)
	later = later.Add(time.Minute)
	os.Chtimes(files.KeyFile, later, later)
	now = now.Add(DefaultCheckInterval)
	if r.Certificate() != current {
		t.Fatal("a broken key replaced the working certificate")
	}
}
