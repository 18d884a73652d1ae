package web

import (
	"context"
	"errors"
	"fmt"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// Every page shows only the signed-in user's patients (package access): a
// patient outside their scope is "no such patient", exactly like one that
// does not exist.

// principalOf is the signed-in user as the access policy sees them.
func (h *Handler) principalOf(ctx context.Context) (auth.Principal, error) {
	sess := sessionFrom(ctx)
	p := auth.Principal{Subject: sess.User, Role: string(sess.Role), Org: store.OrgOrDefault(sess.Org)}
	if sess.Role == store.RolePatient {
		u, err := h.cfg.Store.User(ctx, sess.User)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return p, fmt.Errorf("load patient user: %w", err)
		}
		if err == nil && store.OrgOrDefault(u.Org) == p.Org {
			p.Patient = u.Patient
		}
	}
	return p, nil
}

func (h *Handler) policy() *access.Policy { return access.New(h.cfg.Store, h.cfg.Now) }

// scope computes the signed-in user's scope now.
func (h *Handler) scope(ctx context.Context) (access.Scope, error) {
	p, err := h.principalOf(ctx)
	if err != nil {
		return access.Scope{}, err
	}
	return h.policy().Scope(ctx, p)
}

// visiblePatient loads a patient the signed-in user may see.
func (h *Handler) visiblePatient(ctx context.Context, id string) (store.Patient, error) {
	sc, err := h.scope(ctx)
	if err != nil {
		return store.Patient{}, err
	}
	p, err := h.cfg.Store.Patient(ctx, id)
	if err == nil && !sc.Has(p.Org, p.ID) {
		err = access.ErrNotVisible
	}
	if err != nil {
		return store.Patient{}, orNotFound(err, "patient")
	}
	return p, nil
}

// visibleAlarms keeps the alarms of patients the user may see; alarms
// about no patient go to the installation operator's admins only.
func (h *Handler) visibleAlarms(ctx context.Context, as []alarm.Alarm) ([]alarm.Alarm, error) {
	sc, err := h.scope(ctx)
	if err != nil {
		return nil, err
	}
	sess := sessionFrom(ctx)
	staff := sess.Role == store.RoleAdmin || sess.Role == store.RoleIntegration
	system := sc.Org == store.DefaultOrg && staff
	orgOf := map[string]string{}
	out := as[:0:0]
	for _, a := range as {
		// Notices go to named people (the privacy officer); clinical staff
		// must not see, let alone acknowledge, the alert about themselves.
		if a.RuleKind == alarm.KindNotice && !staff {
			continue
		}
		if a.Patient == "" {
			if system {
				out = append(out, a)
			}
			continue
		}
		org, ok := orgOf[a.Patient]
		if !ok {
			p, err := h.cfg.Store.Patient(ctx, a.Patient)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("load patient: %w", err)
			}
			org, orgOf[a.Patient] = p.Org, p.Org
		}
		if sc.Has(org, a.Patient) {
			out = append(out, a)
		}
	}
	return out, nil
}

// checkAlarmAction answers nil if the user may take action on alarm id:
// its patient is in scope, and a caregiver only acknowledges, and only
// with a consent that covers alarms.
func (h *Handler) checkAlarmAction(ctx context.Context, id, action string) error {
	if h.cfg.AlarmStore == nil {
		return nil
	}
	a, err := h.cfg.AlarmStore.Alarm(ctx, id)
	if errors.Is(err, alarm.ErrNotFound) {
		return &pageError{Status: 404, Message: "There is no such alarm."}
	}
	if err != nil {
		return fmt.Errorf("load alarm: %w", err)
	}
	vis, err := h.visibleAlarms(ctx, []alarm.Alarm{a})
	if err != nil {
		return err
	}
	if len(vis) == 0 {
		return &pageError{Status: 404, Message: "There is no such alarm."}
	}
	if sessionFrom(ctx).Role != store.RoleCaregiver {
		return nil
	}
	if action != "ack" {
		return &pageError{Status: 403, Message: "Caregivers may acknowledge alarms, not resolve, snooze or escalate them."}
	}
	p, err := h.principalOf(ctx)
	if err != nil {
		return err
	}
	if err := h.policy().CanAckAlarms(ctx, p, a.Patient); errors.Is(err, access.ErrNoAlarmConsent) {
		return &pageError{Status: 403, Message: "Your consent for this patient does not cover alarms."}
	} else if err != nil {
		return orNotFound(err, "alarm")
	}
	return nil
}
