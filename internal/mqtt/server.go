// Package mqtt is Tend's device-facing MQTT server (3.1.1, 3.1 and 5.0).
//
// It exists, rather than NATS built-in MQTT, so that a QoS 1 PUBACK (or QoS 2
// PUBREC) is written only after the Handler reports the reading durable, so
// that every connection is authenticated per device, and so that handlers
// from many connections run concurrently and can share one group commit.
//
// An Authenticator that also implements CertAuthenticator takes a client
// certificate presented on the TLS listener as the device's credential
// (mutual TLS); otherwise CONNECT carries user name and password.
//
// Scope: device uplink, and downlink of commands to devices (Deliver).
// SUBSCRIBE is granted per filter only if the Authenticator also implements
// SubscribeAuthorizer and allows that exact filter string (wildcards
// included); otherwise it is refused (0x80 in 3.1.1, 0x87 in 5.0). Granted
// QoS is at most 1. Subscriptions belong to the connection and end with it:
// sessions are not persisted (CONNACK session present is always 0), so a
// reconnecting device subscribes again, and Deliver never resends: its
// caller retries. Deliver sends a QoS 1 PUBLISH to each connection of the
// device with a matching subscription and returns once one of them has
// acknowledged; at most 16 such PUBLISHes (fewer if the 5.0 client's
// Receive Maximum says so) await PUBACK per connection. Will messages and
// retained flags are accepted and ignored. MQTT 5.0 topic aliases,
// subscription identifiers, shared subscriptions and enhanced
// authentication are refused cleanly (DISCONNECT 0x94 or 0xA1, SUBACK 0x9E,
// CONNACK 0x8C). A resent QoS 1 PUBLISH is handed over again (QoS 1 is at
// least once); downstream deduplicates by the reading's idempotency key. A
// resent QoS 2 PUBLISH whose PUBREL is still awaited on the same
// connection is not.
//
// Per connection there is one reader goroutine and one writer goroutine.
// QoS 1/2 PUBLISHes are handed to the Handler concurrently, up to
// MaxInflight per connection (beyond that the reader stops reading, which
// pushes back on the device); acknowledgements are written in arrival order
// as MQTT 3.1.1 §4.6 requires. SUBACK, PINGRESP and downlink PUBLISHes go
// through the same writer, so they never reorder those acknowledgements.
package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Authenticator checks CONNECT credentials (username = device id,
// password = secret). It returns nil if they are good, ErrBadCredentials or
// ErrNotAuthorized to refuse; any other error is answered "server unavailable".
// password is only valid during the call: the server wipes it afterwards.
type Authenticator interface {
	Authenticate(ctx context.Context, clientID, username string, password []byte) error
}

// CertAuthenticator is implemented by an Authenticator that also accepts
// a client certificate presented over TLS as a device's credential (mutual
// TLS). When CertificateDevice names a device for the presented chain, the
// CONNECT user name must be empty or that device, no password is needed,
// and AuthenticateCertificate decides, with the same errors as
// Authenticate. Otherwise the user name and password path applies.
type CertAuthenticator interface {
	// CertificateDevice returns the device the leaf certificate names,
	// or "" when it names none. It proves nothing by itself.
	CertificateDevice(leaf *x509.Certificate) string
	// AuthenticateCertificate verifies the chain (leaf first) proves the
	// device it names, now.
	AuthenticateCertificate(ctx context.Context, clientID string, chain []*x509.Certificate) error
}

// peerCertificate returns the client certificate chain of a TLS connection
// and the device it names, when the Authenticator takes certificates.
func (s *Server) peerCertificate(nc net.Conn) (CertAuthenticator, []*x509.Certificate, string) {
	ca, ok := s.Auth.(CertAuthenticator)
	if !ok {
		return nil, nil, ""
	}
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return nil, nil, ""
	}
	chain := tc.ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return nil, nil, ""
	}
	return ca, chain, ca.CertificateDevice(chain[0])
}

// Message is one received PUBLISH. The handler owns Payload.
type Message struct {
	ClientID, Username, Topic string
	Payload                   []byte
	QoS                       byte
	Received                  time.Time
	ProtocolVersion           byte   // 3, 4 (3.1.1) or 5
	ContentType               string // MQTT 5.0 content type property, if sent
}

// Handler is called for every PUBLISH. It returns once the message is
// durable (accepted or dead-lettered). An error made with Reject means
// dead-lettered; any other error means nothing was made durable: the message
// is not acknowledged and the connection is closed so the device retries.
type Handler interface {
	HandlePublish(ctx context.Context, m Message) error
}

// Metrics receives counters; every method must be cheap and safe for
// concurrent use. A nil Metrics is allowed.
type Metrics interface {
	ConnectionOpened()
	ConnectionClosed()
	ConnectRefused(code byte)
	PublishHandled(qos byte, d time.Duration, err error)
}

// Defaults for zero Server fields.
const (
	DefaultMaxPacketSize  = 512 << 10
	DefaultMaxInflight    = 64
	DefaultConnectTimeout = 10 * time.Second
	writeTimeout          = 30 * time.Second
	maxInflightLimit      = 65535
)

// Server is an MQTT listener. Fill in the fields, then call Start.
type Server struct {
	Addr           string // host:port; port 0 picks a free port
	Auth           Authenticator
	Handler        Handler
	Logger         *slog.Logger     // nil: slog.Default()
	MaxPacketSize  int              // default 512 KiB
	MaxInflight    int              // per connection, default 64; sent as Receive Maximum
	ConnectTimeout time.Duration    // first packet must be CONNECT within this; default 10 s
	Now            func() time.Time // Message.Received; default time.Now
	Metrics        Metrics
	// TLSAddr, with TLSConfig, is a second listener for MQTT over TLS
	// (port 8883 by convention) that shares sessions, downlink and limits
	// with the plain one. With TLSAddr set, an empty Addr means TLS only.
	// The TLS handshake falls within ConnectTimeout.
	TLSAddr   string
	TLSConfig *tls.Config

	ln       net.Listener // plain; nil when TLS only
	tlsLn    net.Listener
	ctx      context.Context // handlers run under it; cancelled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup // accept loop, connections and handler calls
	mu       sync.Mutex
	conns    map[*conn]struct{}
	sessions map[sessionKey]*conn
	users    map[string]map[*conn]struct{} // established connections by username, for Deliver
	closed   bool
}

// sessionKey scopes client ids to the authenticated device, so that one
// device cannot take over (disconnect) another device's session by reusing
// its client id.
type sessionKey struct{ username, clientID string }

// Start listens on Addr and serves connections until Close. It returns once
// listening. ctx bounds the server's life like Close does.
func (s *Server) Start(ctx context.Context) error {
	if s.Auth == nil || s.Handler == nil {
		return errors.New("mqtt: Auth and Handler are required")
	}
	if s.MaxPacketSize <= 0 {
		s.MaxPacketSize = DefaultMaxPacketSize
	}
	s.MaxPacketSize = min(s.MaxPacketSize, maxRemainingLength)
	if s.MaxInflight <= 0 {
		s.MaxInflight = DefaultMaxInflight
	}
	s.MaxInflight = min(s.MaxInflight, maxInflightLimit)
	if s.ConnectTimeout <= 0 {
		s.ConnectTimeout = DefaultConnectTimeout
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.TLSAddr != "" && s.TLSConfig == nil {
		return errors.New("mqtt: TLSAddr needs a TLSConfig")
	}
	if s.Addr != "" || s.TLSAddr == "" {
		ln, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return fmt.Errorf("mqtt: listen on %s: %w", s.Addr, err)
		}
		s.ln = ln
	}
	if s.TLSAddr != "" {
		ln, err := net.Listen("tcp", s.TLSAddr)
		if err != nil {
			if s.ln != nil {
				s.ln.Close()
				s.ln = nil
			}
			return fmt.Errorf("%w on %s: %w", ErrTLSListen, s.TLSAddr, err)
		}
		s.tlsLn = tls.NewListener(ln, s.TLSConfig)
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.conns = make(map[*conn]struct{})
	s.sessions = make(map[sessionKey]*conn)
	s.users = make(map[string]map[*conn]struct{})
	for _, ln := range []net.Listener{s.ln, s.tlsLn} {
		if ln != nil {
			s.wg.Add(1)
			go s.acceptLoop(ln)
			s.Logger.Info("mqtt listening", "addr", ln.Addr().String(), "tls", ln == s.tlsLn)
		}
	}
	if ctx.Done() != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-ctx.Done():
				s.shutdown()
			case <-s.ctx.Done():
			}
		}()
	}
	return nil
}

// ErrTLSListen marks a failure to bind TLSAddr, so that callers can name
// the right setting.
var ErrTLSListen = errors.New("mqtt: TLS listen")

// TLSListenAddr returns the bound address of the TLS listener (nil when
// there is none).
func (s *Server) TLSListenAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// ListenAddr returns the bound address (nil before Start).
func (s *Server) ListenAddr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure such as EMFILE: back off rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.Logger.Warn("mqtt accept failed", "err", err)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// register makes c the session for its key, closing any earlier one.
func (s *Server) register(c *conn) {
	key := sessionKey{c.username, c.clientID}
	s.mu.Lock()
	old := s.sessions[key]
	s.sessions[key] = c
	if s.users[c.username] == nil {
		s.users[c.username] = make(map[*conn]struct{})
	}
	s.users[c.username][c] = struct{}{}
	s.mu.Unlock()
	if old != nil && old != c {
		s.Logger.Debug("mqtt session taken over", "device", c.username, "client", c.clientID)
		old.kill(reasonSessionTakenOver)
	}
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	key := sessionKey{c.username, c.clientID}
	if s.sessions[key] == c {
		delete(s.sessions, key)
	}
	if byUser := s.users[c.username]; byUser != nil {
		delete(byUser, c)
		if len(byUser) == 0 {
			delete(s.users, c.username)
		}
	}
	s.mu.Unlock()
}

// Disconnect closes every open connection authenticated as username, as
// needed when a device's credentials are rotated. It returns how many.
func (s *Server) Disconnect(username string) int {
	var victims []*conn
	s.mu.Lock()
	for c := range s.conns {
		if c.identified.Load() && c.username == username {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.kill(reasonAdministrative)
	}
	return len(victims)
}

// Close stops accepting, closes all connections and waits for connection
// goroutines and in-flight handler calls (whose context it cancels).
func (s *Server) Close() error {
	if s.ln == nil && s.tlsLn == nil {
		return nil
	}
	s.shutdown()
	s.wg.Wait()
	return nil
}

func (s *Server) shutdown() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	all := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
	if s.tlsLn != nil {
		s.tlsLn.Close()
	}
	for _, c := range all {
		c.kill(reasonServerShuttingDown)
	}
	s.cancel()
}

// newClientID assigns an id to a client that sent an empty one.
func newClientID() string {
	var b [12]byte
	rand.Read(b[:])
	return "tend-" + hex.EncodeToString(b[:])
}
