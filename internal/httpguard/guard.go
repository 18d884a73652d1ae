// Package httpguard is the outermost HTTP middleware of a Tend node. It
// sets the security headers every answer carries, keeps each client
// (remote address; X-Forwarded-For only from trusted proxies) within a
// request rate and a number of concurrent requests, caps request bodies,
// and bounds how long a client may take to send a body or read an answer,
// so that a slow or greedy client cannot hold the server's resources.
//
// Device ingest has its own, larger budget so that busy gateways are not
// starved by, or starve, interactive use; health checks are never limited;
// server-sent-event streams count against the rate but not against
// concurrency, and have their own cap.
package httpguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults for zero Config fields.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = time.Minute
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxClients        = 100_000
	// HSTSMaxAge is one year, the value browsers' preload lists expect.
	HSTSMaxAge = 365 * 24 * time.Hour
)

// Class is how a request is budgeted.
type Class int

const (
	ClassAPI    Class = iota // everything else
	ClassIngest              // device ingest
	ClassStream              // long-lived server-sent events
	ClassExempt              // health checks
)

// Config of a Guard. The zero value limits nothing but still sets headers
// and timeouts.
type Config struct {
	API    Limit // per client, ClassAPI requests
	Ingest Limit // per client, ClassIngest requests
	// Streams is how many ClassStream requests one client may hold open;
	// 0 is no limit. Opening one also takes an API token.
	Streams int
	// MaxBody caps every request body in bytes; 0 is no cap (handlers keep
	// their own, smaller, limits).
	MaxBody int64
	// ReadHeaderTimeout, BodyTimeout, WriteTimeout and IdleTimeout bound a
	// slow client: the request head, a request body, writing one answer
	// (not streams) and an idle keep-alive connection. Zero means the
	// Default; negative turns BodyTimeout or WriteTimeout off.
	ReadHeaderTimeout, BodyTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	// LimitLoopback applies the limits to clients on the loopback
	// interface too. Off by default: those are local tools and tests, or a
	// reverse proxy on the same host, whose clients would otherwise all
	// share one budget (list it in TrustedProxies to limit each of them).
	LimitLoopback bool
	// TrustedProxies may set X-Forwarded-For (and X-Forwarded-Proto for
	// HSTS); nobody else is believed.
	TrustedProxies []netip.Prefix
	MaxClients     int                       // tracked clients per budget; 0 is DefaultMaxClients
	Classify       func(*http.Request) Class // nil: DefaultClassify
	Now            func() time.Time          // nil: time.Now
}

// Guard wraps a handler. Make one with New.
type Guard struct {
	cfg     Config
	next    http.Handler
	api     *limiter
	ingest  *limiter
	streams *limiter
}

// New returns next wrapped by the guard.
func New(cfg Config, next http.Handler) *Guard {
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.Classify == nil {
		cfg.Classify = DefaultClassify
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Guard{cfg: cfg, next: next}
	if cfg.API.on() {
		g.api = newLimiter(cfg.API, cfg.MaxClients)
	}
	if cfg.Ingest.on() {
		g.ingest = newLimiter(cfg.Ingest, cfg.MaxClients)
	}
	if cfg.Streams > 0 {
		g.streams = newLimiter(Limit{Concurrency: cfg.Streams}, cfg.MaxClients)
	}
	return g
}

// ConfigureServer sets the connection-level timeouts and header limit on
// srv. ReadTimeout and WriteTimeout stay 0: as whole-connection deadlines
// they would cut server-sent-event streams, so the guard sets per-request
// deadlines instead.
func (g *Guard) ConfigureServer(srv *http.Server) {
	srv.ReadHeaderTimeout = g.cfg.ReadHeaderTimeout
	srv.IdleTimeout = g.cfg.IdleTimeout
	srv.MaxHeaderBytes = g.cfg.MaxHeaderBytes
	srv.ReadTimeout, srv.WriteTimeout = 0, 0
}

// DefaultClassify knows Tend's routes: device ingest, the event streams of
// the API and the dashboard, and the health checks.
func DefaultClassify(r *http.Request) Class {
	p := r.URL.Path
	switch {
	case p == "/healthz" || p == "/readyz":
		return ClassExempt
	case r.Method == http.MethodPost && strings.HasPrefix(p, "/api/v1/devices/") && strings.HasSuffix(p, "/obs") &&
		strings.Count(p, "/") == 5:
		return ClassIngest
	case r.Method == http.MethodGet && (p == "/api/v1/stream" || strings.HasPrefix(p, "/events/") ||
		strings.Contains(r.Header.Get("Accept"), "text/event-stream")):
		return ClassStream
	}
	return ClassAPI
}

// Security headers. The dashboard replaces the CSP (and the framing and
// referrer headers) with its own page policy; everything else is an API
// answer that needs no content at all.
const (
	apiCSP = "default-src 'none'; frame-ancestors 'none'"
)

func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", apiCSP)
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	client, proxied := ClientAddr(r, g.cfg.TrustedProxies)
	if r.TLS != nil || (proxied && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")) {
		h.Set("Strict-Transport-Security", "max-age="+strconv.Itoa(int(HSTSMaxAge/time.Second)))
	}

	class := g.cfg.Classify(r)
	if class != ClassExempt && (g.cfg.LimitLoopback || !client.IsLoopback()) {
		key := clientKey(client)
		now := g.cfg.Now()
		var budgets []*limiter
		switch class {
		case ClassIngest:
			budgets = []*limiter{g.ingest}
		case ClassStream:
			budgets = []*limiter{g.streams}
		default:
			budgets = []*limiter{g.api}
		}
		for _, l := range budgets {
			if l == nil {
				continue
			}
			ok, retry, release := l.acquire(key, now, true)
			if !ok {
				tooMany(w, retry)
				return
			}
			defer release()
		}
		// Opening a stream costs an API request but holds no API slot
		// for the stream's long life.
		if class == ClassStream && g.api != nil {
			if ok, retry, _ := g.api.acquire(key, now, false); !ok {
				tooMany(w, retry)
				return
			}
		}
	}

	if g.cfg.MaxBody > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > g.cfg.MaxBody {
			problem(w, http.StatusRequestEntityTooLarge, "Content Too Large",
				fmt.Sprintf("request body is over the %d byte limit", g.cfg.MaxBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxBody)
	}
	rc := http.NewResponseController(w)
	if g.cfg.BodyTimeout > 0 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		// The deadline is lifted once the body is read: left in place it
		// would end the request (net/http cancels its context when a
		// read times out) although the client did nothing wrong.
		if rc.SetReadDeadline(g.cfg.Now().Add(g.cfg.BodyTimeout)) == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
	}
	if class != ClassStream && g.cfg.WriteTimeout > 0 {
		rc.SetWriteDeadline(g.cfg.Now().Add(g.cfg.WriteTimeout))
	}
	g.next.ServeHTTP(w, r)
}

// deadlineBody lifts the read deadline at the end of the body.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	// Only a complete body lifts it: after a timeout the server must not
	// go on waiting to discard the rest.
	if errors.Is(err, io.EOF) && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func tooMany(w http.ResponseWriter, retry time.Duration) {
	secs := max(1, int(math.Ceil(retry.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	problem(w, http.StatusTooManyRequests, "Too Many Requests",
		fmt.Sprintf("too many requests from this client; retry in %d s", secs))
}

func problem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail})
}
