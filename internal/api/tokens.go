package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/store"
)

// postToken issues an API token for a role: {"role":"integration"|"admin"}.
func (h *Handler) postToken(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Role    store.Role `json:"role"`
		Subject string     `json:"subject"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Role != store.RoleAdmin && req.Role != store.RoleIntegration {
		return &Error{Status: http.StatusBadRequest, Detail: `role must be "admin" or "integration"`}
	}
	if req.Subject == "" {
		p, _ := auth.PrincipalFrom(r.Context())
		req.Subject = "issued-by:" + p.Subject
	}
	return h.issueToken(w, r, req.Role, req.Subject)
}

// loginTTL is how long a token from a password login lasts, like a
// dashboard session.
const loginTTL = 12 * time.Hour

// login exchanges a user's name and password (and authenticator code, when
// the user has one: "totp") for an API token that lasts loginTTL. Every
// refusal, lockout included, is the same 401 (see package signin).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
		TOTP     string `json:"totp"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	res, err := h.signin.Check(r.Context(), signin.Attempt{Username: req.Username, Password: req.Password, Code: req.TOTP,
		Source: clientAddr(r), Via: "api"})
	if errors.Is(err, signin.ErrRefused) {
		return &Error{Status: http.StatusUnauthorized, Detail: "wrong username or password"}
	}
	if err != nil {
		return err
	}
	// The audit trail names who signed in; a refusal stays nameless, since
	// the name may be a password typed into the wrong field.
	audit.SetAgent(r.Context(), auth.Principal{Subject: res.User.ID, Role: string(res.User.Role)})
	if res.MustEnrol {
		return &Error{Status: http.StatusForbidden, Detail: "your role must use an authenticator app: set it up in the dashboard under Account first"}
	}
	return h.issueTokenUntil(w, r, res.User.Role, res.User.ID, h.cfg.Now().UTC().Add(loginTTL))
}

// logout deletes the presented bearer token: it stops working at once, on
// every node.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) error {
	tok, err := auth.BearerToken(r)
	if err != nil {
		return errUnauthorized
	}
	// The audit trail names who signed out.
	if t, err := h.cfg.Store.TokenByHash(r.Context(), auth.HashSecret(tok)); err == nil {
		audit.SetAgent(r.Context(), auth.Principal{Subject: t.Subject, Role: string(t.Role), Org: t.Org})
	}
	err = h.cfg.Store.DeleteToken(r.Context(), auth.HashSecret(tok))
	if errors.Is(err, store.ErrNotFound) {
		return errUnauthorized
	}
	if err != nil {
		return fmt.Errorf("delete token: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request, role store.Role, subject string) error {
	return h.issueTokenUntil(w, r, role, subject, time.Time{})
}

// issueTokenUntil issues a token that stops working at expires (zero: never).
func (h *Handler) issueTokenUntil(w http.ResponseWriter, r *http.Request, role store.Role, subject string, expires time.Time) error {
	tok := auth.NewSecret()
	org, err := h.tokenOrg(r, subject) // access.go
	if err != nil {
		return err
	}
	if err := h.cfg.Store.PutToken(r.Context(), store.Token{Hash: auth.HashSecret(tok), Role: role, Subject: subject, Org: org, Created: h.cfg.Now().UTC(), Expires: expires}); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	body := map[string]any{"token": tok, "role": role, "subject": subject}
	if !expires.IsZero() {
		body["expires"] = expires.Format(time.RFC3339)
	}
	return writeJSON(w, http.StatusCreated, body)
}

func decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Detail: "could not read the request body"}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &Error{Status: http.StatusBadRequest, Detail: "request body is not valid JSON: " + err.Error()}
	}
	return nil
}
