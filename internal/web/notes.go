package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// Patient notes are append-only free text by the patient's clinicians,
// nurses and caregivers; the organisation's admins read them. Notes are
// PHI: only someone who may see the patient reads or writes them, and the
// patient page that shows them is audited.

const (
	maxNote   = 4000 // bytes
	notesShow = 100
)

// patientExtra is what the patient page shows beyond vitals and alarms.
type patientExtra struct {
	ReadNotes  bool
	WriteNotes bool
	Notes      []store.Note
	// GrantExpires is when the user's break-glass access to the patient
	// ends; zero when they see the patient otherwise.
	GrantExpires time.Time
}

// patientExtras loads notes and break-glass status for a patient the user
// may see (the caller has checked).
func (h *Handler) patientExtras(ctx context.Context, patient string) (patientExtra, error) {
	sess := sessionFrom(ctx)
	x := patientExtra{ReadNotes: sess.can(permReadNotes), WriteNotes: sess.can(permWriteNotes)}
	if x.ReadNotes {
		ns, err := h.cfg.Store.Notes(ctx, patient, notesShow)
		if err != nil {
			return x, fmt.Errorf("load notes: %w", err)
		}
		x.Notes = ns
	}
	if sess.can(permBreakGlass) {
		inTeam, err := h.cfg.Store.TeamPatients(ctx, sess.User)
		if err != nil {
			return x, fmt.Errorf("care team patients: %w", err)
		}
		if !contains(inTeam, patient) {
			gs, err := h.cfg.Store.ActiveBreakGlass(ctx, sess.User, h.cfg.Now())
			if err != nil {
				return x, fmt.Errorf("break-glass grants: %w", err)
			}
			for _, g := range gs {
				if g.Patient == patient && g.Expires.After(x.GrantExpires) {
					x.GrantExpires = g.Expires
				}
			}
		}
	}
	return x, nil
}

func contains(ss []string, s string) bool {
	for _, v := range ss {
		if v == s {
			return true
		}
	}
	return false
}

// addNote appends a note to a patient the user may see.
func (h *Handler) addNote(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := h.visiblePatient(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	text := strings.TrimSpace(strings.ReplaceAll(r.PostFormValue("text"), "\r\n", "\n"))
	if text == "" {
		return &pageError{Status: http.StatusBadRequest, Message: "Write the note first."}
	}
	if len(text) > maxNote {
		return &pageError{Status: http.StatusBadRequest, Message: fmt.Sprintf("A note is at most %d bytes.", maxNote)}
	}
	sess := sessionFrom(ctx)
	n := store.Note{ID: store.NewID(), Org: store.OrgOrDefault(p.Org), Patient: p.ID, Author: sess.User, Role: sess.Role,
		Text: text, Created: h.cfg.Now().UTC()}
	if err := h.cfg.Store.AddNote(ctx, n); err != nil {
		return fmt.Errorf("add note: %w", err)
	}
	return seeOther(w, r, "/patients/"+url.PathEscape(p.ID)+"#notes-h")
}
