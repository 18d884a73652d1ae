// Package tlsconf builds the server TLS configuration shared by every Tend
// listener (HTTPS, MQTT over TLS, MLLP over TLS) from PEM files: TLS 1.2 at
// least, forward-secret AEAD cipher suites only, and an optional client CA
// against which client certificates are verified when a client presents one.
//
// The certificate is re-read when its files change (checked at most every
// few seconds, during handshakes), so a renewed certificate takes effect
// without a restart; a broken renewal keeps the previous certificate.
//
// A ClientVerifier adds client certificate authorities that live in the
// store (each organisation's device CA): servers then request and verify
// client certificates per handshake, so a new CA or a revocation needs no
// restart.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// Files names the PEM files. CertFile and KeyFile are required; ClientCAFile
// is optional.
type Files struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, makes servers ask for a client certificate
	// and verify one that is presented (VerifyClientCertIfGiven): clients
	// without a certificate still connect and authenticate as before.
	ClientCAFile string
}

// Enabled reports whether a certificate is configured.
func (f Files) Enabled() bool { return f.CertFile != "" || f.KeyFile != "" }

// Reloader holds the current certificate and reloads it when its files
// change. Use Load to make one.
type Reloader struct {
	files    Files
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	clientCA *x509.CertPool
	caCerts  []*x509.Certificate // the certificates in clientCA, to name in requests
	verifier ClientVerifier

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
}

// DefaultCheckInterval is how often, at most, the files are checked for a
// change.
const DefaultCheckInterval = 5 * time.Second

// Options tune a Reloader; the zero value is fine.
type Options struct {
	Logger        *slog.Logger     // nil: slog.Default()
	Now           func() time.Time // nil: time.Now
	CheckInterval time.Duration    // 0: DefaultCheckInterval; negative: never reload
	// ClientVerifier, when set, decides on the client certificates it
	// claims (device certificates from the store), see ServerConfig.
	ClientVerifier ClientVerifier
}

// ClientVerifier verifies client certificates against authorities that
// change while Tend runs (package deviceca: each organisation's device CA).
type ClientVerifier interface {
	// Claims reports whether the certificate is one only this verifier
	// may accept.
	Claims(leaf *x509.Certificate) bool
	// VerifyClient verifies a claimed chain, leaf first.
	VerifyClient(ctx context.Context, chain []*x509.Certificate) error
	// Authorities are the CAs to name in certificate requests; while there
	// are none, servers do not ask for certificates on their behalf.
	Authorities(ctx context.Context) []*x509.Certificate
}

// Load reads the certificate, key and client CA once, so that a mistake is
// reported at start rather than at the first handshake.
func Load(f Files, o Options) (*Reloader, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key must be given together")
	}
	r := &Reloader{files: f, log: o.Logger, now: o.Now, interval: o.CheckInterval, verifier: o.ClientVerifier}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.interval == 0 {
		r.interval = DefaultCheckInterval
	}
	if err := r.reload(); err != nil {
		return nil, err
	}
	r.lastCheck = r.now()
	if f.ClientCAFile != "" {
		pemBytes, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate found", f.ClientCAFile)
		}
		r.clientCA = pool
		r.caCerts = parseCerts(pemBytes)
	}
	return r, nil
}

// reload reads the pair; the caller holds mu or owns r exclusively.
func (r *Reloader) reload() error {
	cm, err := modTime(r.files.CertFile)
	if err != nil {
		return fmt.Errorf("--tls-cert: %w", err)
	}
	km, err := modTime(r.files.KeyFile)
	if err != nil {
		return fmt.Errorf("--tls-key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert %s / --tls-key %s: %w", r.files.CertFile, r.files.KeyFile, err)
	}
	if len(cert.Certificate) > 0 {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("--tls-cert %s: %w", r.files.CertFile, err)
		}
	}
	r.cert, r.certMod, r.keyMod = &cert, cm, km
	return nil
}

func modTime(name string) (time.Time, error) {
	st, err := os.Stat(name)
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}

