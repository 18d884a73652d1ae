package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/tendhealth/tend/internal/auth"
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

// login exchanges a user's name and password for an API token.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	u, err := h.cfg.Store.User(r.Context(), req.Username)
	if err != nil || !auth.PasswordMatches(req.Password, u.PasswordHash) {
		return &Error{Status: http.StatusUnauthorized, Detail: "wrong username or password"}
	}
	return h.issueToken(w, r, u.Role, u.ID)
}

func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request, role store.Role, subject string) error {
	tok := auth.NewSecret()
	if err := h.cfg.Store.PutToken(r.Context(), store.Token{Hash: auth.HashSecret(tok), Role: role, Subject: subject, Created: h.cfg.Now().UTC()}); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "role": role, "subject": subject})
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
