package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/store"
)

// contactRoutes lets an admin say where a user is told about notices
// addressed to them by name (the privacy officer about break-glass).
func (h *Handler) contactRoutes() {
	h.mux.Handle("PUT /api/v1/users/{id}/contact", h.admin(h.putContact))
	h.mux.Handle("GET /api/v1/users/{id}/contact", h.admin(h.getContact))
}

// contactUser loads the user of the path: of the caller's organisation,
// or any for the installation's operator.
func (h *Handler) contactUser(r *http.Request) (store.User, error) {
	id := r.PathValue("id")
	if requestOrg(r) != store.DefaultOrg {
		return h.userOfOrg(r, requestOrg(r), id)
	}
	u, err := h.cfg.Store.User(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, &Error{Status: http.StatusNotFound, Detail: "no such user"}
	}
	if err != nil {
		return store.User{}, fmt.Errorf("load user: %w", err)
	}
	return u, nil
}

func (h *Handler) putContact(w http.ResponseWriter, r *http.Request) error {
	u, err := h.contactUser(r)
	if err != nil {
		return err
	}
	var req struct {
		Contact string `json:"contact"`
	}
	if err := decodeBody(w, r, &req, 4<<10, false); err != nil {
		return err
	}
	if err := h.checkContact(r, req.Contact); err != nil {
		return err
	}
	if err := h.cfg.Store.SetUserContact(r.Context(), u.ID, req.Contact); err != nil {
		return fmt.Errorf("set user contact: %w", err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"user": u.ID, "contact": req.Contact})
}

func (h *Handler) getContact(w http.ResponseWriter, r *http.Request) error {
	u, err := h.contactUser(r)
	if err != nil {
		return err
	}
	c, err := h.cfg.Store.UserContact(r.Context(), u.ID)
	if err != nil {
		return fmt.Errorf("load user contact: %w", err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"user": u.ID, "contact": c})
}

// checkContact accepts "" (none), email:ADDRESS and, from the
// installation's operator who owns webhooks, webhook:ID of a registered one.
func (h *Handler) checkContact(r *http.Request, c string) error {
	if c == "" {
		return nil
	}
	kind, addr, _ := strings.Cut(c, ":")
	switch kind {
	case alarm.RecipientEmail:
		if a, err := mail.ParseAddress(addr); err == nil && a.Address == addr && !strings.ContainsAny(addr, "\r\n") {
			return nil
		}
		return &Error{Status: http.StatusBadRequest, Detail: "contact: not a plain e-mail address"}
	case alarm.RecipientWebhook:
		if requestOrg(r) != store.DefaultOrg {
			return &Error{Status: http.StatusForbidden, Detail: "webhooks belong to the installation's operator; use an e-mail address"}
		}
		if h.cfg.AlarmStore == nil {
			return &Error{Status: http.StatusBadRequest, Detail: "webhooks are not available on this server"}
		}
		if _, err := h.cfg.AlarmStore.Webhook(r.Context(), addr); errors.Is(err, alarm.ErrNotFound) {
			return &Error{Status: http.StatusBadRequest, Detail: fmt.Sprintf("no webhook %q is registered", addr)}
		} else if err != nil {
			return fmt.Errorf("load webhook: %w", err)
		}
		return nil
	}
	return &Error{Status: http.StatusBadRequest, Detail: `contact must be "email:ADDRESS" or "webhook:ID"`}
}

// breakGlassAlertJSON tells the grantee who was alerted about their grant.
type breakGlassAlertJSON struct {
	Alarm string `json:"alarm,omitempty"` // the notice's alarm id
	// To is who it was addressed to: "privacy_officer", or "admins" when
	// the organisation has no privacy officer who can be reached.
	To         string `json:"to"`
	Recipients int    `json:"recipients"` // addresses it goes to
	Note       string `json:"note,omitempty"`
}

