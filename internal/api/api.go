// Package api serves Tend's HTTP interface: health and metrics, the device
// ingest endpoint, the operator API under /api/v1, and the FHIR endpoints
// (mounted from package fhir) behind token authentication.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/deviceca"
	"github.com/tendhealth/tend/internal/ingest"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/routes"
	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/store"
)

// Kicker closes the open connections of a device (credential rotation).
type Kicker interface {
	Disconnect(username string) int
}

// Config is what the HTTP API needs; the node wires it.
type Config struct {
	Store   store.Store
	Ingest  *ingest.Pipeline
	FHIR    http.Handler // served under /fhir/ for admin and integration tokens
	Metrics http.Handler // /metrics
	Ready   func() error // nil when ready to accept data
	Kickers []Kicker     // protocol front ends holding device connections
	Now     func() time.Time
	Logger  *slog.Logger

	// Alarm API and live stream; each group of routes is served only when
	// what it needs is set.
	Alarms     *alarm.Service
	AlarmStore alarm.Store
	Profiles   *alarm.Profiles
	Live       *live.Hub

	// PublicURL is the base URL clients use (https://tend.example.org),
	// when Tend is behind a proxy: SMART metadata names the token endpoint
	// under it, and client assertions may be addressed to it. Without it
	// both come from each request's scheme and Host.
	PublicURL string

	// AuditEvents serves the audit trail as FHIR AuditEvent under
	// /fhir/AuditEvent, to auditor and admin tokens only.
	AuditEvents http.Handler

	// SignIn checks password logins (lockout, second factor); nil builds
	// one over Store.
	SignIn *signin.Checker

	// DeviceCA issues and revokes device certificates (devicecerts.go);
	// nil: revocation still works, issuing is refused.
	DeviceCA *deviceca.Authority
}

// Handler is the root HTTP handler.
type Handler struct {
	cfg    Config
	mux    *routes.Mux
	signin *signin.Checker
}

// New builds the routes.
func New(cfg Config) *Handler {
	h := &Handler{cfg: cfg, mux: routes.New(), signin: cfg.SignIn}
	if h.signin == nil {
		h.signin = signin.New(signin.Config{Store: cfg.Store, Now: cfg.Now, Logger: cfg.Logger})
	}
	m := h.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	m.Handle("GET /readyz", h.serve(h.readyz))
	if cfg.Metrics != nil {
		m.Handle("GET /metrics", cfg.Metrics)
	}
	m.Handle("POST /api/v1/devices/{id}/obs", h.serve(h.postObservations))
	m.Handle("POST /api/v1/devices/{id}/credentials", h.admin(h.postCredentials))
	m.Handle("POST /api/v1/devices/{id}/certificates", h.admin(h.postDeviceCertificate))
	m.Handle("POST /api/v1/devices/{id}/certificates/revoke", h.admin(h.revokeDeviceCertificates))
	// Dead letters belong to no organisation: the installation's operator handles them (access.go).
	m.Handle("GET /api/v1/deadletters", h.admin(operatorOnly(h.listDeadLetters)))
	m.Handle("GET /api/v1/deadletters/{id}", h.admin(operatorOnly(h.getDeadLetter)))
	m.Handle("POST /api/v1/deadletters/{id}/replay", h.admin(operatorOnly(h.replayDeadLetter)))
	m.Handle("GET /api/v1/patients/{id}/latest", h.withRole(h.scopedPatient(h.latest), patientReaders...))
	m.Handle("GET /api/v1/patients/{id}/locations", h.withRole(h.scopedPatient(h.locations), patientReaders...))
	m.Handle("POST /api/v1/tokens", h.admin(h.postToken))
	m.Handle("POST /api/v1/auth/token", h.serve(h.login))
	m.Handle("POST /api/v1/auth/logout", h.serve(h.logout))
	h.alarmRoutes()
	// Organisations, users, care teams, consents, break-glass (access.go).
	h.accessRoutes()
	h.smartRoutes() // SMART Backend Services: clients, token endpoint, metadata (smart.go)
	if cfg.FHIR != nil {
		scoped := h.enforceScopes(cfg.FHIR) // SMART scopes, for tokens that carry them (scopes.go)
		fhirHandler := h.withRole(func(w http.ResponseWriter, r *http.Request) error {
			if err := fhirWriteAllowed(r); err != nil { // reads are scoped per patient in package fhir
				return err
			}
			scoped.ServeHTTP(w, r)
			return nil
		}, patientReaders...)
		m.Handle("/fhir/", fhirHandler)
		// The CapabilityStatement is public: FHIR and SMART clients read it
		// before they have a token, and it says nothing about any patient.
		m.Handle("GET /fhir/metadata", cfg.FHIR)
		// The base itself takes batch and transaction Bundles; without this
		// the mux would redirect a POST to /fhir/ and lose its body.
		m.Handle("/fhir", fhirHandler)
	}
	if cfg.AuditEvents != nil { // more specific than /fhir/: auditors read it, clinical roles do not
		ae := h.withRole(func(w http.ResponseWriter, r *http.Request) error { cfg.AuditEvents.ServeHTTP(w, r); return nil }, store.RoleAuditor, store.RoleAdmin)
		m.Handle("/fhir/AuditEvent", ae)
		m.Handle("/fhir/AuditEvent/", ae)
	}
	m.Handle("/", h.serve(func(w http.ResponseWriter, r *http.Request) error {
		return &Error{Status: http.StatusNotFound, Detail: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)}
	}))
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// Error is an error with a status and a detail safe to show the caller.
type Error struct {
	Status int
	Detail string
	Extra  map[string]any // extra members of the problem document
}

func (e *Error) Error() string { return e.Detail }

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// serve is the one adapter that turns a handler's error into a response:
// problem+json (RFC 9457) with user-safe text; internal detail only in logs.
func (h *Handler) serve(fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := fn(w, r)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			var rej *ingest.Rejection
			var tooBig *http.MaxBytesError
			switch {
			case errors.As(err, &rej):
				e = &Error{Status: rej.Status, Detail: rej.Reason, Extra: map[string]any{"deadletter": rej.DeadLetter}}
			case errors.As(err, &tooBig):
				e = &Error{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("request body is over the %d byte limit", tooBig.Limit)}
			case errors.Is(err, store.ErrNotFound):
				e = &Error{Status: http.StatusNotFound, Detail: "not found"}
			case errors.Is(err, context.Canceled):
				return
			default:
				h.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
				e = &Error{Status: http.StatusServiceUnavailable, Detail: "Tend could not take this request right now; nothing was stored; retry later"}
			}
		}
		writeProblem(w, e)
	})
}

func writeProblem(w http.ResponseWriter, e *Error) {
	doc := map[string]any{"type": "about:blank", "title": http.StatusText(e.Status), "status": e.Status, "detail": e.Detail}
	for k, v := range e.Extra {
		doc[k] = v
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tend"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(doc)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := h.cfg.Ready(); err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Detail: "not ready: " + err.Error()}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ready")
	return nil
}

// Routes lists the patterns the handler serves (for the security tests
// that walk every route).
func (h *Handler) Routes() []string { return h.mux.Patterns() }
