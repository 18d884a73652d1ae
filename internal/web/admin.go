package web

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
	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/store"
)

// The administration pages act on the admin's own organisation only, with
// the rules of the management API (package api, orgs.go): care team
// members are clinicians or nurses of the organisation, consents go to
// its caregivers (access.GrantConsent, shared with the API), and patients
// and users of another organisation are "no such patient/user", exactly
// like ones that do not exist.

// teamID is the form of a care team id (as the API's).
var teamID = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

const (
	maxTeamName   = 200
	maxOrgName    = 200
	maxGrantsShow = 200
)

func adminOrg(ctx context.Context) string { return store.OrgOrDefault(sessionFrom(ctx).Org) }

// patientOfOrg answers nil if the patient exists in org.
func (h *Handler) patientOfOrg(ctx context.Context, org, id string) error {
	p, err := h.cfg.Store.Patient(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.OrgOrDefault(p.Org) != org) {
		return &pageError{Status: http.StatusNotFound, Message: "There is no such patient in your organisation."}
	}
	if err != nil {
		return fmt.Errorf("load patient: %w", err)
	}
	return nil
}

// userOfOrg loads a user of org.
func (h *Handler) userOfOrg(ctx context.Context, org, id string) (store.User, error) {
	u, err := h.cfg.Store.User(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.OrgOrDefault(u.Org) != org) {
		return store.User{}, &pageError{Status: http.StatusNotFound, Message: "There is no such user in your organisation."}
	}
	if err != nil {
		return store.User{}, fmt.Errorf("load user: %w", err)
	}
	return u, nil
}

// usersWith lists the organisation's users holding one of roles.
func (h *Handler) usersWith(ctx context.Context, org string, roles ...store.Role) ([]store.User, error) {
	us, err := h.cfg.Store.OrgUsers(ctx, org)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out := us[:0:0]
	for _, u := range us {
		if slices.Contains(roles, u.Role) {
			out = append(out, u)
		}
	}
	return out, nil
}

// seeOther answers a form with a redirect to the page showing its result
// (post/redirect/get: reloading does not post again).
func seeOther(w http.ResponseWriter, r *http.Request, to string) error {
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// Care teams.

type teamsData struct {
	Teams   []store.CareTeam
	Members []store.User // clinicians and nurses who may join a team
}

func (h *Handler) teams(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	org := adminOrg(ctx)
	ts, err := h.cfg.Store.CareTeams(ctx, org)
	if err != nil {
		return fmt.Errorf("list care teams: %w", err)
	}
	var d teamsData
	for _, t := range ts {
		if t, err = h.cfg.Store.CareTeam(ctx, t.ID); err != nil { // with members and patients
			return fmt.Errorf("load care team: %w", err)
		}
		audit.AddPatients(ctx, t.Patients...)
		d.Teams = append(d.Teams, t)
	}
	if d.Members, err = h.usersWith(ctx, org, store.RoleClinician, store.RoleNurse); err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "teams", page{Title: "Care teams", Nav: "admin", Session: sessionFrom(ctx), Data: d})
	return nil
}

func (h *Handler) createTeam(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := strings.TrimSpace(r.PostFormValue("name"))
	id := strings.TrimSpace(r.PostFormValue("id"))
	if name == "" || len(name) > maxTeamName {
		return &pageError{Status: http.StatusBadRequest, Message: fmt.Sprintf("A care team needs a name of at most %d bytes.", maxTeamName)}
	}
	if id == "" {
		id = store.NewID()
	}
	if !teamID.MatchString(id) {
		return &pageError{Status: http.StatusBadRequest, Message: "A care team id is 1 to 64 lower-case letters, digits, '.', '_' or '-'."}
	}
	err := h.cfg.Store.CreateCareTeam(ctx, store.CareTeam{ID: id, Org: adminOrg(ctx), Name: name, Created: h.cfg.Now().UTC()})
	if errors.Is(err, store.ErrConflict) {
		return &pageError{Status: http.StatusConflict, Message: "A care team with this id exists."}
	}
	if err != nil {
		return fmt.Errorf("create care team: %w", err)
	}
	return seeOther(w, r, "/admin/teams#team-"+id)
}

// changeTeam adds or removes (form field "remove") a member or a patient
// (path value kind) of a care team of the admin's organisation.
func (h *Handler) changeTeam(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	org := adminOrg(ctx)
	t, err := h.cfg.Store.CareTeam(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.Org != org) {
		return &pageError{Status: http.StatusNotFound, Message: "There is no such care team."}
	}
	if err != nil {
		return fmt.Errorf("load care team: %w", err)
	}
	in := r.PostFormValue("remove") == ""
	switch r.PathValue("kind") {
	case "members":
		id := strings.TrimSpace(r.PostFormValue("user"))
		if in {
			u, err := h.userOfOrg(ctx, org, id)
			if err != nil {
				return err
			}
			if !access.CareStaff(u.Role) {
				return &pageError{Status: http.StatusBadRequest, Message: "Care team members are clinicians or nurses."}
			}
		}
		err = h.cfg.Store.SetCareTeamMember(ctx, t.ID, id, in)
	case "patients":
		id := strings.TrimSpace(r.PostFormValue("patient"))
		if in {
			if err := h.patientOfOrg(ctx, org, id); err != nil {
				return err
			}
		}
		audit.AddPatients(ctx, id)
		err = h.cfg.Store.SetCareTeamPatient(ctx, t.ID, id, in)
	default:
		return &pageError{Status: http.StatusNotFound, Message: "There is no such page."}
	}
	if err != nil {
		return fmt.Errorf("change care team: %w", err)
	}
	return seeOther(w, r, "/admin/teams#team-"+t.ID)
}

