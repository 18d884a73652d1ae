package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/store"
)

// Who may call what. Patient data is further narrowed per caller by the
// access policy: a patient outside the caller's scope answers 404.
var (
	// patientReaders may read patients, readings and alarms within scope;
	// auditors are not among them.
	patientReaders = []store.Role{store.RoleAdmin, store.RoleIntegration, store.RoleClinician, store.RoleNurse, store.RoleCaregiver, store.RolePatient}
	// alarmAckers may acknowledge; a caregiver only with a read+alarms consent.
	alarmAckers = []store.Role{store.RoleAdmin, store.RoleIntegration, store.RoleClinician, store.RoleNurse, store.RoleCaregiver}
	// alarmHandlers may resolve and snooze.
	alarmHandlers = []store.Role{store.RoleAdmin, store.RoleIntegration, store.RoleClinician, store.RoleNurse}
)

// policy is the access policy over the handler's store; it holds no state.
func (h *Handler) policy() *access.Policy { return access.New(h.cfg.Store, h.cfg.Now) }

// withPatientLink completes the principal of a patient-role token with
// the patient the user is.
func (h *Handler) withPatientLink(ctx context.Context, t store.Token) (context.Context, error) {
	if t.Role != store.RolePatient {
		return ctx, nil
	}
	p, _ := auth.PrincipalFrom(ctx)
	u, err := h.cfg.Store.User(ctx, t.Subject)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return ctx, fmt.Errorf("look up patient user: %w", err)
	}
	if err == nil && store.OrgOrDefault(u.Org) == store.OrgOrDefault(t.Org) {
		p.Patient = u.Patient
	}
	return auth.WithPrincipal(ctx, p), nil
}

// errNoSuchPatient is what a caller learns about a patient outside its
// scope: the same as about one that does not exist.
var errNoSuchPatient = &Error{Status: http.StatusNotFound, Detail: "no such patient"}

// checkPatient answers nil if the request's caller may see the patient.
func (h *Handler) checkPatient(r *http.Request, patient string) error {
	p, ok := auth.PrincipalFrom(r.Context())
	if !ok {
		return errUnauthorized
	}
	err := h.policy().CheckPatient(r.Context(), p, patient)
	if errors.Is(err, access.ErrNotVisible) {
		return errNoSuchPatient
	}
	return err
}

// scopedPatient guards a /patients/{id}/... handler: 404 unless the
// caller may see patient {id}.
func (h *Handler) scopedPatient(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := h.checkPatient(r, r.PathValue("id")); err != nil {
			return err
		}
		return fn(w, r)
	}
}

// visibility decides, patient by patient, what one caller may see; it
// remembers each answer, so a long listing or a stream asks the store
// once per patient. Safe for concurrent use.
type visibility struct {
	scope access.Scope
	store store.Store
	// system: events about no patient (installation-wide technical alarms)
	// go to the installation operator's staff only.
	system bool
	// notices: the caller sees notices (alarm.KindNotice, such as the
	// privacy officer's break-glass alert); clinical staff do not, so the
	// person a notice is about cannot acknowledge it away.
	notices bool

	mu   sync.Mutex
	seen map[string]bool
}

func (h *Handler) visibility(ctx context.Context) (*visibility, error) {
	sc, p, err := h.policy().FromContext(ctx)
	if err != nil {
		return nil, err
	}
	role := store.Role(p.Role)
	v := &visibility{scope: sc, store: h.cfg.Store, seen: map[string]bool{},
		system:  sc.Org == store.DefaultOrg && (role == store.RoleAdmin || role == store.RoleIntegration),
		notices: role == store.RoleAdmin || role == store.RoleIntegration}
	return v, nil
}

// sees reports whether the caller may see data about patient.
func (v *visibility) sees(ctx context.Context, patient string) (bool, error) {
	if patient == "" {
		return v.system, nil
	}
	if !v.scope.All {
		if _, ok := slices.BinarySearch(v.scope.Patients, patient); !ok {
			return false, nil
		}
	}
	v.mu.Lock()
	ok, known := v.seen[patient]
	v.mu.Unlock()
	if known {
		return ok, nil
	}
	pt, err := v.store.Patient(ctx, patient)
	switch {
	case errors.Is(err, store.ErrNotFound):
		ok = false
	case err != nil:
		return false, fmt.Errorf("check patient organisation: %w", err)
	default:
		ok = v.scope.Has(pt.Org, patient)
	}
	v.mu.Lock()
	v.seen[patient] = ok
	v.mu.Unlock()
	return ok, nil
}

