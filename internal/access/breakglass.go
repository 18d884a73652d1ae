package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// Break-glass grants last BreakGlassDefault unless asked otherwise, and
// never longer than BreakGlassMax.
const (
	BreakGlassDefault = 60 * time.Minute
	BreakGlassMax     = 4 * time.Hour
	MaxReason         = 1000 // bytes
)

// BreakGlassRequest is what a clinician or nurse asks for: one patient,
// a reason (required, kept for the privacy officer) and a duration in
// minutes (0 means BreakGlassDefault).
type BreakGlassRequest struct {
	Patient string
	Reason  string
	Minutes int
}

// RequestError is a request the caller must correct; Detail is safe to show.
type RequestError struct{ Detail string }

func (e *RequestError) Error() string { return e.Detail }

// ErrBreakGlassRole is returned when the caller is not a clinician or nurse.
var ErrBreakGlassRole = errors.New("break-glass access is for clinicians and nurses")

// BreakGlassStore is what GrantBreakGlass reads and writes.
type BreakGlassStore interface {
	Patient(ctx context.Context, id string) (store.Patient, error)
	CreateBreakGlass(ctx context.Context, g store.BreakGlass) error
}

// GrantBreakGlass records emergency access for p (a clinician or nurse) to
// one patient of p's organisation, starting at now. The API and the
// dashboard both grant through it, so the rules are the same whichever
// way the request came: the reason is required and kept, the grant
// expires, and a patient of another organisation (or none) is
// ErrNotVisible. id names the new grant.
func GrantBreakGlass(ctx context.Context, st BreakGlassStore, p auth.Principal, req BreakGlassRequest, id string, now time.Time) (store.BreakGlass, error) {
	if !CareStaff(store.Role(p.Role)) {
		return store.BreakGlass{}, ErrBreakGlassRole
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		return store.BreakGlass{}, &RequestError{`break-glass access needs a "reason"`}
	}
	if len(reason) > MaxReason {
		return store.BreakGlass{}, &RequestError{fmt.Sprintf("reason is longer than %d bytes", MaxReason)}
	}
	if req.Minutes < 0 || time.Duration(req.Minutes)*time.Minute > BreakGlassMax {
		return store.BreakGlass{}, &RequestError{fmt.Sprintf("minutes must be between 1 and %d", int(BreakGlassMax.Minutes()))}
	}
	d := BreakGlassDefault
	if req.Minutes > 0 {
		d = time.Duration(req.Minutes) * time.Minute
	}
	org := store.OrgOrDefault(p.Org)
	if req.Patient == "" {
		return store.BreakGlass{}, ErrNotVisible
	}
	pt, err := st.Patient(ctx, req.Patient)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.OrgOrDefault(pt.Org) != org) {
		return store.BreakGlass{}, ErrNotVisible
	}
	if err != nil {
		return store.BreakGlass{}, fmt.Errorf("access: load patient: %w", err)
	}
	now = now.UTC()
	g := store.BreakGlass{ID: id, Org: org, User: p.Subject, Patient: req.Patient, Reason: reason, Start: now, Expires: now.Add(d)}
	if err := st.CreateBreakGlass(ctx, g); err != nil {
		return store.BreakGlass{}, fmt.Errorf("access: record break-glass access: %w", err)
	}
	return g, nil
}
