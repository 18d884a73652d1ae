package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

type usersData struct {
	Counts  []roleCount
	Created *createdUser
	Roles   []store.Role
}

type roleCount struct {
	Role  store.Role
	Count int
}

type createdUser struct {
	ID, Name, Password string
	Role               store.Role
}

var userRoles = []store.Role{store.RoleAdmin, store.RoleIntegration}

// users is the administration page: how many users hold each role and a
// form to add one. (The store cannot list users yet.)
func (h *Handler) users(w http.ResponseWriter, r *http.Request) error {
	return h.showUsers(w, r, nil)
}

func (h *Handler) showUsers(w http.ResponseWriter, r *http.Request, created *createdUser) error {
	d := usersData{Created: created, Roles: userRoles}
	for _, role := range userRoles {
		n, err := h.cfg.Store.CountUsers(r.Context(), role)
		if err != nil {
			return fmt.Errorf("count users: %w", err)
		}
		d.Counts = append(d.Counts, roleCount{role, n})
	}
	h.render(w, r, http.StatusOK, "users", page{Title: "Users", Nav: "admin", Session: sessionFrom(r.Context()), Data: d})
	return nil
}

// createUser adds a user with a generated password, shown once.
func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimSpace(r.PostFormValue("username"))
	name := strings.TrimSpace(r.PostFormValue("name"))
	role := store.Role(r.PostFormValue("role"))
	if !idPattern.MatchString(id) {
		return &pageError{Status: http.StatusBadRequest, Message: "A username is 1 to 64 letters, digits, '-' or '.'."}
	}
	if len(name) > maxDeviceName {
		return &pageError{Status: http.StatusBadRequest, Message: fmt.Sprintf("The name is longer than %d bytes.", maxDeviceName)}
	}
	ok := false
	for _, known := range userRoles {
		ok = ok || role == known
	}
	if !ok {
		return &pageError{Status: http.StatusBadRequest, Message: "Choose a role."}
	}
	password := auth.NewSecret()[:20]
	err := h.cfg.Store.CreateUser(r.Context(), store.User{ID: id, Name: name, Role: role, Org: store.OrgOrDefault(sessionFrom(r.Context()).Org), // the admin's own organisation
		PasswordHash: auth.HashPassword(password), Created: h.cfg.Now().UTC()})
	if errors.Is(err, store.ErrConflict) {
		return &pageError{Status: http.StatusConflict, Message: "This username is taken."}
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	h.cfg.Logger.Info("user created from the dashboard", "role", role, "by", sessionFrom(r.Context()).User)
	return h.showUsers(w, r, &createdUser{ID: id, Name: name, Role: role, Password: password})
}
