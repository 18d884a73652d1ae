package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// accessRoutes registers the management API of organisations, users, care
// teams, consents and break-glass access. An admin manages their own
// organisation; only an admin of the default organisation (the
// installation's operator) creates organisations.
func (h *Handler) accessRoutes() {
	m := h.mux
	m.Handle("POST /api/v1/orgs", h.admin(h.postOrg))
	m.Handle("GET /api/v1/orgs", h.admin(h.listOrgs))
	m.Handle("POST /api/v1/users", h.admin(h.postUser))
	m.Handle("GET /api/v1/users", h.admin(h.listUsers))
	m.Handle("POST /api/v1/care-teams", h.admin(h.postCareTeam))
	m.Handle("GET /api/v1/care-teams", h.admin(h.listCareTeams))
	m.Handle("GET /api/v1/care-teams/{id}", h.admin(h.getCareTeam))
	for _, kind := range []string{"members", "patients"} {
		m.Handle("PUT /api/v1/care-teams/{id}/"+kind+"/{member}", h.admin(h.setCareTeam(kind, true)))
		m.Handle("DELETE /api/v1/care-teams/{id}/"+kind+"/{member}", h.admin(h.setCareTeam(kind, false)))
	}
	m.Handle("POST /api/v1/consents", h.withRole(h.postConsent, store.RoleAdmin, store.RolePatient))
	m.Handle("GET /api/v1/consents", h.withRole(h.listConsents, store.RoleAdmin, store.RolePatient))
	m.Handle("POST /api/v1/consents/{id}/revoke", h.withRole(h.revokeConsent, store.RoleAdmin, store.RolePatient))
	m.Handle("POST /api/v1/break-glass", h.withRole(h.postBreakGlass, store.RoleClinician, store.RoleNurse))
	m.Handle("GET /api/v1/break-glass", h.admin(h.listBreakGlass))
	h.contactRoutes() // where the privacy officer is alerted (breakglass_alert.go)
}

var nameID = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func callerOrg(r *http.Request) (auth.Principal, string) {
	p, _ := auth.PrincipalFrom(r.Context())
	return p, store.OrgOrDefault(p.Org)
}

type orgJSON struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	PrivacyOfficer string    `json:"privacy_officer,omitempty"`
	Created        time.Time `json:"created,omitzero"`
}

func (h *Handler) postOrg(w http.ResponseWriter, r *http.Request) error {
	if _, org := callerOrg(r); org != store.DefaultOrg {
		return &Error{Status: http.StatusForbidden, Detail: "only an admin of the default organisation creates organisations"}
	}
	var req orgJSON
	if err := decodeBody(w, r, &req, 64<<10, false); err != nil {
		return err
	}
	if !nameID.MatchString(req.ID) || strings.TrimSpace(req.Name) == "" {
		return &Error{Status: http.StatusBadRequest, Detail: `an organisation needs an "id" (lower-case letters, digits, . _ -) and a "name"`}
	}
	o := store.Organisation{ID: req.ID, Name: req.Name, PrivacyOfficer: req.PrivacyOfficer, Created: h.cfg.Now().UTC()}
	if err := h.cfg.Store.CreateOrg(r.Context(), o); errors.Is(err, store.ErrConflict) {
		return &Error{Status: http.StatusConflict, Detail: fmt.Sprintf("organisation %q already exists", req.ID)}
	} else if err != nil {
		return fmt.Errorf("create organisation: %w", err)
	}
	return writeJSON(w, http.StatusCreated, orgJSON(o))
}

func (h *Handler) listOrgs(w http.ResponseWriter, r *http.Request) error {
	_, org := callerOrg(r)
	orgs, err := h.cfg.Store.Orgs(r.Context())
	if err != nil {
		return fmt.Errorf("list organisations: %w", err)
	}
	out := []orgJSON{}
	for _, o := range orgs {
		if org == store.DefaultOrg || o.ID == org {
			out = append(out, orgJSON(o))
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"orgs": out})
}

type userJSON struct {
	ID       string     `json:"id"`
	Name     string     `json:"name"`
	Role     store.Role `json:"role"`
	Org      string     `json:"org,omitempty"`
	Patient  string     `json:"patient,omitempty"`
	Password string     `json:"password,omitempty"` // only in the answer to a create, once
}