// scopedAlarms lists the alarms f selects that the caller may see. The
// alarm store applies the caller's patient set (Filter.Restrict), so a
// page is full whenever enough visible alarms exist, however many of
// other organisations' are interleaved.
func (h *Handler) scopedAlarms(ctx context.Context, f alarm.Filter) ([]alarm.Alarm, error) {
	v, err := h.visibility(ctx)
	if err != nil {
		return nil, err
	}
	if f.Patient != "" {
		ok, err := v.sees(ctx, f.Patient)
		if err != nil || !ok {
			return nil, err
		}
		f.NoNotices = !v.notices
		return h.cfg.AlarmStore.Alarms(ctx, f)
	}
	var patients []string
	if v.scope.All {
		// Patients are created in, and never leave, their organisation.
		pts, _, err := h.cfg.Store.SearchPatients(ctx, store.PatientFilter{Org: v.scope.Org})
		if err != nil {
			return nil, fmt.Errorf("list organisation patients: %w", err)
		}
		for _, p := range pts {
			patients = append(patients, p.ID)
		}
	} else {
		for _, p := range v.scope.Patients {
			// Care teams and grants name patient ids; the organisation
			// wall is checked on each patient.
			if ok, err := v.sees(ctx, p); err != nil {
				return nil, err
			} else if ok {
				patients = append(patients, p)
			}
		}
	}
	if v.system {
		patients = append(patients, "") // installation-wide technical alarms
	}
	f.Restrict, f.Patients, f.NoNotices = true, patients, !v.notices
	return h.cfg.AlarmStore.Alarms(ctx, f)
}

// checkAlarm answers nil if the caller may act on (or read) alarm a:
// reading needs the patient in scope; a caregiver acknowledging also
// needs a consent that covers alarms.
func (h *Handler) checkAlarm(r *http.Request, a alarm.Alarm, acting bool) error {
	v, err := h.visibility(r.Context())
	if err != nil {
		return err
	}
	ok, err := v.sees(r.Context(), a.Patient)
	if err != nil {
		return err
	}
	if !ok || (a.RuleKind == alarm.KindNotice && !v.notices) {
		return &Error{Status: http.StatusNotFound, Detail: "no such alarm"}
	}
	p, _ := auth.PrincipalFrom(r.Context())
	if acting && store.Role(p.Role) == store.RoleCaregiver {
		err := h.policy().CanAckAlarms(r.Context(), p, a.Patient)
		if errors.Is(err, access.ErrNoAlarmConsent) {
			return &Error{Status: http.StatusForbidden, Detail: "your consent for this patient does not cover alarms"}
		}
		if errors.Is(err, access.ErrNotVisible) {
			return &Error{Status: http.StatusNotFound, Detail: "no such alarm"}
		}
		return err
	}
	return nil
}

// streamScopeRefresh is how often an open stream re-reads its caller's
// scope, so an expired break-glass grant or a revoked consent also ends
// the flow of live events.
var streamScopeRefresh = 30 * time.Second

// streamFilter returns the live-event filter of one subscriber: the
// patient asked for (already checked) or every patient in scope. The
// filter runs on the publisher's path, so it only reads a snapshot that a
// background refresh replaces; unknown patients are looked up once.
func (h *Handler) streamFilter(r *http.Request, patient string) (func(live.Event) bool, error) {
	v, err := h.visibility(r.Context())
	if err != nil {
		return nil, err
	}
	var cur atomic.Pointer[visibility]
	cur.Store(v)
	ctx := r.Context()
	go func() {
		t := time.NewTicker(streamScopeRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if nv, err := h.visibility(ctx); err == nil {
					cur.Store(nv)
				} else if ctx.Err() == nil {
					// Fail closed: a scope that cannot be read sees nothing.
					cur.Store(&visibility{scope: access.Scope{Org: v.scope.Org}, store: h.cfg.Store, seen: map[string]bool{}})
				}
			}
		}
	}()
	return func(ev live.Event) bool {
		if patient != "" && ev.Patient != patient {
			return false
		}
		if ev.Notice && !cur.Load().notices {
			return false
		}
		ok, err := cur.Load().sees(context.WithoutCancel(ctx), ev.Patient)
		return err == nil && ok
	}, nil
}

// fhirWriteAllowed keeps FHIR writes (create, update, Bundles) to the
// roles that register patients and devices and feed readings; the others
// may only read, within their scope.
func fhirWriteAllowed(r *http.Request) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	p, _ := auth.PrincipalFrom(r.Context())
	if role := store.Role(p.Role); role == store.RoleAdmin || role == store.RoleIntegration {
		return nil
	}
	return &Error{Status: http.StatusForbidden, Detail: fmt.Sprintf("FHIR writes are not open to the %s role", p.Role)}
}

// tokenOrg is the organisation a new token acts in: the issuing admin's,
// or at login the user's own.
func (h *Handler) tokenOrg(r *http.Request, subject string) (string, error) {
	if p, ok := auth.PrincipalFrom(r.Context()); ok {
		return store.OrgOrDefault(p.Org), nil
	}
	u, err := h.cfg.Store.User(r.Context(), subject)
	if errors.Is(err, store.ErrNotFound) {
		return store.DefaultOrg, nil
	}
	if err != nil {
		return "", fmt.Errorf("look up user organisation: %w", err)
	}
	return store.OrgOrDefault(u.Org), nil
}

// operatorOnly keeps a handler to the default organisation: the
// installation's operator. What belongs to no organisation is theirs:
// dead letters (a refused payload may name a device that does not exist),
// webhooks (they receive every organisation's alarms) and the care
// settings' rules (shared by every organisation).
func operatorOnly(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if requestOrg(r) != store.DefaultOrg {
			return &Error{Status: http.StatusForbidden, Detail: "this is installation-wide and handled by the installation's operator (the default organisation)"}
		}
		return fn(w, r)
	}
}
