package fhir

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// Patient scoping. With Config.Access set, every request is answered
// within its caller's scope (computed once per request): a Patient,
// Observation or Device outside it is "not found", searches and includes
// leave such rows out and count only what they return, and created
// resources join the caller's organisation. Without Access (unit tests of
// the FHIR layer alone) nothing is filtered.

type scopeKey struct{}

// scoped computes the caller's scope and attaches it to the request.
func (h *handler) scoped(next http.Handler) http.Handler {
	if h.access == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/metadata" {
			next.ServeHTTP(w, r) // the CapabilityStatement is public and holds no patient data
			return
		}
		sc, _, err := h.access.FromContext(r.Context())
		if errors.Is(err, access.ErrNoPrincipal) {
			h.writeError(w, r, errorf(http.StatusUnauthorized, "login", "authentication is required"))
			return
		}
		if err != nil {
			h.writeError(w, r, fmt.Errorf("compute access scope: %w", err))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), scopeKey{}, &sc)))
	})
}

// scopeOf returns the request's scope, or nil when unscoped.
func scopeOf(ctx context.Context) *access.Scope {
	sc, _ := ctx.Value(scopeKey{}).(*access.Scope)
	return sc
}

// callerOrg is the organisation new resources join.
func callerOrg(ctx context.Context) string {
	if sc := scopeOf(ctx); sc != nil {
		return sc.Org
	}
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return store.OrgOrDefault(p.Org)
	}
	return store.DefaultOrg
}

// checkPatient answers nil if the patient record is in the caller's scope.
func checkPatient(ctx context.Context, p store.Patient) error {
	if sc := scopeOf(ctx); sc != nil && !sc.Has(p.Org, p.ID) {
		return access.ErrNotVisible
	}
	return nil
}

// visiblePatient reads a patient and answers not-found for one outside
// the caller's scope.
func visiblePatient(ctx context.Context, st store.Store, id string) (store.Patient, error) {
	p, err := st.Patient(ctx, id)
	if err != nil {
		return store.Patient{}, err
	}
	if err := checkPatient(ctx, p); err != nil {
		return store.Patient{}, err
	}
	return p, nil
}

// checkPatientID is visiblePatient for callers that need only the answer.
func checkPatientID(ctx context.Context, st store.Store, id string) error {
	if scopeOf(ctx) == nil {
		return nil
	}
	_, err := visiblePatient(ctx, st, id)
	return err
}

// checkDevice answers nil if the device record is in the caller's scope.
func checkDevice(ctx context.Context, d store.Device) error {
	if sc := scopeOf(ctx); sc != nil {
		return access.CheckDeviceRecord(*sc, d)
	}
	return nil
}

// sampleVisible reports whether a stored reading's patient is in scope;
// visible answers are remembered per request in seen.
func sampleVisible(ctx context.Context, st store.Store, patient string, seen map[string]bool) (bool, error) {
	if scopeOf(ctx) == nil {
		return true, nil
	}
	if ok, known := seen[patient]; known {
		return ok, nil
	}
	err := checkPatientID(ctx, st, patient)
	switch {
	case err == nil:
		seen[patient] = true
	case errors.Is(err, store.ErrNotFound):
		seen[patient] = false
	default:
		return false, err
	}
	return seen[patient], nil
}

// scopeSearch makes a search on a patient outside the caller's scope match
// nothing, exactly like a search on a patient that does not exist.
func (h *handler) scopeSearch(ctx context.Context, s *ObservationSearch) error {
	if s.Patient == "" {
		return nil
	}
	err := checkPatientID(ctx, h.store, s.Patient)
	if errors.Is(err, store.ErrNotFound) {
		s.NoMatch = true
		return nil
	}
	return err
}
