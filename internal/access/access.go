// Package access decides which patients a caller may see. Organisations are
// hard walls: nothing of another organisation is ever visible. Within one,
// admins and integration systems see every patient; clinicians and nurses
// see the patients of their care teams plus those they opened by
// break-glass (until the grant expires); caregivers see the patients whose
// unexpired, unrevoked consent names them; a patient sees only themself;
// auditors see no patient.
//
// A patient the caller may not see is reported exactly like one that does
// not exist (ErrNotVisible, answered 404), so existence is not leaked.
package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// ErrNotVisible is returned for a patient the caller may not see, whether
// or not it exists. It wraps store.ErrNotFound so handlers that map
// not-found to 404 need nothing more.
var ErrNotVisible = fmt.Errorf("patient not visible: %w", store.ErrNotFound)

// ErrNoPrincipal is returned when a request carries no authenticated caller.
var ErrNoPrincipal = errors.New("access: no authenticated principal")

// Scope is the set of patients a principal may see at one moment.
type Scope struct {
	Org string
	// All is every patient of Org; otherwise only Patients (sorted).
	All      bool
	Patients []string
}

// Has reports whether the patient of organisation org is in the scope.
func (s Scope) Has(org, patient string) bool {
	if patient == "" || store.OrgOrDefault(org) != s.Org {
		return false
	}
	if s.All {
		return true
	}
	_, ok := slices.BinarySearch(s.Patients, patient)
	return ok
}

// Empty reports whether the scope holds no patient at all.
func (s Scope) Empty() bool { return !s.All && len(s.Patients) == 0 }

// PatientFilter narrows a store listing to the scope.
func (s Scope) PatientFilter() store.PatientFilter {
	return store.PatientFilter{Org: s.Org, Restrict: !s.All, IDs: s.Patients}
}

// DeviceFilter narrows a device listing to devices bound to patients of the scope.
func (s Scope) DeviceFilter() store.DeviceFilter {
	return store.DeviceFilter{Org: s.Org, Restrict: !s.All, IDs: s.Patients}
}

// Store is what the policy reads.
type Store interface {
	Patient(ctx context.Context, id string) (store.Patient, error)
	Device(ctx context.Context, id string) (store.Device, error)
	TeamPatients(ctx context.Context, user string) ([]string, error)
	ActiveConsents(ctx context.Context, grantee string, t time.Time) ([]store.Consent, error)
	ActiveBreakGlass(ctx context.Context, user string, t time.Time) ([]store.BreakGlass, error)
}

// Policy answers access questions from the store at the current time.
type Policy struct {
	store Store
	now   func() time.Time
}

// New returns a policy over st; now defaults to time.Now.
func New(st Store, now func() time.Time) *Policy {
	if now == nil {
		now = time.Now
	}
	return &Policy{store: st, now: now}
}

// Scope computes which patients p may see now.
func (pol *Policy) Scope(ctx context.Context, p auth.Principal) (Scope, error) {
	sc := Scope{Org: store.OrgOrDefault(p.Org)}
	switch store.Role(p.Role) {
	case store.RoleAdmin, store.RoleIntegration:
		sc.All = true
	case store.RoleClinician, store.RoleNurse:
		ids, err := pol.store.TeamPatients(ctx, p.Subject)
		if err != nil {
			return Scope{}, fmt.Errorf("access: care team patients: %w", err)
		}
		grants, err := pol.store.ActiveBreakGlass(ctx, p.Subject, pol.now())
		if err != nil {
			return Scope{}, fmt.Errorf("access: break-glass grants: %w", err)
		}
		for _, g := range grants {
			if g.Org == sc.Org {
				ids = append(ids, g.Patient)
			}
		}
		sc.Patients = ids
	case store.RoleCaregiver:
		consents, err := pol.store.ActiveConsents(ctx, p.Subject, pol.now())
		if err != nil {
			return Scope{}, fmt.Errorf("access: consents: %w", err)
		}
		for _, c := range consents {
			if c.Org == sc.Org {
				sc.Patients = append(sc.Patients, c.Patient)
			}
		}
	case store.RolePatient:
		if p.Patient != "" {
			sc.Patients = []string{p.Patient}
		}
	}
	slices.Sort(sc.Patients)
	sc.Patients = slices.Compact(sc.Patients)
	return sc, nil
}