// targetOrg is the organisation an admin's request acts on: their own, or
// for an admin of the default organisation any existing one named in org.
func (h *Handler) targetOrg(r *http.Request, requested string) (string, error) {
	_, org := callerOrg(r)
	if requested == "" || requested == org {
		return org, nil
	}
	if org != store.DefaultOrg {
		return "", &Error{Status: http.StatusForbidden, Detail: "an admin manages only their own organisation"}
	}
	if _, err := h.cfg.Store.Org(r.Context(), requested); errors.Is(err, store.ErrNotFound) {
		return "", &Error{Status: http.StatusBadRequest, Detail: fmt.Sprintf("no organisation %q", requested)}
	} else if err != nil {
		return "", fmt.Errorf("load organisation: %w", err)
	}
	return requested, nil
}

// patientOfOrg answers nil if the patient exists in org (404 otherwise,
// whatever other organisation it may belong to).
func (h *Handler) patientOfOrg(r *http.Request, org, patient string) error {
	p, err := h.cfg.Store.Patient(r.Context(), patient)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.OrgOrDefault(p.Org) != org) {
		return errNoSuchPatient
	}
	if err != nil {
		return fmt.Errorf("load patient: %w", err)
	}
	return nil
}

// userOfOrg returns the user if it belongs to org.
func (h *Handler) userOfOrg(r *http.Request, org, id string) (store.User, error) {
	u, err := h.cfg.Store.User(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.OrgOrDefault(u.Org) != org) {
		return store.User{}, &Error{Status: http.StatusNotFound, Detail: "no such user"}
	}
	if err != nil {
		return store.User{}, fmt.Errorf("load user: %w", err)
	}
	return u, nil
}

func (h *Handler) postUser(w http.ResponseWriter, r *http.Request) error {
	var req userJSON
	if err := decodeBody(w, r, &req, 64<<10, false); err != nil {
		return err
	}
	if !nameID.MatchString(req.ID) || !slices.Contains(store.Roles, req.Role) {
		return &Error{Status: http.StatusBadRequest, Detail: fmt.Sprintf(`a user needs an "id" (lower-case letters, digits, . _ -) and a "role" (%s)`, roleList())}
	}
	if req.Password != "" {
		return &Error{Status: http.StatusBadRequest, Detail: "passwords are generated by Tend and shown once; leave password out"}
	}
	org, err := h.targetOrg(r, req.Org)
	if err != nil {
		return err
	}
	if (req.Role == store.RolePatient) != (req.Patient != "") {
		return &Error{Status: http.StatusBadRequest, Detail: `"patient" is required for the patient role and only for it`}
	}
	if req.Patient != "" {
		if err := h.patientOfOrg(r, org, req.Patient); err != nil {
			return err
		}
	}
	if req.Name == "" {
		req.Name = req.ID
	}
	password := auth.NewSecret()[:20]
	u := store.User{ID: req.ID, Name: req.Name, Role: req.Role, Org: org, Patient: req.Patient, PasswordHash: auth.HashPassword(password), Created: h.cfg.Now().UTC()}
	if err := h.cfg.Store.CreateUser(r.Context(), u); errors.Is(err, store.ErrConflict) {
		return &Error{Status: http.StatusConflict, Detail: fmt.Sprintf("user %q already exists", req.ID)}
	} else if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, userJSON{ID: u.ID, Name: u.Name, Role: u.Role, Org: org, Patient: u.Patient, Password: password})
}

