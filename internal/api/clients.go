package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/oauth"
	"github.com/tendhealth/tend/internal/store"
)

// clientView is a registered client as the API shows it.
type clientView struct {
	ClientID string          `json:"client_id"`
	Name     string          `json:"name"`
	Org      string          `json:"org"`
	Role     store.Role      `json:"role"`
	Scope    string          `json:"scope"`
	JWKS     json.RawMessage `json:"jwks"`
	Created  time.Time       `json:"created"`
}

func viewClient(c store.OAuthClient) clientView {
	return clientView{ClientID: c.ID, Name: c.Name, Org: c.Org, Role: c.Role, Scope: c.Scope, JWKS: c.JWKS, Created: c.Created}
}

// principalOrg is the organisation an administrator acts in.
func principalOrg(r *http.Request) string {
	p, _ := auth.PrincipalFrom(r.Context())
	if p.Org == "" {
		return store.DefaultOrg
	}
	return p.Org
}

// postClient registers a SMART backend client:
// {"name", "jwks": {"keys": [...]}, "scope": "system/Observation.rs ...", "role": "integration"}.
func (h *Handler) postClient(srv *oauth.Server, w http.ResponseWriter, r *http.Request) error {
	var reg oauth.Registration
	if err := decodeJSON(r, &reg); err != nil {
		return err
	}
	c, err := srv.Register(r.Context(), reg, principalOrg(r))
	var re *oauth.RegistrationError
	if errors.As(err, &re) {
		return &Error{Status: http.StatusBadRequest, Detail: re.Msg}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, viewClient(c))
}

// listClients lists the clients of the administrator's organisation.
func (h *Handler) listClients(w http.ResponseWriter, r *http.Request) error {
	cs, err := h.cfg.Store.OAuthClients(r.Context(), principalOrg(r))
	if err != nil {
		return fmt.Errorf("list clients: %w", err)
	}
	out := make([]clientView, 0, len(cs))
	for _, c := range cs {
		out = append(out, viewClient(c))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"clients": out})
}

// deleteClient removes a client of the administrator's organisation; its
// access tokens stop working at once.
func (h *Handler) deleteClient(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	c, err := h.cfg.Store.OAuthClient(r.Context(), id)
	if err != nil {
		return err // ErrNotFound is a 404
	}
	if c.Org != principalOrg(r) {
		return &Error{Status: http.StatusNotFound, Detail: "not found"}
	}
	if err := h.cfg.Store.DeleteOAuthClient(r.Context(), id); err != nil {
		return fmt.Errorf("delete client: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
