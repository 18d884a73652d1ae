package certs

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func parse(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDevChainVerifies(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	set, err := Dev(Options{Hosts: []string{"tend.example", "10.0.0.7", "localhost"}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ca := parse(t, set.CA.Cert)
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CA: IsCA=%v alg=%v", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	srv := parse(t, set.Server.Cert)
	tests := []struct {
		name string
		ok   bool
	}{
		{"localhost", true}, {"127.0.0.1", true}, {"::1", true}, {"tend.example", true}, {"10.0.0.7", true},
		{"other.example", false}, {"10.0.0.8", false},
	}
	for _, tt := range tests {
		_, err := srv.Verify(x509.VerifyOptions{DNSName: tt.name, Roots: roots, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if (err == nil) != tt.ok {
			t.Errorf("server cert for %q: err=%v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if len(srv.DNSNames) != 2 { // localhost once, tend.example
		t.Errorf("DNS names %v: duplicates not removed", srv.DNSNames)
	}
	// Not valid as a client certificate, and the client one not as a server's.
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate verified for client authentication")
	}
	cli := parse(t, set.Client.Cert)
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if cli.Subject.CommonName != DefaultClient {
		t.Errorf("client CN %q", cli.Subject.CommonName)
	}
	// Expiry is bounded.
	if _, err := srv.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots, CurrentTime: now.Add(400 * 24 * time.Hour)}); err == nil {
		t.Error("server certificate still valid after 400 days")
	}
	// Another set's CA does not verify this server.
	other, err := Dev(Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(parse(t, other.CA.Cert))
	if _, err := srv.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: otherRoots, CurrentTime: now}); err == nil {
		t.Error("verified against a foreign CA")
	}
}

func TestWriteModesAndNoOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	set, err := Dev(Options{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := set.Write(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 6 {
		t.Fatalf("wrote %v", files)
	}
	want := map[string]os.FileMode{CAFile: 0o644, CAKeyFile: 0o600, ServerFile: 0o644, ServerKeyFile: 0o600, ClientFile: 0o644, ClientKeyFile: 0o600}
	for name, mode := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, CAFile))
	again, err := Dev(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Write(dir, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second write without force: %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if string(before) != string(after) {
		t.Fatal("refused write changed ca.pem")
	}
	if _, err := again.Write(dir, true); err != nil {
		t.Fatalf("write with force: %v", err)
	}
	after, _ = os.ReadFile(filepath.Join(dir, CAFile))
	if string(after) != string(again.CA.Cert) {
		t.Fatal("force did not replace ca.pem")
	}
}