// Consents.

type consentsData struct {
	Consents   []consentRow
	Caregivers []store.User
	Scopes     []string
}

type consentRow struct {
	store.Consent
	Active bool
}

func (h *Handler) consents(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	org := adminOrg(ctx)
	cs, err := h.cfg.Store.Consents(ctx, org, "")
	if err != nil {
		return fmt.Errorf("list consents: %w", err)
	}
	now := h.cfg.Now()
	d := consentsData{Scopes: []string{store.ConsentRead, store.ConsentReadAlarms}}
	for _, c := range cs {
		d.Consents = append(d.Consents, consentRow{c, c.ActiveAt(now)})
		audit.AddPatients(ctx, c.Patient)
	}
	if d.Caregivers, err = h.usersWith(ctx, org, store.RoleCaregiver); err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "consents", page{Title: "Consents", Nav: "admin", Session: sessionFrom(ctx), Now: now, Data: d})
	return nil
}

// grantConsent records a patient's consent for a caregiver, on the
// patient's behalf, from now until the optional end date (exclusive: the
// consent ends at the start of that day, UTC).
func (h *Handler) grantConsent(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	org := adminOrg(ctx)
	patient := strings.TrimSpace(r.PostFormValue("patient"))
	grantee := strings.TrimSpace(r.PostFormValue("grantee"))
	scope := r.PostFormValue("scope")
	if scope == "" { // the form always sends one; an empty one is not "read"
		return &pageError{Status: http.StatusBadRequest, Message: "Choose what the consent allows."}
	}
	now := h.cfg.Now().UTC()
	var end time.Time
	if v := r.PostFormValue("end"); v != "" {
		d, err := time.Parse(time.DateOnly, v)
		if err != nil || !d.After(now) {
			return &pageError{Status: http.StatusBadRequest, Message: "The end date must be a date after today."}
		}
		end = d
	}
	audit.AddPatients(ctx, patient)
	_, err := access.GrantConsent(ctx, h.cfg.Store, org, store.Consent{Patient: patient, Grantee: grantee, Scope: scope, End: end},
		store.NewID(), now)
	var bad *access.RequestError
	switch {
	case errors.As(err, &bad):
		return &pageError{Status: http.StatusBadRequest, Message: userText(bad.Detail)}
	case errors.Is(err, access.ErrNotVisible):
		return &pageError{Status: http.StatusNotFound, Message: "There is no such patient in your organisation."}
	case errors.Is(err, access.ErrNoSuchUser):
		return &pageError{Status: http.StatusNotFound, Message: "There is no such user in your organisation."}
	case err != nil:
		return err
	}
	return seeOther(w, r, "/admin/consents")
}

func (h *Handler) revokeConsent(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c, err := h.cfg.Store.Consent(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && c.Org != adminOrg(ctx)) {
		return &pageError{Status: http.StatusNotFound, Message: "There is no such consent."}
	}
	if err != nil {
		return fmt.Errorf("load consent: %w", err)
	}
	audit.AddPatients(ctx, c.Patient)
	if err := h.cfg.Store.RevokeConsent(ctx, c.ID, h.cfg.Now().UTC()); err != nil {
		return fmt.Errorf("revoke consent: %w", err)
	}
	return seeOther(w, r, "/admin/consents")
}

// Organisation settings.

type orgData struct {
	Org   store.Organisation
	Users []store.User
	Saved bool
}

func (h *Handler) orgSettings(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	o, err := h.cfg.Store.Org(ctx, adminOrg(ctx))
	if err != nil {
		return orNotFound(err, "organisation")
	}
	us, err := h.cfg.Store.OrgUsers(ctx, o.ID)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	d := orgData{Org: o, Users: us, Saved: r.URL.Query().Get("saved") != ""}
	h.render(w, r, http.StatusOK, "org", page{Title: "Organisation", Nav: "admin", Session: sessionFrom(ctx), Data: d})
	return nil
}

// saveOrg sets the organisation's name and privacy officer (a user of the
// organisation, or nobody).
func (h *Handler) saveOrg(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	org := adminOrg(ctx)
	name := strings.TrimSpace(r.PostFormValue("name"))
	officer := strings.TrimSpace(r.PostFormValue("privacy_officer"))
	if name == "" || len(name) > maxOrgName {
		return &pageError{Status: http.StatusBadRequest, Message: fmt.Sprintf("The organisation needs a name of at most %d bytes.", maxOrgName)}
	}
	if officer != "" {
		if _, err := h.userOfOrg(ctx, org, officer); err != nil {
			return err
		}
	}
	if err := h.cfg.Store.UpdateOrg(ctx, store.Organisation{ID: org, Name: name, PrivacyOfficer: officer}); err != nil {
		return orNotFound(err, "organisation")
	}
	return seeOther(w, r, "/admin/org?saved=1")
}

// Break-glass grants, for the privacy officer.

type grantsData struct {
	Grants []grantRow
}

type grantRow struct {
	store.BreakGlass
	Active bool
}

func (h *Handler) grants(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	gs, err := h.cfg.Store.BreakGlassGrants(ctx, adminOrg(ctx), maxGrantsShow)
	if err != nil {
		return fmt.Errorf("list break-glass grants: %w", err)
	}
	now := h.cfg.Now()
	var d grantsData
	for _, g := range gs {
		d.Grants = append(d.Grants, grantRow{g, !now.Before(g.Start) && now.Before(g.Expires)})
		audit.AddPatients(ctx, g.Patient)
	}
	h.render(w, r, http.StatusOK, "grants", page{Title: "Break-glass access", Nav: "admin", Session: sessionFrom(ctx), Now: now, Data: d})
	return nil
}