// alertBreakGlass raises the notice of a new grant for the organisation's
// privacy officer (or its admins) through the alarm outbox, so it is
// durable, retried, repeated until acknowledged and listed among the
// organisation's alarms. It never stops the grant: access in an
// emergency comes first; what could not be done is said in the answer.
func (h *Handler) alertBreakGlass(ctx context.Context, g store.BreakGlass) breakGlassAlertJSON {
	out := breakGlassAlertJSON{To: "privacy_officer"}
	if h.cfg.Alarms == nil {
		out.Note = "alerts are off on this server: the grant is listed at GET /api/v1/break-glass only"
		h.cfg.Logger.Error("break-glass alert not raised: no alarm service", "grant", g.ID, "org", g.Org)
		return out
	}
	recips, to, note, err := h.breakGlassRecipients(ctx, g.Org)
	if err != nil {
		h.cfg.Logger.Error("break-glass alert: look up recipients", "grant", g.ID, "org", g.Org, "err", err)
		note = "recipients could not be looked up; the organisation's supervisors are told"
	}
	out.To, out.Recipients, out.Note = to, len(recips), note
	detail := map[string]any{"grant": g.ID, "org": g.Org, "user": g.User, "patient": g.Patient, "reason": g.Reason,
		"expires": g.Expires.Format(time.RFC3339)}
	if h.cfg.PublicURL != "" {
		detail["review"] = strings.TrimSuffix(h.cfg.PublicURL, "/") + "/api/v1/break-glass"
	}
	a, err := h.cfg.Alarms.Notice(ctx, alarm.Notice{Rule: alarm.RuleBreakGlass, Subject: g.ID, Patient: g.Patient, Name: "Break-glass access",
		Message:    fmt.Sprintf("Break-glass access by %s to patient %s until %s. Reason: %s", g.User, g.Patient, g.Expires.Format(time.RFC3339), g.Reason),
		Recipients: recips, Detail: detail})
	if err != nil {
		// No reason or patient in the log: the grant id leads to them.
		h.cfg.Logger.Error("break-glass alert could not be raised", "grant", g.ID, "org", g.Org, "err", err)
		out.Recipients, out.Note = 0, "the alert could not be raised; the grant is listed at GET /api/v1/break-glass"
		return out
	}
	out.Alarm = a.ID
	return out
}

// breakGlassRecipients are the privacy officer's contact or, without a
// reachable officer, the contacts of the organisation's admins. None at
// all leaves the notice to the escalation supervisors.
func (h *Handler) breakGlassRecipients(ctx context.Context, org string) (recips []string, to, note string, err error) {
	o, err := h.cfg.Store.Org(ctx, org)
	if err != nil {
		return nil, "admins", "", fmt.Errorf("load organisation: %w", err)
	}
	if o.PrivacyOfficer != "" {
		c, err := h.cfg.Store.UserContact(ctx, o.PrivacyOfficer)
		if err != nil {
			return nil, "privacy_officer", "", fmt.Errorf("privacy officer contact: %w", err)
		}
		if c != "" {
			return []string{c}, "privacy_officer", "", nil
		}
		note = "the privacy officer has no contact address (PUT /api/v1/users/{id}/contact): the organisation's admins are alerted"
	} else {
		note = "the organisation has no privacy officer: its admins are alerted"
	}
	users, err := h.cfg.Store.OrgUsers(ctx, org)
	if err != nil {
		return nil, "admins", note, fmt.Errorf("list admins: %w", err)
	}
	seen := map[string]bool{}
	for _, u := range users {
		if u.Role != store.RoleAdmin {
			continue
		}
		c, err := h.cfg.Store.UserContact(ctx, u.ID)
		if err != nil {
			return nil, "admins", note, fmt.Errorf("admin contact: %w", err)
		}
		if c != "" && !seen[c] {
			seen[c] = true
			recips = append(recips, c)
		}
	}
	if len(recips) == 0 {
		note += "; no admin has a contact address either, so the escalation supervisors are told and the alert is in the alarm list"
	}
	return recips, "admins", note, nil
}
