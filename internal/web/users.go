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
	Org     string
	Users   []store.User
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
	Patient            string
}

// userRoles are the roles an admin may give from the dashboard: all of them.
var userRoles = store.Roles

// users is the administration page: the users of the admin's own
// organisation, how many hold each role, and a form to add one.
func (h *Handler) users(w http.ResponseWriter, r *http.Request) error {
	return h.showUsers(w, r, nil)
}

func (h *Handler) showUsers(w http.ResponseWriter, r *http.Request, created *createdUser) error {
	org := store.OrgOrDefault(sessionFrom(r.Context()).Org)
	us, err := h.cfg.Store.OrgUsers(r.Context(), org)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	d := usersData{Org: org, Users: us, Created: created, Roles: userRoles}
	n := map[store.Role]int{}
	for _, u := range us {
		n[u.Role]++
	}
	for _, role := range userRoles {
		d.Counts = append(d.Counts, roleCount{role, n[role]})
	}
	h.render(w, r, http.StatusOK, "users", page{Title: "Users", Nav: "admin", Session: sessionFrom(r.Context()), Data: d})
	return nil
}

// createUser adds a user of the admin's organisation with a generated
// password, shown once. A patient-role user is linked to a patient of the
// organisation, which is then the only patient they see.
func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := strings.TrimSpace(r.PostFormValue("username"))
	name := strings.TrimSpace(r.PostFormValue("name"))
	role := store.Role(r.PostFormValue("role"))
	patient := strings.TrimSpace(r.PostFormValue("patient"))
	org := store.OrgOrDefault(sessionFrom(ctx).Org) // the admin's own organisation
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
	if (role == store.RolePatient) != (patient != "") {
		return &pageError{Status: http.StatusBadRequest, Message: "Give the patient id for the patient role, and only for it."}
	}
	if patient != "" {
		if err := h.patientOfOrg(ctx, org, patient); err != nil {
			return err
		}
	}
	if name == "" {
		name = id
	}
	password := auth.NewSecret()[:20]
	err := h.cfg.Store.CreateUser(ctx, store.User{ID: id, Name: name, Role: role, Org: org, Patient: patient,
		PasswordHash: auth.HashPassword(password), Created: h.cfg.Now().UTC()})
	if errors.Is(err, store.ErrConflict) {
		return &pageError{Status: http.StatusConflict, Message: "This username is taken."}
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	h.cfg.Logger.Info("user created from the dashboard", "role", role, "by", sessionFrom(ctx).User)
	return h.showUsers(w, r, &createdUser{ID: id, Name: name, Role: role, Patient: patient, Password: password})
}
