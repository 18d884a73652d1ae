package fhir

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// Conditional create (If-None-Exist) on Patient and Device. The criteria
// are a business identifier, matched within the caller's organisation:
// no match creates, one match answers 200 with it, several answer 412.
// The check and the create are separate store calls, so two racing
// conditional creates with the same identifier can both create; the
// store has no unique index on identifiers.

const ifNoneExistHeader = "If-None-Exist"

// parseIfNoneExist reads the If-None-Exist header: nil when absent, else
// the one identifier=[system|]value it may carry. Clients send it either
// bare ("identifier=...") or as a query ("?identifier=...").
func parseIfNoneExist(r *http.Request) (*store.Identifier, error) {
	hs := r.Header.Values(ifNoneExistHeader)
	if len(hs) == 0 {
		return nil, nil
	}
	if len(hs) > 1 {
		return nil, errorf(http.StatusBadRequest, "invalid", "send If-None-Exist once")
	}
	q, err := url.ParseQuery(strings.TrimPrefix(strings.TrimSpace(hs[0]), "?"))
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: "invalid", Msg: "If-None-Exist is not a valid query", Err: err}
	}
	var ident *store.Identifier
	for name, vs := range q {
		if name != "identifier" {
			return nil, errorf(http.StatusBadRequest, "not-supported", "If-None-Exist supports only identifier=[system|]value")
		}
		if len(vs) != 1 || strings.Contains(vs[0], ",") {
			return nil, errorf(http.StatusBadRequest, "not-supported", "If-None-Exist takes a single identifier")
		}
		ident = &store.Identifier{Value: vs[0]}
		if sys, val, ok := strings.Cut(vs[0], "|"); ok {
			ident.System, ident.Value = sys, val
		}
		if ident.Value == "" {
			return nil, invalid("If-None-Exist identifier needs a value")
		}
	}
	if ident == nil {
		return nil, errorf(http.StatusBadRequest, "invalid", "If-None-Exist needs identifier=[system|]value")
	}
	return ident, nil
}

// matchRequest prepares the answer to a conditional create that matched:
// Content-Location names the version found. A SMART client was admitted
// on its create scope alone (the scope check does not see If-None-Exist),
// so it gets the match as with Prefer: return=minimal, without a body; it
// reads the resource with its read scope.
func matchRequest(w http.ResponseWriter, r *http.Request, resourceType, id string, version int) *http.Request {
	w.Header().Set("Content-Location", fmt.Sprintf("/fhir/%s/%s/_history/%d", resourceType, id, version))
	if p, ok := auth.PrincipalFrom(r.Context()); !ok || p.Scopes == nil {
		return r
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Prefer", "return=minimal")
	return r2
}

// errAmbiguous is the 412 of a conditional create whose criteria select
// more than one resource, or one the caller may not see (answering with
// it would disclose it; creating another would duplicate it).
func errAmbiguous(resourceType string) *Error {
	return errorf(http.StatusPreconditionFailed, "duplicate",
		"If-None-Exist matches more than one %s, or one you cannot see; nothing was created", resourceType)
}

// existingPatient answers the patient a conditional create matches, or
// nil when it should create.
func (h *handler) existingPatient(ctx context.Context, ident *store.Identifier) (*store.Patient, error) {
	ps, total, err := h.store.SearchPatients(ctx, store.PatientFilter{Org: callerOrg(ctx), Identifier: ident, Limit: 2})
	if err != nil {
		return nil, fmt.Errorf("conditional create patient: %w", err)
	}
	switch {
	case total == 0:
		return nil, nil
	case total > 1 || len(ps) != 1:
		return nil, errAmbiguous("Patient")
	}
	if err := checkPatient(ctx, ps[0]); errors.Is(err, access.ErrNotVisible) {
		return nil, errAmbiguous("Patient")
	} else if err != nil {
		return nil, err
	}
	return &ps[0], nil
}

// existingDevice is existingPatient for devices.
func (h *handler) existingDevice(ctx context.Context, ident *store.Identifier) (*store.Device, error) {
	all, err := h.store.DevicesByIdentifier(ctx, *ident)
	if err != nil {
		return nil, fmt.Errorf("conditional create device: %w", err)
	}
	org := callerOrg(ctx)
	var ds []store.Device
	for _, d := range all {
		if store.OrgOrDefault(d.Org) == org {
			ds = append(ds, d)
		}
	}
	switch {
	case len(ds) == 0:
		return nil, nil
	case len(ds) > 1:
		return nil, errAmbiguous("Device")
	}
	if err := checkDevice(ctx, ds[0]); errors.Is(err, access.ErrNotVisible) {
		return nil, errAmbiguous("Device")
	} else if err != nil {
		return nil, err
	}
	return &ds[0], nil
}