func roleList() string {
	var s []string
	for _, r := range store.Roles {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	org, err := h.targetOrg(r, r.URL.Query().Get("org"))
	if err != nil {
		return err
	}
	us, err := h.cfg.Store.OrgUsers(r.Context(), org)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	out := []userJSON{}
	for _, u := range us {
		out = append(out, userJSON{ID: u.ID, Name: u.Name, Role: u.Role, Org: u.Org, Patient: u.Patient})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

type careTeamJSON struct {
	ID       string   `json:"id"`
	Org      string   `json:"org"`
	Name     string   `json:"name"`
	Members  []string `json:"members"`
	Patients []string `json:"patients"`
}

func teamJSON(t store.CareTeam) careTeamJSON {
	j := careTeamJSON{ID: t.ID, Org: t.Org, Name: t.Name, Members: t.Members, Patients: t.Patients}
	if j.Members == nil {
		j.Members = []string{}
	}
	if j.Patients == nil {
		j.Patients = []string{}
	}
	return j
}

func (h *Handler) postCareTeam(w http.ResponseWriter, r *http.Request) error {
	var req careTeamJSON
	if err := decodeBody(w, r, &req, 64<<10, false); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" || (req.ID != "" && !nameID.MatchString(req.ID)) {
		return &Error{Status: http.StatusBadRequest, Detail: `a care team needs a "name" (and an optional "id": lower-case letters, digits, . _ -)`}
	}
	_, org := callerOrg(r)
	if req.ID == "" {
		req.ID = store.NewID()
	}
	t := store.CareTeam{ID: req.ID, Org: org, Name: req.Name, Created: h.cfg.Now().UTC()}
	if err := h.cfg.Store.CreateCareTeam(r.Context(), t); errors.Is(err, store.ErrConflict) {
		return &Error{Status: http.StatusConflict, Detail: fmt.Sprintf("care team %q already exists", req.ID)}
	} else if err != nil {
		return fmt.Errorf("create care team: %w", err)
	}
	return writeJSON(w, http.StatusCreated, teamJSON(t))
}

func (h *Handler) listCareTeams(w http.ResponseWriter, r *http.Request) error {
	_, org := callerOrg(r)
	ts, err := h.cfg.Store.CareTeams(r.Context(), org)
	if err != nil {
		return fmt.Errorf("list care teams: %w", err)
	}
	out := []careTeamJSON{}
	for _, t := range ts {
		out = append(out, teamJSON(t))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"care_teams": out})
}

// teamOfOrg loads a care team of the caller's organisation.
func (h *Handler) teamOfOrg(r *http.Request) (store.CareTeam, error) {
	_, org := callerOrg(r)
	t, err := h.cfg.Store.CareTeam(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.Org != org) {
		return store.CareTeam{}, &Error{Status: http.StatusNotFound, Detail: "no such care team"}
	}
	if err != nil {
		return store.CareTeam{}, fmt.Errorf("load care team: %w", err)
	}
	return t, nil
}

func (h *Handler) getCareTeam(w http.ResponseWriter, r *http.Request) error {
	t, err := h.teamOfOrg(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, teamJSON(t))
}

// setCareTeam adds (in) or removes a member (a clinician or nurse of the
// organisation) or a patient (of the organisation).
func (h *Handler) setCareTeam(kind string, in bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		t, err := h.teamOfOrg(r)
		if err != nil {
			return err
		}
		id := r.PathValue("member")
		if kind == "members" {
			if in {
				u, err := h.userOfOrg(r, t.Org, id)
				if err != nil {
					return err
				}
				if !access.CareStaff(u.Role) {
					return &Error{Status: http.StatusBadRequest, Detail: "care team members are clinicians or nurses"}
				}
			}
			err = h.cfg.Store.SetCareTeamMember(r.Context(), t.ID, id, in)
		} else {
			if in {
				if err := h.patientOfOrg(r, t.Org, id); err != nil {
					return err
				}
			}
			err = h.cfg.Store.SetCareTeamPatient(r.Context(), t.ID, id, in)
		}
		if err != nil {
			return fmt.Errorf("change care team: %w", err)
		}
		if t, err = h.cfg.Store.CareTeam(r.Context(), t.ID); err != nil {
			return fmt.Errorf("load care team: %w", err)
		}
		return writeJSON(w, http.StatusOK, teamJSON(t))
	}
}

