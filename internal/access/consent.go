package access

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// ErrNoSuchUser is returned for a user who does not exist or belongs to
// another organisation (the two are not told apart).
var ErrNoSuchUser = fmt.Errorf("no such user: %w", store.ErrNotFound)

// ConsentStore is what GrantConsent reads and writes.
type ConsentStore interface {
	Patient(ctx context.Context, id string) (store.Patient, error)
	User(ctx context.Context, id string) (store.User, error)
	CreateConsent(ctx context.Context, c store.Consent) error
}

// GrantConsent records a patient's consent for a caregiver of the same
// organisation, from c.Start (now when zero) to c.End (none when zero);
// an empty scope is ConsentRead. The API and the dashboard both record
// consents through it. A patient of another organisation (or none) is
// ErrNotVisible, such a grantee ErrNoSuchUser; what the request must
// correct is a RequestError. id names the new consent.
func GrantConsent(ctx context.Context, st ConsentStore, org string, c store.Consent, id string, now time.Time) (store.Consent, error) {
	org = store.OrgOrDefault(org)
	if c.Scope == "" {
		c.Scope = store.ConsentRead
	}
	if c.Scope != store.ConsentRead && c.Scope != store.ConsentReadAlarms {
		return store.Consent{}, &RequestError{fmt.Sprintf(`scope must be %q or %q`, store.ConsentRead, store.ConsentReadAlarms)}
	}
	now = now.UTC()
	if c.Start.IsZero() {
		c.Start = now
	}
	if !c.End.IsZero() && !c.End.After(c.Start) {
		return store.Consent{}, &RequestError{"end must be after start"}
	}
	if c.Patient == "" {
		return store.Consent{}, ErrNotVisible
	}
	p, err := st.Patient(ctx, c.Patient)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.OrgOrDefault(p.Org) != org) {
		return store.Consent{}, ErrNotVisible
	}
	if err != nil {
		return store.Consent{}, fmt.Errorf("access: load patient: %w", err)
	}
	u, err := st.User(ctx, c.Grantee)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.OrgOrDefault(u.Org) != org) || c.Grantee == "" {
		return store.Consent{}, ErrNoSuchUser
	}
	if err != nil {
		return store.Consent{}, fmt.Errorf("access: load user: %w", err)
	}
	if u.Role != store.RoleCaregiver {
		return store.Consent{}, &RequestError{"consent is granted to a caregiver"}
	}
	out := store.Consent{ID: id, Org: org, Patient: c.Patient, Grantee: c.Grantee, Scope: c.Scope, Start: c.Start, End: c.End, Created: now}
	if err := st.CreateConsent(ctx, out); err != nil {
		return store.Consent{}, fmt.Errorf("access: create consent: %w", err)
	}
	return out, nil
}