// CheckPatient returns nil if p may see the patient now, ErrNotVisible if
// not (or if it does not exist), or a lookup error.
func (pol *Policy) CheckPatient(ctx context.Context, p auth.Principal, patient string) error {
	sc, err := pol.Scope(ctx, p)
	if err != nil {
		return err
	}
	return pol.CheckInScope(ctx, sc, patient)
}

// CheckInScope is CheckPatient for a scope already computed (one request
// touching many patients computes it once).
func (pol *Policy) CheckInScope(ctx context.Context, sc Scope, patient string) error {
	if sc.Empty() || patient == "" {
		return ErrNotVisible
	}
	if !sc.All {
		if _, ok := slices.BinarySearch(sc.Patients, patient); !ok {
			return ErrNotVisible
		}
	}
	// Care teams, consents and grants name patient ids; the organisation
	// wall is checked on the patient itself.
	pt, err := pol.store.Patient(ctx, patient)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotVisible
	}
	if err != nil {
		return fmt.Errorf("access: patient: %w", err)
	}
	if !sc.Has(pt.Org, patient) {
		return ErrNotVisible
	}
	return nil
}

// CheckDevice returns nil if the device belongs to the scope's organisation
// and, for a scope short of the whole organisation, is bound to a patient
// in it.
func (pol *Policy) CheckDevice(ctx context.Context, sc Scope, device string) error {
	d, err := pol.store.Device(ctx, device)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotVisible
	}
	if err != nil {
		return fmt.Errorf("access: device: %w", err)
	}
	return CheckDeviceRecord(sc, d)
}

// CheckDeviceRecord is CheckDevice for a device already read.
func CheckDeviceRecord(sc Scope, d store.Device) error {
	if store.OrgOrDefault(d.Org) != sc.Org {
		return ErrNotVisible
	}
	if sc.All || sc.Has(sc.Org, d.Patient) {
		return nil
	}
	return ErrNotVisible
}

// CanAckAlarms reports whether p may acknowledge the patient's alarms:
// clinicians and nurses who see the patient, admins, and caregivers holding
// a read+alarms consent. It answers ErrNotVisible when p may not even see
// the patient, and a permission error (errNoAlarmConsent) otherwise.
func (pol *Policy) CanAckAlarms(ctx context.Context, p auth.Principal, patient string) error {
	if err := pol.CheckPatient(ctx, p, patient); err != nil {
		return err
	}
	if store.Role(p.Role) != store.RoleCaregiver {
		return nil
	}
	consents, err := pol.store.ActiveConsents(ctx, p.Subject, pol.now())
	if err != nil {
		return fmt.Errorf("access: consents: %w", err)
	}
	for _, c := range consents {
		if c.Patient == patient && c.Org == store.OrgOrDefault(p.Org) && c.Scope == store.ConsentReadAlarms {
			return nil
		}
	}
	return ErrNoAlarmConsent
}

// ErrNoAlarmConsent: the caregiver may see the patient but their consent
// does not cover alarms.
var ErrNoAlarmConsent = errors.New("the consent does not cover acknowledging alarms")

// FromContext computes the scope of the request's principal.
func (pol *Policy) FromContext(ctx context.Context) (Scope, auth.Principal, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return Scope{}, auth.Principal{}, ErrNoPrincipal
	}
	sc, err := pol.Scope(ctx, p)
	return sc, p, err
}

// CareStaff reports whether role is clinical staff: the roles that are
// members of care teams and may open a patient by break-glass.
func CareStaff(role store.Role) bool { return role == store.RoleClinician || role == store.RoleNurse }
