package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// Break-glass: a clinician or nurse who must treat a patient outside their
// care teams opens the patient for a while, giving a reason. The grant is
// recorded by access.GrantBreakGlass, exactly as the API's, listed for the
// organisation's privacy officer (/admin/break-glass) and audited.

type breakGlassData struct {
	Patient        string
	Reason         string
	Minutes        int
	DefaultMinutes int
	MaxMinutes     int
	Problem        string
	NotVisible     bool // reached from a patient page the user may not see
}

func newBreakGlassData(patient string) breakGlassData {
	return breakGlassData{Patient: patient, DefaultMinutes: int(access.BreakGlassDefault.Minutes()),
		MaxMinutes: int(access.BreakGlassMax.Minutes())}
}

// breakGlassPage shows the emergency access form (?patient= fills it in).
func (h *Handler) breakGlassPage(w http.ResponseWriter, r *http.Request) error {
	d := newBreakGlassData(strings.TrimSpace(r.URL.Query().Get("patient")))
	return h.showBreakGlass(w, r, http.StatusOK, d)
}

func (h *Handler) showBreakGlass(w http.ResponseWriter, r *http.Request, status int, d breakGlassData) error {
	if d.Minutes == 0 {
		d.Minutes = d.DefaultMinutes
	}
	h.render(w, r, status, "breakglass", page{Title: "Emergency access", Nav: "breakglass", Session: sessionFrom(r.Context()), Data: d})
	return nil
}

// breakGlass records the grant and sends the user to the patient, whose
// page then shows until when access lasts.
func (h *Handler) breakGlass(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	d := newBreakGlassData(strings.TrimSpace(r.PostFormValue("patient")))
	d.Reason = r.PostFormValue("reason")
	if v := strings.TrimSpace(r.PostFormValue("minutes")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			d.Problem = fmt.Sprintf("Give the minutes as a whole number from 1 to %d.", d.MaxMinutes)
			return h.showBreakGlass(w, r, http.StatusBadRequest, d)
		}
		d.Minutes = n
	}
	audit.AddPatients(ctx, d.Patient)
	sess := sessionFrom(ctx)
	p := auth.Principal{Subject: sess.User, Role: string(sess.Role), Org: store.OrgOrDefault(sess.Org)}
	g, err := access.GrantBreakGlass(ctx, h.cfg.Store, p, access.BreakGlassRequest{Patient: d.Patient, Reason: d.Reason, Minutes: d.Minutes},
		store.NewID(), h.cfg.Now())
	var bad *access.RequestError
	switch {
	case errors.As(err, &bad):
		d.Problem = userText(bad.Detail)
		return h.showBreakGlass(w, r, http.StatusBadRequest, d)
	case errors.Is(err, access.ErrNotVisible):
		d.Problem = "There is no such patient in your organisation."
		return h.showBreakGlass(w, r, http.StatusNotFound, d)
	case errors.Is(err, access.ErrBreakGlassRole):
		return &pageError{Status: http.StatusForbidden, Message: "Emergency access is for clinicians and nurses."}
	case err != nil:
		return err
	}
	// The grant id leads the privacy officer to the record; no PHI here.
	h.cfg.Logger.Warn("break-glass access granted from the dashboard", "grant", g.ID, "org", g.Org, "user", g.User, "expires", g.Expires)
	if h.cfg.OnBreakGlass != nil {
		h.cfg.OnBreakGlass(context.WithoutCancel(ctx), g) // never stops the grant: access in an emergency comes first
	}
	return seeOther(w, r, "/patients/"+url.PathEscape(g.Patient))
}

// userText turns the API-style detail of a RequestError into a sentence.
func userText(s string) string {
	s = strings.ReplaceAll(s, `a "reason"`, "a reason")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// patientOrBreakGlass is the patient page; a clinician or nurse who may
// not see the patient is offered emergency access instead of a bare "no
// such patient". The answer is the same 404 whether or not the patient
// exists, so the page reveals nothing.
func (h *Handler) patientOrBreakGlass(w http.ResponseWriter, r *http.Request) error {
	err := h.patient(w, r)
	if err == nil || !sessionFrom(r.Context()).can(permBreakGlass) {
		return err
	}
	var pe *pageError
	if errors.Is(err, store.ErrNotFound) || (errors.As(err, &pe) && pe.Status == http.StatusNotFound) {
		d := newBreakGlassData(r.PathValue("id"))
		d.NotVisible = true
		return h.showBreakGlass(w, r, http.StatusNotFound, d)
	}
	return err
}
