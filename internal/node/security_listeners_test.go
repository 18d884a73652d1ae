package node_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/certs"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/tlsconf"
)

// TestMLLPRequiresClientCertificate: HL7 v2 has no authentication of its
// own, so MLLP must run on a restricted network or over TLS with client
// certificates. With --tls-client-ca set, a sender without a certificate
// (or with one from another CA) gets no ACK, and one with a certificate of
// that CA is served.
func TestMLLPRequiresClientCertificate(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	set, err := certs.Dev(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Write(certDir, false); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	n := node.New(node.Config{DataDir: data, HTTPAddr: node.Off, MQTTAddr: node.Off, MLLPAddr: "127.0.0.1:0", BootstrapToken: testToken,
		TLS: tlsconf.Files{CertFile: filepath.Join(certDir, certs.ServerFile), KeyFile: filepath.Join(certDir, certs.ServerKeyFile),
			ClientCAFile: filepath.Join(certDir, certs.CAFile)},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	addr := n.Addrs().MLLP

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(set.CA.Cert)
	client, err := tls.X509KeyPair(set.Client.Cert, set.Client.Key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.Dev(certs.Options{}) // a client certificate of another CA
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := tls.X509KeyPair(other.Client.Cert, other.Client.Key)
	if err != nil {
		t.Fatal(err)
	}
	// send returns the ACK, or "" when the server gave none.
	send := func(certs []tls.Certificate) string {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: certs})
		if err != nil {
			return ""
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := "MSH|^~\\&|MON|WARD|||20260101120000||ORU^R01|SEC-1|P|2.6\rPID|||NOBODY\r"
		if _, err := c.Write([]byte("\x0b" + msg + "\x1c\r")); err != nil {
			return ""
		}
		ack, err := bufio.NewReader(c).ReadString('\x1c')
		if err != nil {
			return ""
		}
		return ack
	}
	if ack := send(nil); ack != "" {
		t.Errorf("a sender without a client certificate was answered: %q", ack)
	}
	if ack := send([]tls.Certificate{stranger}); ack != "" {
		t.Errorf("a sender with a certificate of another CA was answered: %q", ack)
	}
	if ack := send([]tls.Certificate{client}); !strings.Contains(ack, "MSA|") {
		t.Errorf("a sender with a client certificate got %q, want an ACK", ack)
	}
}