type consentJSON struct {
	ID      string    `json:"id"`
	Patient string    `json:"patient"`
	Grantee string    `json:"grantee"`
	Scope   string    `json:"scope"`
	Start   time.Time `json:"start,omitzero"`
	End     time.Time `json:"end,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
}

func consentOut(c store.Consent) consentJSON {
	return consentJSON{ID: c.ID, Patient: c.Patient, Grantee: c.Grantee, Scope: c.Scope, Start: c.Start, End: c.End, Revoked: c.Revoked}
}

// postConsent records a patient's grant to a caregiver. A patient-role
// user grants for themself; an admin records a grant on a patient's behalf.
func (h *Handler) postConsent(w http.ResponseWriter, r *http.Request) error {
	var req consentJSON
	if err := decodeBody(w, r, &req, 64<<10, false); err != nil {
		return err
	}
	p, org := callerOrg(r)
	if store.Role(p.Role) == store.RolePatient {
		if req.Patient == "" {
			req.Patient = p.Patient
		}
		if req.Patient != p.Patient || p.Patient == "" {
			return &Error{Status: http.StatusForbidden, Detail: "a patient grants consent only for themself"}
		}
	}
	if req.ID != "" || !req.Revoked.IsZero() {
		return &Error{Status: http.StatusBadRequest, Detail: "id and revoked are set by Tend"}
	}
	// The rules live in package access: the dashboard records consents through them too.
	c, err := access.GrantConsent(r.Context(), h.cfg.Store, org, store.Consent{Patient: req.Patient, Grantee: req.Grantee, Scope: req.Scope,
		Start: req.Start, End: req.End}, store.NewID(), h.cfg.Now())
	var bad *access.RequestError
	switch {
	case errors.As(err, &bad):
		return &Error{Status: http.StatusBadRequest, Detail: bad.Detail}
	case errors.Is(err, access.ErrNotVisible):
		return errNoSuchPatient
	case errors.Is(err, access.ErrNoSuchUser):
		return &Error{Status: http.StatusNotFound, Detail: "no such user"}
	case err != nil:
		return err
	}
	return writeJSON(w, http.StatusCreated, consentOut(c))
}

func (h *Handler) listConsents(w http.ResponseWriter, r *http.Request) error {
	p, org := callerOrg(r)
	patient := r.URL.Query().Get("patient")
	if store.Role(p.Role) == store.RolePatient {
		if p.Patient == "" || (patient != "" && patient != p.Patient) {
			return errNoSuchPatient
		}
		patient = p.Patient
	}
	cs, err := h.cfg.Store.Consents(r.Context(), org, patient)
	if err != nil {
		return fmt.Errorf("list consents: %w", err)
	}
	out := []consentJSON{}
	for _, c := range cs {
		out = append(out, consentOut(c))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"consents": out})
}

func (h *Handler) revokeConsent(w http.ResponseWriter, r *http.Request) error {
	p, org := callerOrg(r)
	c, err := h.cfg.Store.Consent(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (c.Org != org || (store.Role(p.Role) == store.RolePatient && c.Patient != p.Patient))) {
		return &Error{Status: http.StatusNotFound, Detail: "no such consent"}
	}
	if err != nil {
		return fmt.Errorf("load consent: %w", err)
	}
	if err := h.cfg.Store.RevokeConsent(r.Context(), c.ID, h.cfg.Now().UTC()); err != nil {
		return fmt.Errorf("revoke consent: %w", err)
	}
	if c, err = h.cfg.Store.Consent(r.Context(), c.ID); err != nil {
		return fmt.Errorf("load consent: %w", err)
	}
	return writeJSON(w, http.StatusOK, consentOut(c))
}

type breakGlassJSON struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Patient string    `json:"patient"`
	Reason  string    `json:"reason"`
	Start   time.Time `json:"start"`
	Expires time.Time `json:"expires"`
	// Alert says who was told of a new grant (only in the answer to it).
	Alert *breakGlassAlertJSON `json:"alert,omitempty"`
}

func bgOut(g store.BreakGlass) breakGlassJSON {
	return breakGlassJSON{ID: g.ID, User: g.User, Patient: g.Patient, Reason: g.Reason, Start: g.Start, Expires: g.Expires}
}

// postBreakGlass opens emergency access to one patient of the caller's
// organisation: the reason is required and kept, the grant expires, it
// is listed at GET /api/v1/break-glass, and the organisation's privacy
// officer (else its admins) is alerted through the alarm outbox.
func (h *Handler) postBreakGlass(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Patient string `json:"patient"`
		Reason  string `json:"reason"`
		Minutes int    `json:"minutes"`
	}
	if err := decodeBody(w, r, &req, 64<<10, false); err != nil {
		return err
	}
	// The rules live in package access: the dashboard grants through them too.
	p, org := callerOrg(r)
	g, err := access.GrantBreakGlass(r.Context(), h.cfg.Store, p, access.BreakGlassRequest{Patient: req.Patient, Reason: req.Reason, Minutes: req.Minutes}, store.NewID(), h.cfg.Now())
	var bad *access.RequestError
	switch {
	case errors.As(err, &bad):
		return &Error{Status: http.StatusBadRequest, Detail: bad.Detail}
	case errors.Is(err, access.ErrNotVisible):
		return errNoSuchPatient
	case errors.Is(err, access.ErrBreakGlassRole):
		return &Error{Status: http.StatusForbidden, Detail: err.Error()}
	case err != nil:
		return err
	}
	// The grant id leads the privacy officer to the record; no PHI here.
	h.cfg.Logger.Warn("break-glass access granted", "grant", g.ID, "org", org, "user", p.Subject, "expires", g.Expires)
	out := bgOut(g)
	alert := h.alertBreakGlass(context.WithoutCancel(r.Context()), g)
	out.Alert = &alert
	return writeJSON(w, http.StatusCreated, out)
}

func (h *Handler) listBreakGlass(w http.ResponseWriter, r *http.Request) error {
	_, org := callerOrg(r)
	limit, err := intParam(r, "limit", 100, 1, maxAlarmLimit)
	if err != nil {
		return err
	}
	gs, err := h.cfg.Store.BreakGlassGrants(r.Context(), org, limit)
	if err != nil {
		return fmt.Errorf("list break-glass grants: %w", err)
	}
	out := []breakGlassJSON{}
	for _, g := range gs {
		out = append(out, bgOut(g))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"grants": out})
}

// newID returns a random id for records the server names.

// requestOrg is the organisation the request's caller acts in.
func requestOrg(r *http.Request) string {
	_, org := callerOrg(r)
	return org
}