// Certificate returns the current certificate, first reloading it if the
// check interval has passed and either file changed.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.interval < 0 {
		return r.cert
	}
	now := r.now()
	if now.Sub(r.lastCheck) < r.interval {
		return r.cert
	}
	r.lastCheck = now
	cm, err1 := modTime(r.files.CertFile)
	km, err2 := modTime(r.files.KeyFile)
	if err1 != nil || err2 != nil || (cm.Equal(r.certMod) && km.Equal(r.keyMod)) {
		return r.cert
	}
	old := r.cert
	if err := r.reload(); err != nil {
		// Mid-renewal (cert written, key not yet) or a bad file: keep
		// serving the previous certificate and try again later.
		r.log.Warn("TLS certificate not reloaded; keeping the previous one", "err", err)
		r.cert = old
		return r.cert
	}
	r.log.Info("TLS certificate reloaded", "cert", r.files.CertFile, "not_after", r.cert.Leaf.NotAfter)
	return r.cert
}

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange with an
// AEAD only (TLS 1.3 suites are not configurable and all qualify).
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerConfig returns a fresh server configuration; nextProtos are the
// ALPN protocols of the listener (nil for none, e.g. MQTT and MLLP). Each
// listener gets its own, as net/http adds its protocols to the one it is
// given.
func (r *Reloader) ServerConfig(nextProtos ...string) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.Certificate(), nil
		},
		NextProtos: nextProtos,
	}
	if r.clientCA != nil {
		c.ClientCAs = r.clientCA
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if r.verifier != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			return r.withVerifier(hello.Context(), c), nil
		}
	}
	return c
}

// verifyTimeout bounds the store lookups of one client verification.
const verifyTimeout = 5 * time.Second

// withVerifier is the configuration of one handshake when a ClientVerifier
// is set. While it names no authority, or when the listener requires a
// certificate, the base configuration serves unchanged (no certificate request unless --tls-client-ca is set).
// Otherwise the server requests a certificate naming the verifier's CAs
// and --tls-client-ca, and verifies what is presented itself: the
// verifier decides on the certificates it claims, --tls-client-ca on the
// others, and one neither accepts ends the handshake. A client without a
// certificate still connects (and authenticates with its secret).
func (r *Reloader) withVerifier(ctx context.Context, base *tls.Config) *tls.Config {
	if base.ClientAuth == tls.RequireAndVerifyClientCert || base.ClientAuth == tls.RequireAnyClientCert {
		// A listener that demands a certificate from its own CA (MLLP with
		// --tls-client-ca) keeps exactly that.
		return nil
	}
	cas := r.verifier.Authorities(ctx)
	if len(cas) == 0 {
		return nil
	}
	c := base.Clone()
	c.GetConfigForClient = nil
	pool := x509.NewCertPool()
	for _, ca := range append(cas, r.caCerts...) {
		pool.AddCert(ca)
	}
	c.ClientCAs = pool
	c.ClientAuth = tls.RequestClientCert
	// net/http adds "h2" to the base configuration in place and
	// "http/1.1" only to its own copy: keep both on offer.
	if slices.Contains(c.NextProtos, "h2") && !slices.Contains(c.NextProtos, "http/1.1") {
		c.NextProtos = append(slices.Clone(c.NextProtos), "http/1.1")
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
		defer cancel()
		return r.verifyClient(vctx, cs.PeerCertificates)
	}
	return c
}

// errClientCert is what a refused client certificate ends the handshake
// with; the reason is logged, not sent.
var errClientCert = errors.New("tls: client certificate not accepted")

func (r *Reloader) verifyClient(ctx context.Context, chain []*x509.Certificate) error {
	leaf := chain[0]
	var err error
	switch {
	case r.verifier.Claims(leaf):
		err = r.verifier.VerifyClient(ctx, chain)
	case r.clientCA != nil:
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: r.clientCA, Intermediates: inter, CurrentTime: r.now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	default:
		err = errors.New("no device CA or --tls-client-ca issued it")
	}
	if err != nil {
		r.log.Info("client certificate refused", "subject", leaf.Subject.CommonName, "err", err)
		return errClientCert
	}
	return nil
}

func parseCerts(pemBytes []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, pemBytes = pem.Decode(pemBytes)
		if blk == nil {
			return out
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
