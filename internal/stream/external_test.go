package stream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// startServer starts one external JetStream server configured by configure.
func startServer(t *testing.T, configure func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	configure(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("test server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, all written as PEM files.
type testPKI struct {
	caFile, clientCert, clientKey string
	caPool                        *x509.CertPool
	server, client                tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tend test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, name string, usage x509.ExtKeyUsage) ([]byte, []byte, tls.Certificate) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return certPEM, keyPEM, pair
	}
	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), clientCert: filepath.Join(dir, "client.pem"), clientKey: filepath.Join(dir, "client.key")}
	_, _, p.server = issue(2, "nats", x509.ExtKeyUsageServerAuth)
	certPEM, keyPEM, client := issue(3, "tend", x509.ExtKeyUsageClientAuth)
	p.client = client
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(caCert)
	writeFile(t, p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	writeFile(t, p.clientCert, certPEM)
	writeFile(t, p.clientKey, keyPEM)
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// publishAndRead checks the connection is usable end to end.
func publishAndRead(t *testing.T, s *Stream) {
	t.Helper()
	if err := s.Publish(context.Background(), "tend.readings.ext", []byte("x"), ""); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got := collect(t, s, "ext", 1, 10*time.Second); len(got) != 1 || got[0] != "x" {
		t.Fatalf("consumed %q, want [x]", got)
	}
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	ns := startServer(t, func(o *server.Options) {
		o.TLSConfig = &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{pki.server},
			ClientCAs:    pki.caPool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
		}
		o.TLSVerify = true
		o.TLSTimeout = 2
	})
	tests := []struct {
		name    string
		tls     TLS
		wantErr string // empty: the connection works
	}{
		{"no CA", TLS{}, "--nats-tls-ca"},
		{"CA but no client certificate", TLS{CAFile: pki.caFile}, "--nats-tls-cert"},
		{"CA and client certificate", TLS{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey}, ""},
		{"tls.Config", TLS{Config: &tls.Config{RootCAs: pki.caPool, Certificates: []tls.Certificate{pki.client}}}, ""},
		{"missing CA file", TLS{CAFile: filepath.Join(t.TempDir(), "none.pem")}, "--nats-tls-ca"},
		{"CA file without PEM", TLS{CAFile: pki.clientKey}, "holds no PEM certificate"},
		{"certificate without key", TLS{CAFile: pki.caFile, CertFile: pki.clientCert}, "--nats-tls-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := startExternal(t, Config{URLs: []string{ns.ClientURL()}, Replicas: 1, TLS: tt.tls})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				publishAndRead(t, s)
				return
			}
			if err == nil {
				t.Fatalf("Start succeeded; want an error mentioning %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tt.wantErr)
			}
			t.Logf("Start: %v", err)
		})
	}
}

func TestUserPasswordInURLIsNeverShown(t *testing.T) {
	const user, password, wrong = "tend", "correct-H0rse-battery", "wr0ng-Staple-guess"
	ns := startServer(t, func(o *server.Options) { o.Username, o.Password = user, password })
	addr := ns.Addr().String()
	tests := []struct {
		name, url, wantErr string
	}{
		{"wrong password", fmt.Sprintf("nats://%s:%s@%s", user, wrong, addr), "authentication refused"},
		{"no password", "nats://" + addr, "authentication refused"},
		{"right password", fmt.Sprintf("nats://%s:%s@%s", user, password, addr), ""},
		{"right password, no scheme", fmt.Sprintf("%s:%s@%s", user, password, addr), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncBuffer{}
			log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			s, err := startExternal(t, Config{URLs: []string{tt.url}, Replicas: 1, Logger: log})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				publishAndRead(t, s)
				s.Close()
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Start error %v, want one mentioning %q", err, tt.wantErr)
			}
			shown := logs.String()
			if err != nil {
				shown += err.Error()
			}
			for _, secret := range []string{password, wrong} {
				if strings.Contains(shown, secret) {
					t.Fatalf("password shown in log or error:\n%s", shown)
				}
			}
		})
	}
}

func TestNKeySeedFile(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(t.TempDir(), "tend.nk")
	writeFile(t, seedFile, seed)
	ns := startServer(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })

	if _, err := startExternal(t, Config{URLs: []string{ns.ClientURL()}, Replicas: 1}); err == nil ||
		!strings.Contains(err.Error(), "authentication refused") {
		t.Fatalf("Start without the seed: err %v, want authentication refused", err)
	}
	if _, err := startExternal(t, Config{URLs: []string{ns.ClientURL()}, Replicas: 1, NKeySeedFile: filepath.Join(t.TempDir(), "none")}); err == nil ||
		!strings.Contains(err.Error(), "--nats-nkey-seed") {
		t.Fatalf("Start with a missing seed file: err %v, want one naming --nats-nkey-seed", err)
	}
	s, err := startExternal(t, Config{URLs: []string{ns.ClientURL()}, Replicas: 1, NKeySeedFile: seedFile})
	if err != nil {
		t.Fatalf("Start with the seed: %v", err)
	}
	publishAndRead(t, s)
}

