package stream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	defaultClusterReplicas = 3
	connectTimeout         = 5 * time.Second
	reconnectBaseDelay     = 250 * time.Millisecond
	reconnectMaxDelay      = 5 * time.Second
	// setupRetryFor bounds how long Start waits for a cluster that is still
	// electing its JetStream leader (for example when Tend and NATS start
	// together).
	setupRetryFor      = 30 * time.Second
	setupAttemptLimit  = 5 * time.Second
	consumerLeaderPoll = 50 * time.Millisecond
)

// TLS configures TLS to external NATS servers. Setting any field turns TLS
// on, whatever the URL scheme says.
type TLS struct {
	CAFile   string // PEM bundle of the CAs that sign the servers' certificates; empty means the system roots
	CertFile string // PEM client certificate, for servers that verify clients
	KeyFile  string // PEM key of CertFile
	// Config is the base configuration (cloned; the files above are added
	// to it); nil means a default one.
	Config *tls.Config
}

func (t TLS) enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.Config != nil
}

// clientConfig builds the tls.Config, reading the files now so that a bad
// file is reported by name at start rather than as a handshake failure.
func (t TLS) clientConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.Config != nil {
		cfg = t.Config.Clone()
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read NATS TLS CA file (--nats-tls-ca): %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("NATS TLS CA file %s (--nats-tls-ca) holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("NATS TLS client certificate needs both --nats-tls-cert and --nats-tls-key")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load NATS TLS client certificate (--nats-tls-cert, --nats-tls-key): %w", err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}

// connectOptions are the options for an external cluster: never give up
// reconnecting (the stream is the durability point, and publishes fail
// meanwhile rather than being acknowledged), learn the cluster's other
// servers, and say in the log when the connection drops and comes back.
func (s *Stream) connectOptions() ([]nats.Option, error) {
	log := s.log
	// The client forgets its server before the disconnect callback runs.
	var lastServer atomic.Value
	remember := func(c *nats.Conn) {
		lastServer.Store(fmt.Sprintf("%s (%s)", c.ConnectedUrlRedacted(), c.ConnectedServerName()))
	}
	opts := []nats.Option{
		nats.Name("tend"),
		nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			log.Warn("disconnected from NATS; reconnecting", "server", lastServer.Load(), "err", err)
		}),
		nats.ConnectHandler(remember),
		nats.ReconnectHandler(func(c *nats.Conn) {
			remember(c)
			log.Info("reconnected to NATS", "server", c.ConnectedUrlRedacted(), "server_name", c.ConnectedServerName())
		}),
		nats.DiscoveredServersHandler(func(c *nats.Conn) {
			log.Info("NATS cluster servers discovered", "servers", redactURLs(c.DiscoveredServers()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("NATS asynchronous error", "err", err)
		}),
	}
	if f := s.cfg.Credentials; f != "" {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("NATS credentials file (--nats-creds): %w", err)
		}
		opts = append(opts, nats.UserCredentials(f))
	}
	if f := s.cfg.NKeySeedFile; f != "" {
		opt, err := nats.NkeyOptionFromSeed(f)
		if err != nil {
			return nil, fmt.Errorf("NATS NKey seed file (--nats-nkey-seed): %w", err)
		}
		opts = append(opts, opt)
	}
	if s.cfg.TLS.enabled() {
		cfg, err := s.cfg.TLS.clientConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// reconnectDelay doubles from 250 ms to 5 s, with up to 20% jitter so that
// many Tend nodes do not reconnect in lockstep.
func reconnectDelay(attempts int) time.Duration {
	d := reconnectBaseDelay
	for i := 1; i < attempts && d < reconnectMaxDelay; i++ {
		d *= 2
	}
	d = min(d, reconnectMaxDelay)
	return d + rand.N(d/5+1)
}

func (s *Stream) connectExternal() (*nats.Conn, error) {
	opts, err := s.connectOptions()
	if err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	nc, err := nats.Connect(strings.Join(s.cfg.URLs, ","), opts...)
	if err != nil {
		return nil, &redactedError{
			msg: fmt.Sprintf("stream: connect to NATS %s: %s%v", strings.Join(redactURLs(s.cfg.URLs), ","), connectHint(err), err),
			err: err, secrets: urlPasswords(s.cfg.URLs),
		}
	}
	s.log.Info("connected to NATS", "server", nc.ConnectedUrlRedacted(), "server_name", nc.ConnectedServerName(),
		"known_servers", len(nc.Servers()), "replicas", s.cfg.Replicas)
	return nc, nil
}

// connectHint says which setting to look at for the common failures.
func connectHint(err error) string {
	var unknownAuthority x509.UnknownAuthorityError
	var invalidCert x509.CertificateInvalidError
	var hostname x509.HostnameError
	msg := err.Error()
	switch {
	case errors.As(err, &unknownAuthority):
		return "server certificate not signed by a trusted CA (set --nats-tls-ca): "
	case errors.As(err, &hostname):
		return "server certificate does not name this host (use the name it was issued for in --nats-url): "
	case errors.As(err, &invalidCert):
		return "server certificate invalid: "
	case errors.Is(err, nats.ErrSecureConnRequired):
		return "server requires TLS (use tls:// in --nats-url or set --nats-tls-ca): "
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "TLS requested but the server does not offer it: "
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		strings.Contains(msg, "Authorization Violation"), strings.Contains(msg, "Authentication"):
		return "authentication refused (check --nats-creds, --nats-nkey-seed or the user:password in --nats-url): "
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"):
		return "server wants a client certificate (set --nats-tls-cert and --nats-tls-key): "
	case strings.Contains(msg, "closed by remote after TLS handshake"):
		// Under TLS 1.3 the server's alert can lose the race with the
		// client's first write; the closed connection then means the same.
		return "server closed the connection after the TLS handshake, usually because it wants a client certificate (set --nats-tls-cert and --nats-tls-key): "
	case errors.Is(err, nats.ErrNoServers):
		return "no server reachable: "
	}
	return ""
}

// tooFewServers reports whether JetStream refused the stream's replica
// count because the cluster (or a lone server) cannot place that many.
func tooFewServers(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case 10074, // replicas > 1 not supported in non-clustered mode
		10005, // no suitable peers for placement
		10023: // insufficient resources
		return true
	}
	return false
}

// transientSetupError reports whether a stream or consumer setup call failed
// only because the cluster is not ready yet (no JetStream leader, no
// responders while a leader is elected, a timed-out request).
func transientSetupError(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == 10008 // JetStream system temporarily unavailable
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// ensureStreamRetrying is ensureStream for an external cluster: it retries
// while the cluster is electing its JetStream leader.
func (s *Stream) ensureStreamRetrying(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, setupRetryFor)
	defer cancel()
	return s.retryTransient(ctx, "stream setup", func(ctx context.Context) error { return s.ensureStream(ctx, js) })
}

// retryTransient calls op, each attempt bounded by setupAttemptLimit, until
// it succeeds, fails for a reason other than a cluster not ready (a leader
// election after a server loss, for one), or ctx is done.
func (s *Stream) retryTransient(ctx context.Context, what string, op func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, setupAttemptLimit)
		err := op(actx)
		cancel()
		if err == nil || !transientSetupError(err) || ctx.Err() != nil {
			return err
		}
		delay := backoff(attempt)
		s.log.Info("NATS JetStream not ready; retrying", "what", what, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
	}
}

