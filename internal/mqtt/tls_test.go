package mqtt

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/certs"
)

func tlsPair(t *testing.T) (server, client *tls.Config) {
	t.Helper()
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
	return &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: roots, ServerName: "localhost"}
}

func dialTLS(t *testing.T, addr net.Addr, cfg *tls.Config) *rawClient {
	t.Helper()
	nc, err := tls.Dial("tcp", addr.String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func TestTLSListener(t *testing.T) {
	srvCfg, cliCfg := tlsPair(t)
	rec := newRecorder()
	s := startServer(t, rec, func(s *Server) { s.TLSAddr, s.TLSConfig = "127.0.0.1:0", srvCfg })
	if s.ListenAddr() == nil || s.TLSListenAddr() == nil || s.ListenAddr().String() == s.TLSListenAddr().String() {
		t.Fatalf("listeners plain %v TLS %v", s.ListenAddr(), s.TLSListenAddr())
	}
	for _, level := range []byte{level311, level5} {
		c := dialTLS(t, s.TLSListenAddr(), cliCfg)
		if ack := c.connect(level, "tls-client", "dev", "secret", 30); ack[1] != 0 {
			t.Fatalf("CONNACK %x", ack)
		}
		c.send(buildPublish(level, 1, false, 7, "tend/v1/devices/dev/obs", "reading", nil))
		if h, _ := c.mustRead(); h != typePuback<<4 {
			t.Fatalf("want PUBACK, got %#x", h)
		}
		if m := rec.wait(t); string(m.Payload) != "reading" {
			t.Fatalf("payload %q", m.Payload)
		}
	}
	// Plain MQTT still answers on its own port, and the TLS port does not
	// speak plain MQTT.
	dialRaw(t, s).connect(level311, "plain", "dev", "secret", 30)
	nc, err := net.Dial("tcp", s.TLSListenAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	plainOnTLS := &rawClient{t: t, nc: nc, r: bufio.NewReader(nc)}
	plainOnTLS.send(buildConnect(level311, "c", "dev", "secret", 0, nil))
	if h, _, err := plainOnTLS.read(2 * time.Second); err == nil && h == typeConnack<<4 {
		t.Fatal("plain CONNECT answered on the TLS port")
	}
}

func TestTLSOnly(t *testing.T) {
	srvCfg, cliCfg := tlsPair(t)
	s := startServer(t, newRecorder(), func(s *Server) { s.Addr, s.TLSAddr, s.TLSConfig = "", "127.0.0.1:0", srvCfg })
	if s.ListenAddr() != nil {
		t.Fatalf("plain listener on %v", s.ListenAddr())
	}
	dialTLS(t, s.TLSListenAddr(), cliCfg).connect(level311, "c", "dev", "secret", 30)
	if err := (&Server{TLSAddr: "127.0.0.1:0", Auth: testAuth{}, Handler: newRecorder()}).Start(t.Context()); err == nil {
		t.Fatal("TLSAddr without TLSConfig started")
	}
	// A taken TLS port is reported as such.
	busy := &Server{Addr: "127.0.0.1:0", TLSAddr: s.TLSListenAddr().String(), TLSConfig: srvCfg, Auth: testAuth{}, Handler: newRecorder()}
	if err := busy.Start(t.Context()); !errors.Is(err, ErrTLSListen) {
		t.Fatalf("busy TLS port: %v", err)
	}
}

// A client that trickles its CONNECT (or its TLS ClientHello) one byte at
// a time is cut at ConnectTimeout: the deadline covers the whole
// handshake, not each read.
func TestSlowlorisConnect(t *testing.T) {
	srvCfg, _ := tlsPair(t)
	const timeout = 300 * time.Millisecond
	s := startServer(t, newRecorder(), func(s *Server) {
		s.ConnectTimeout = timeout
		s.TLSAddr, s.TLSConfig = "127.0.0.1:0", srvCfg
	})
	connect := buildConnect(level311, "slow", "dev", "secret", 0, nil)
	for name, addr := range map[string]net.Addr{"plain": s.ListenAddr(), "tls": s.TLSListenAddr()} {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			start := time.Now()
			for i := 0; ; i++ {
				if time.Since(start) > 10*timeout {
					t.Fatalf("connection open after %v", time.Since(start))
				}
				// A TLS handshake record announcing 512 bytes, then filler
				// that it waits for.
				hello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}
				b := []byte{0}
				if i < len(hello) {
					b = hello[i : i+1]
				}
				if name == "plain" {
					b = []byte{connect[i%len(connect)]}
				}
				if _, err := nc.Write(b); err != nil {
					break
				}
				nc.SetReadDeadline(time.Now().Add(timeout / 10))
				if _, err := nc.Read(make([]byte, 64)); err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						break // closed by the server
					}
				}
			}
			if d := time.Since(start); d < timeout*8/10 {
				t.Fatalf("closed after %v, before the connect timeout", d)
			}
		})
	}
}
