// Package certs makes a development certificate authority and the
// certificates Tend needs to try TLS end to end: a server certificate for
// every listener and a client certificate for mutual TLS. Everything is
// ECDSA P-256. These are for development and testing; production uses
// certificates from the organisation's own CA or a public one.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names written by WriteDev.
const (
	CAFile         = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	ServerFile     = "server.pem"
	ServerKeyFile  = "server-key.pem"
	ClientFile     = "client.pem"
	ClientKeyFile  = "client-key.pem"
	caValidity     = 5 * 365 * 24 * time.Hour
	leafValidity   = 397 * 24 * time.Hour // what browsers accept for a leaf
	backdate       = 5 * time.Minute      // tolerate small clock skew between machines
	DefaultClient  = "tend-dev-device"
	defaultCAName  = "Tend development CA"
	defaultSrvName = "Tend development server"
)

// DefaultHosts are always in the server certificate.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Options for a development set.
type Options struct {
	Hosts      []string  // extra DNS names or IP addresses of the server
	ClientName string    // common name of the client certificate; "" is DefaultClient
	Now        time.Time // validity starts here (minus a few minutes); zero is time.Now()
}

// PEM is one certificate and its private key, PEM encoded.
type PEM struct{ Cert, Key []byte }

// Set is a development CA with a server and a client certificate it issued.
type Set struct {
	CA, Server, Client PEM
}

// Dev generates a new development set.
func Dev(o Options) (*Set, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if o.ClientName == "" {
		o.ClientName = DefaultClient
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: defaultCAName, Organization: []string{"Tend development"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if caTmpl.SerialNumber, err = serial(); err != nil {
		return nil, err
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	set := &Set{}
	if set.CA, err = encode(caDER, caKey); err != nil {
		return nil, err
	}

	srv := &x509.Certificate{
		Subject:     pkix.Name{CommonName: defaultSrvName},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(leafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	seen := map[string]bool{}
	for _, h := range append(append([]string{}, DefaultHosts...), o.Hosts...) {
		h = strings.TrimSpace(h)
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			srv.IPAddresses = append(srv.IPAddresses, ip)
		} else {
			srv.DNSNames = append(srv.DNSNames, h)
		}
	}
	if set.Server, err = issue(srv, caCert, caKey); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	cli := &x509.Certificate{
		Subject:     pkix.Name{CommonName: o.ClientName},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(leafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if set.Client, err = issue(cli, caCert, caKey); err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	return set, nil
}

func issue(tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (PEM, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PEM{}, fmt.Errorf("generate key: %w", err)
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return PEM{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return PEM{}, fmt.Errorf("sign: %w", err)
	}
	return encode(der, key)
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (PEM, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return PEM{}, fmt.Errorf("encode key: %w", err)
	}
	return PEM{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	}, nil
}

// ErrExists is returned by Write when a file is already there and force is
// false.
var ErrExists = errors.New("file exists")

// Write stores the set in dir (created 0700 if missing): certificates 0644,
// keys 0600. Without force it refuses, before writing anything, if any of
// the files exists.
func (s *Set) Write(dir string, force bool) ([]string, error) {
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CAFile, s.CA.Cert, 0o644}, {CAKeyFile, s.CA.Key, 0o600},
		{ServerFile, s.Server.Cert, 0o644}, {ServerKeyFile, s.Server.Key, 0o600},
		{ClientFile, s.Client.Cert, 0o644}, {ClientKeyFile, s.Client.Key, 0o600},
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if !force {
		for _, f := range files {
			p := filepath.Join(dir, f.name)
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%s: %w (use --force to replace it)", p, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeFile(p, f.data, f.mode); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

// writeFile replaces p atomically with the given mode, so a key is never
// readable by others even for a moment.
func writeFile(p string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p))
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