// awaitConsumerLeader waits, at most setupAttemptLimit, until a consumer
// just created on a cluster has a leader: a pull sent before that is lost
// and delivery would wait for the pull to expire.
func awaitConsumerLeader(ctx context.Context, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(ctx, setupAttemptLimit)
	defer cancel()
	for {
		info, err := cons.Info(ctx)
		if err == nil && (info.Cluster == nil || info.Cluster.Leader != "") {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(consumerLeaderPoll):
		}
	}
}

// redactURLs returns urls with any password replaced.
func redactURLs(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = redactURL(u)
	}
	return out
}

func redactURL(raw string) string {
	u, ok := parseNATSURL(raw)
	if !ok {
		if strings.Contains(raw, "@") {
			return "(unparsable URL with credentials)"
		}
		return raw
	}
	if u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	} else {
		// A lone user part is a token: as secret as a password.
		u.User = url.User("xxxxx")
	}
	s := u.String()
	if !strings.Contains(raw, "://") {
		s = strings.TrimPrefix(s, "nats://")
	}
	return s
}

// parseNATSURL parses raw, adding the nats:// scheme the client would add.
func parseNATSURL(raw string) (*url.URL, bool) {
	if !strings.Contains(raw, "://") {
		raw = "nats://" + raw
	}
	u, err := url.Parse(raw)
	return u, err == nil
}

// urlPasswords are the secrets in urls (passwords and tokens), to be scrubbed
// from error text.
func urlPasswords(urls []string) []string {
	var out []string
	for _, raw := range urls {
		u, ok := parseNATSURL(raw)
		if !ok || u.User == nil {
			continue
		}
		if p, has := u.User.Password(); has && p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		} else if !has && u.User.Username() != "" {
			out = append(out, u.User.Username())
		}
	}
	return out
}

// redactedError is an error whose text has the URL secrets removed, keeping
// the cause for errors.Is and errors.As.
type redactedError struct {
	msg     string
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	msg := e.msg
	for _, s := range e.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }
