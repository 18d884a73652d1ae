// Package web serves the clinician and caregiver dashboard: server-rendered
// pages (html/template) for the ward overview, a patient, the alarm inbox,
// the device fleet and user administration, kept live with server-sent
// events and htmx, with charts drawn by uPlot.
//
// Every asset is embedded and served by Tend itself (no third-party
// requests), and pages run under a strict Content-Security-Policy: no inline
// script or style, so everything a device or patient record says is text
// escaped by html/template and can never run.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/routes"
	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/store"
)

//go:embed assets
var assetFS embed.FS

// Kicker closes the open connections of a device (credential rotation).
type Kicker interface {
	Disconnect(username string) int
}

// Config is what the dashboard needs; the node wires it. Alarms,
// AlarmStore and Live may be nil: the pages then show no alarms or no live
// updates.
type Config struct {
	Store      store.Store
	Alarms     *alarm.Service
	AlarmStore alarm.Store
	Profiles   *alarm.Profiles // NEWS2 scale per patient; nil means scale 1
	Live       *live.Hub

	// SessionKey is the data directory's key (see LoadOrCreateKey); when
	// SignIn is nil, TOTP secrets are sealed with a key derived from it.
	SessionKey []byte
	// SignIn checks passwords, second factors and lockout; nil builds one
	// over Store.
	SignIn *signin.Checker
	// SessionIdle ends a session unused this long (DefaultSessionIdle when
	// zero); sessions end 12 h after sign-in whatever the activity.
	SessionIdle time.Duration
	// SecureCookies marks cookies Secure even on plain HTTP (behind a TLS
	// terminating proxy); requests that arrive over TLS always get it.
	SecureCookies bool

	Kickers         []Kicker            // protocol front ends holding device connections
	OnDeviceChanged func(device string) // invalidates ingest caches after a registration
	// OnBreakGlass tells the organisation's privacy officer of an emergency
	// access granted from the dashboard (the API's alert); nil tells nobody.
	OnBreakGlass func(ctx context.Context, g store.BreakGlass)

	// StaleAfter is the age from which a vital sign is shown as stale
	// (15 minutes when zero).
	StaleAfter time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
}

// Handler is the dashboard's root handler.
type Handler struct {
	cfg      Config
	mux      *routes.Mux
	pages    *pages
	sessions sessions
	checker  *signin.Checker
	// watchEvery is how often an event stream checks its session is alive.
	watchEvery time.Duration

	registered registered
	latest     *latestCache
	patients   *patientList
	tiles      tileCache
}

// New builds the routes. It does no I/O.
func New(cfg Config) (*Handler, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 15 * time.Minute
	}
	if len(cfg.SessionKey) < 32 {
		return nil, errors.New("web: the session key must be at least 32 bytes")
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, mux: routes.New(), pages: p,
		sessions: sessions{store: cfg.Store, now: cfg.Now, idle: cfg.SessionIdle, secure: cfg.SecureCookies},
		checker:  cfg.SignIn, watchEvery: touchEvery}
	if h.sessions.idle <= 0 {
		h.sessions.idle = DefaultSessionIdle
	}
	if h.checker == nil {
		if h.checker, err = defaultChecker(cfg); err != nil {
			return nil, err
		}
	}
	h.latest = &latestCache{hub: cfg.Live, store: cfg.Store, now: cfg.Now}
	h.patients = &patientList{store: cfg.Store, now: cfg.Now}
	h.routes()
	return h, nil
}

// Close drops the cache of latest values and its live subscription.
func (h *Handler) Close() { h.latest.close() }

func (h *Handler) routes() {
	m := h.mux
	static, _ := fs.Sub(assetFS, "assets")
	m.Handle("GET /assets/", http.StripPrefix("/assets/", cacheAssets(http.FileServerFS(static))))
	m.Handle("GET /favicon.ico", http.RedirectHandler("/assets/icon.svg", http.StatusMovedPermanently))
	m.Handle("GET /signin", h.serve(h.signinPage))
	m.Handle("POST /signin", h.serve(h.signin))
	m.Handle("POST /signout", h.serve(h.signout))
	m.Handle("GET /account", h.signedIn(h.account))
	m.Handle("POST /account/totp", h.signedIn(h.enrolTOTP))

	m.Handle("GET /{$}", h.allow(permHome, h.home)) // rules.go: the ward, or the audit trail for auditors
	m.Handle("GET /events/ward", h.allow(permViewPatients, h.wardEvents))
	m.Handle("GET /patients/{id}", h.allow(permViewPatients, h.patientOrBreakGlass)) // breakglass.go
	m.Handle("POST /patients/{id}/notes", h.allow(permWriteNotes, h.addNote))        // notes.go
	m.Handle("GET /break-glass", h.allow(permBreakGlass, h.breakGlassPage))
	m.Handle("POST /break-glass", h.allow(permBreakGlass, h.breakGlass))
	m.Handle("GET /patients/{id}/series", h.allow(permViewPatients, h.series))
	m.Handle("GET /patients/{id}/rules", h.allow(permViewRules, h.patientRules)) // rules.go
	m.Handle("POST /patients/{id}/rules", h.allow(permEditRules, h.changeRule))
	m.Handle("POST /patients/{id}/devices", h.allow(permManageDevices, h.bindDevice))
	m.Handle("GET /alarms", h.allow(permViewAlarms, h.inbox))
	m.Handle("GET /events/alarms", h.allow(permViewAlarms, h.inboxEvents))
	m.Handle("POST /alarms/{id}/{action}", h.allow(permActOnAlarms, h.alarmAction))
	m.Handle("GET /devices", h.allow(permViewDevices, h.devices))
	m.Handle("POST /devices", h.allow(permManageDevices, h.registerDevice))
	m.Handle("POST /devices/{id}/credentials", h.allow(permManageDevices, h.rotateCredentials))
	m.Handle("GET /admin/users", h.allow(permManageUsers, h.users))
	m.Handle("POST /admin/users", h.allow(permManageUsers, h.createUser))
	m.Handle("GET /admin/teams", h.allow(permAdminister, h.teams)) // admin.go
	m.Handle("POST /admin/teams", h.allow(permAdminister, h.createTeam))
	m.Handle("POST /admin/teams/{id}/{kind}", h.allow(permAdminister, h.changeTeam))
	m.Handle("GET /admin/consents", h.allow(permAdminister, h.consents))
	m.Handle("POST /admin/consents", h.allow(permAdminister, h.grantConsent))
	m.Handle("POST /admin/consents/{id}/revoke", h.allow(permAdminister, h.revokeConsent))
	m.Handle("GET /admin/org", h.allow(permAdminister, h.orgSettings))
	m.Handle("POST /admin/org", h.allow(permAdminister, h.saveOrg))
	m.Handle("GET /admin/break-glass", h.allow(permAdminister, h.grants))
	m.Handle("GET /audit", h.allow(permReadAudit, h.auditLog)) // auditlog.go
	m.Handle("POST /audit/verify", h.allow(permReadAudit, h.verifyAudit))
	m.Handle("/", h.serve(func(w http.ResponseWriter, r *http.Request) error {
		return &pageError{Status: http.StatusNotFound, Message: "There is no such page."}
	}))
}

// contentSecurityPolicy allows only Tend's own files: no inline script or
// style, no framing, forms post only back here.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	h.mux.ServeHTTP(w, r)
}

// cacheAssets lets browsers keep the embedded files for a day; they change
// only with a new release.
func cacheAssets(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		next.ServeHTTP(w, r)
	})
}

// apiPrefixes are the paths that belong to the API handler when the
// dashboard is mounted at "/".
var apiPrefixes = []string{"/api/", "/fhir/"}

var apiPaths = map[string]bool{"/fhir": true, "/healthz": true, "/readyz": true, "/metrics": true,
	"/auth/token": true, "/.well-known/smart-configuration": true} // SMART Backend Services

// Mount serves the API's paths (/api/, /fhir, /healthz, /readyz,
// /metrics) with api and everything else with the dashboard.
func Mount(api, dashboard http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if apiPaths[p] {
			api.ServeHTTP(w, r)
			return
		}
		for _, pre := range apiPrefixes {
			if strings.HasPrefix(p, pre) {
				api.ServeHTTP(w, r)
				return
			}
		}
		dashboard.ServeHTTP(w, r)
	})
}

// pageError is an error with a status and a message safe to show the user.
type pageError struct {
	Status  int
	Message string
}

func (e *pageError) Error() string { return e.Message }

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// serve turns a handler's error into an error page with user-safe text;
// internal detail goes only to the log.
func (h *Handler) serve(fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := fn(w, r)
		if err == nil {
			return
		}
		var e *pageError
		if !errors.As(err, &e) {
			switch {
			case errors.Is(err, store.ErrNotFound), errors.Is(err, alarm.ErrNotFound):
				e = &pageError{Status: http.StatusNotFound, Message: "Not found."}
			case errors.Is(err, context.Canceled):
				return
			default:
				h.cfg.Logger.Error("dashboard request failed", "method", r.Method, "path", r.URL.Path, "err", err)
				e = &pageError{Status: http.StatusServiceUnavailable, Message: "Tend could not show this right now; try again shortly."}
			}
		}
		sess, ok := h.sessions.read(r)
		if ok { // the menu, for a signed-in user
			if u, err := h.cfg.Store.User(r.Context(), sess.User); err == nil {
				sess.Name, sess.Role = u.Name, u.Role
			}
		}
		h.render(w, r, e.Status, "error", page{Title: http.StatusText(e.Status), Session: sess, Data: e})
	})
}

func orNotFound(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return &pageError{Status: http.StatusNotFound, Message: "No such " + what + "."}
	}
	return fmt.Errorf("load %s: %w", what, err)
}

// Routes lists the patterns the handler serves (for the security tests
// that walk every route).
func (h *Handler) Routes() []string { return h.mux.Patterns() }
