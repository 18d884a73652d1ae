package audit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// PurposeBreakGlass is the purpose of use of an access made under a
// break-glass grant: "BTG" of HL7 v3 ActReason
// (http://terminology.hl7.org/CodeSystem/v3-ActReason), shown as the
// AuditEvent's purposeOfEvent.
const PurposeBreakGlass = "BTG"

// GrantStore is what BreakGlassPurpose reads.
type GrantStore interface {
	ActiveBreakGlass(ctx context.Context, user string, t time.Time) ([]store.BreakGlass, error)
	TeamPatients(ctx context.Context, user string) ([]string, error)
}

// BreakGlassPurpose returns a Middleware.Purpose that marks a record
// PurposeBreakGlass when a clinician or nurse touched a patient who is in
// their scope only through an active break-glass grant (not through one
// of their care teams). Other roles cost no lookup; a clinician without
// an active grant costs one.
func BreakGlassPurpose(st GrantStore, now func() time.Time) func(ctx context.Context, agent auth.Principal, patients []string) (string, error) {
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, agent auth.Principal, patients []string) (string, error) {
		role := store.Role(agent.Role)
		if len(patients) == 0 || agent.Subject == "" || (role != store.RoleClinician && role != store.RoleNurse) {
			return "", nil
		}
		grants, err := st.ActiveBreakGlass(ctx, agent.Subject, now())
		if err != nil {
			return "", fmt.Errorf("audit: break-glass grants: %w", err)
		}
		var opened []string
		for _, g := range grants {
			if g.Org == store.OrgOrDefault(agent.Org) && slices.Contains(patients, g.Patient) {
				opened = append(opened, g.Patient)
			}
		}
		if len(opened) == 0 {
			return "", nil
		}
		team, err := st.TeamPatients(ctx, agent.Subject)
		if err != nil {
			return "", fmt.Errorf("audit: care team patients: %w", err)
		}
		for _, p := range opened {
			if !slices.Contains(team, p) {
				return PurposeBreakGlass, nil
			}
		}
		return "", nil
	}
}