// TestCredentialsFile runs a server in operator (JWT) mode, as NGS-style and
// most managed NATS deployments do, and connects with a .creds file.
func TestCredentialsFile(t *testing.T) {
	operator, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	operatorPub, _ := operator.PublicKey()
	operatorClaims := jwt.NewOperatorClaims(operatorPub)
	if _, err := operatorClaims.Encode(operator); err != nil {
		t.Fatal(err)
	}
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	accountPub, _ := account.PublicKey()
	accountClaims := jwt.NewAccountClaims(accountPub)
	accountClaims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accountJWT, err := accountClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	userPub, _ := user.PublicKey()
	userJWT, err := jwt.NewUserClaims(userPub).Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	userSeed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, userSeed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(t.TempDir(), "tend.creds")
	writeFile(t, credsFile, creds)

	// JetStream in operator mode needs a system account.
	system, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	systemPub, _ := system.PublicKey()
	systemJWT, err := jwt.NewAccountClaims(systemPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	for pub, claims := range map[string]string{accountPub: accountJWT, systemPub: systemJWT} {
		if err := resolver.Store(pub, claims); err != nil {
			t.Fatal(err)
		}
	}
	ns := startServer(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{operatorClaims}
		o.AccountResolver = resolver
		o.SystemAccount = systemPub
	})

	if _, err := startExternal(t, Config{URLs: []string{ns.ClientURL()}, Replicas: 1}); err == nil ||
		!strings.Contains(err.Error(), "authentication refused") {
		t.Fatalf("Start without credentials: err %v, want authentication refused", err)
	}
	if _, err := startExternal(t, Config{URLs: []string{ns.ClientURL()}, Replicas: 1, Credentials: filepath.Join(t.TempDir(), "none")}); err == nil ||
		!strings.Contains(err.Error(), "--nats-creds") {
		t.Fatalf("Start with a missing credentials file: err %v, want one naming --nats-creds", err)
	}
	s, err := startExternal(t, Config{URLs: []string{ns.ClientURL()}, Replicas: 1, Credentials: credsFile})
	if err != nil {
		t.Fatalf("Start with credentials: %v", err)
	}
	publishAndRead(t, s)
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://tend:s3cret@nats-1:4222", "nats://tend:xxxxx@nats-1:4222"},
		{"tls://tend:p%40ss@nats-1:4222", "tls://tend:xxxxx@nats-1:4222"},
		{"tend:s3cret@nats-1:4222", "tend:xxxxx@nats-1:4222"},
		{"nats://s3cret-token@nats-1", "nats://xxxxx@nats-1"},
		{"nats-1:4222", "nats-1:4222"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzRedactURL(f *testing.F) {
	for _, seed := range []string{"nats://u:p@h:4222", "u:p@h", "tls://tok@h", "nats://h", "%zz:p@h", "nats://u:p%40q@h"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := redactURL(raw)
		u, ok := parseNATSURL(raw)
		if !ok || u.User == nil {
			return
		}
		secret, has := u.User.Password()
		if !has {
			secret = u.User.Username()
		}
		// Only a secret that appears nowhere else in the URL can be checked.
		rest := strings.Replace(raw, secret, "", 1)
		if len(secret) < 4 || strings.Contains(rest, secret) || strings.Contains("nats://xxxxx", secret) {
			return
		}
		if strings.Contains(got, secret) {
			t.Fatalf("redactURL(%q) = %q still holds %q", raw, got, secret)
		}
	})
}

func TestEmbeddedRefusesReplicas(t *testing.T) {
	s := New(Config{Dir: t.TempDir(), Replicas: 3})
	err := s.Start(context.Background())
	if err == nil {
		s.Close()
		t.Fatal("embedded Start with 3 replicas succeeded")
	}
	if !strings.Contains(err.Error(), "--nats-replicas applies to --nats-url only") {
		t.Fatalf("error does not explain the flag: %v", err)
	}
}

func TestReconnectDelay(t *testing.T) {
	tests := []struct {
		attempts int
		base     time.Duration
	}{
		{1, 250 * time.Millisecond},
		{2, 500 * time.Millisecond},
		{3, time.Second},
		{5, 4 * time.Second},
		{6, 5 * time.Second},
		{1000, 5 * time.Second},
	}
	for _, tt := range tests {
		for range 20 {
			got := reconnectDelay(tt.attempts)
			if got < tt.base || got > tt.base+tt.base/5 {
				t.Fatalf("reconnectDelay(%d) = %v, want %v plus at most 20%%", tt.attempts, got, tt.base)
			}
		}
	}
}
