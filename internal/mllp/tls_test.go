package mllp

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/certs"
)

func TestMLLPOverTLS(t *testing.T) {
	set, err := certs.Dev(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(set.Server.Cert, set.Server.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(set.CA.Cert)
	const timeout = 300 * time.Millisecond
	addr := start(t, &Server{Handler: &echo{}, ReadTimeout: timeout,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}})

	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, m := range []string{"MSH|one", "MSH|two"} {
		c.Write(frame(m))
		if got := readAck(t, r); got != "ACK:"+m {
			t.Fatalf("ack %q", got)
		}
	}

	// Plain MLLP on the TLS port gets nothing back.
	p, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Write(frame("MSH|plain"))
	p.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if n, _ := p.Read(buf); bytes.Contains(buf[:n], []byte("ACK:")) {
		t.Fatal("plain message acknowledged on the TLS port")
	}

	// A handshake trickled one byte at a time is cut at ReadTimeout.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if d := trickleUntilClosed(t, slow, []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, 10*timeout); d < timeout*8/10 {
		t.Fatalf("closed after %v, before the timeout", d)
	}
}

// A message trickled slower than ReadTimeout allows is cut, although
// every single read succeeds within it.
func TestSlowlorisMessage(t *testing.T) {
	const timeout = 300 * time.Millisecond
	addr := start(t, &Server{Handler: &echo{}, ReadTimeout: timeout})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := trickleUntilClosed(t, c, []byte("\x0bMSH|"), 10*timeout); d < timeout*8/10 {
		t.Fatalf("closed after %v, before the timeout", d)
	}
}

// trickleUntilClosed writes prefix, then filler, a byte every 30 ms, and
// returns when the server closes the connection.
func trickleUntilClosed(t *testing.T, c net.Conn, prefix []byte, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		if time.Since(start) > limit {
			t.Fatalf("connection open after %v", time.Since(start))
		}
		b := []byte{'x'}
		if i < len(prefix) {
			b = prefix[i : i+1]
		}
		if _, err := c.Write(b); err != nil {
			return time.Since(start)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		if _, err := c.Read(make([]byte, 64)); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return time.Since(start)
			}
		}
	}
}
