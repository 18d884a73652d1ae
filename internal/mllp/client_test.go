package mllp

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClientSendsAndReconnects(t *testing.T) {
	h := &echo{}
	srv := &Server{Handler: h}
	addr := start(t, srv)
	c := &Client{Addr: addr}
	defer c.Close()
	ctx := context.Background()
	for _, msg := range []string{"MSH|one", "MSH|two\rPID|x"} {
		ack, err := c.Send(ctx, []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if string(ack) != "ACK:"+msg {
			t.Fatalf("answer %q, want %q", ack, "ACK:"+msg)
		}
	}
	// The receiver goes away: the next send fails with ErrNoAnswer, and once
	// a receiver listens again on the same address the client reconnects.
	srv.Close()
	if _, err := c.Send(ctx, []byte("MSH|three")); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("send to a closed receiver: %v, want ErrNoAnswer", err)
	}
	srv2 := &Server{Handler: h, Addr: addr}
	if err := srv2.Start(ctx); err != nil {
		t.Skipf("address %s not free again: %v", addr, err)
	}
	defer srv2.Close()
	ack, err := c.Send(ctx, []byte("MSH|four"))
	if err != nil || string(ack) != "ACK:MSH|four" {
		t.Fatalf("after reconnect: %q, %v", ack, err)
	}
}

func TestClientTimesOutWithoutAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			buf := make([]byte, 1024)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}
	}()
	c := &Client{Addr: ln.Addr().String(), AckTimeout: 100 * time.Millisecond}
	defer c.Close()
	_, err = c.Send(context.Background(), []byte("MSH|silence"))
	if !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "read answer") {
		t.Fatalf("err = %v, want a read timeout wrapped in ErrNoAnswer", err)
	}
}

func TestClientConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := &Client{Addr: addr, DialTimeout: time.Second}
	if _, err := c.Send(context.Background(), []byte("MSH|x")); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("err = %v, want ErrNoAnswer", err)
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test EHR"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestClientTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				f := &frameReader{r: bufio.NewReader(c), max: 1 << 20}
				msg, _, err := f.next(nil)
				if err == nil {
					c.Write(frame("ACK:" + string(msg)))
				}
			}()
		}
	}()
	c := &Client{Addr: ln.Addr().String(), TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	defer c.Close()
	ack, err := c.Send(context.Background(), []byte("MSH|secure"))
	if err != nil || string(ack) != "ACK:MSH|secure" {
		t.Fatalf("over TLS: %q, %v", ack, err)
	}
	// A receiver whose certificate the CA did not sign is refused.
	untrusted := &Client{Addr: ln.Addr().String(), TLS: &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1"}}
	defer untrusted.Close()
	if _, err := untrusted.Send(context.Background(), []byte("MSH|x")); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("untrusted receiver: %v, want ErrNoAnswer", err)
	}
}
