package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

var errUnauthorized = &Error{Status: http.StatusUnauthorized, Detail: "a valid bearer token is required"}

// withRole authenticates the bearer token and admits only the given roles.
// Deny by default: no token, an unknown token or another role is refused.
func (h *Handler) withRole(fn handlerFunc, roles ...store.Role) http.Handler {
	return h.serve(func(w http.ResponseWriter, r *http.Request) error {
		tok, err := auth.BearerToken(r)
		if err != nil {
			return errUnauthorized
		}
		t, err := h.cfg.Store.TokenByHash(r.Context(), auth.HashSecret(tok))
		if errors.Is(err, store.ErrNotFound) {
			return errUnauthorized
		}
		if err != nil {
			return fmt.Errorf("look up token: %w", err)
		}
		// The audit trail names the caller, also when refused below.
		audit.SetAgent(r.Context(), auth.Principal{Subject: t.Subject, Role: string(t.Role), Org: t.Org})
		if err := h.checkTokenLimits(t, r); err != nil { // expiry and SMART scopes (smart.go)
			return err
		}
		for _, role := range roles {
			if t.Role == role {
				ctx := auth.WithPrincipal(r.Context(), auth.Principal{Subject: t.Subject, Role: string(t.Role), Org: t.Org, Scopes: t.Scopes})
				if ctx, err = h.withPatientLink(ctx, t); err != nil { // access.go
					return err
				}
				return fn(w, r.WithContext(ctx))
			}
		}
		return &Error{Status: http.StatusForbidden, Detail: fmt.Sprintf("this endpoint is not open to the %s role", t.Role)}
	})
}

func (h *Handler) admin(fn handlerFunc) http.Handler { return h.withRole(fn, store.RoleAdmin) }
