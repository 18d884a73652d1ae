package store

import (
	"context"
	"time"
)

// Organisation is a tenant: its patients, devices, users and tokens are
// invisible to every other organisation.
type Organisation struct {
	ID   string
	Name string
	// PrivacyOfficer is the user id alerted when someone of the
	// organisation uses break-glass access.
	PrivacyOfficer string
	Created        time.Time
}

// CareTeam groups the clinicians and nurses who look after a set of
// patients; a member sees exactly the patients of their teams.
type CareTeam struct {
	ID       string
	Org      string
	Name     string
	Members  []string // user ids, sorted
	Patients []string // patient ids, sorted
	Created  time.Time
}

// Consent scopes. A consent always allows reading the patient's data;
// ConsentReadAlarms also lets the grantee acknowledge the patient's alarms.
const (
	ConsentRead       = "read"
	ConsentReadAlarms = "read+alarms"
)

// Consent is a patient's grant of access to another user (a caregiver or
// family member), valid during [Start, End) unless revoked earlier.
type Consent struct {
	ID      string
	Org     string
	Patient string
	Grantee string // user id
	Scope   string // ConsentRead or ConsentReadAlarms
	Start   time.Time
	End     time.Time // zero: no end
	Revoked time.Time // zero: not revoked
	Created time.Time
}

// ActiveAt reports whether the consent is in force at t.
func (c Consent) ActiveAt(t time.Time) bool {
	return !t.Before(c.Start) && (c.End.IsZero() || t.Before(c.End)) && (c.Revoked.IsZero() || t.Before(c.Revoked))
}

// BreakGlass is an emergency access grant a clinician or nurse gave
// themself to one patient outside their care teams, valid in [Start, Expires).
type BreakGlass struct {
	ID      string
	Org     string
	User    string
	Patient string
	Reason  string
	Start   time.Time
	Expires time.Time
}

// PatientFilter selects patients for listing. Org is required: listing
// never crosses organisations.
type PatientFilter struct {
	Org        string
	Identifier *Identifier // System may be empty to match any system
	// Restrict limits the result to IDs (an empty IDs then matches none).
	Restrict bool
	IDs      []string
	Limit    int // 0 means no limit
	Offset   int
}

// DeviceFilter selects devices for listing, like PatientFilter; with
// Restrict, only devices currently bound to one of IDs (patient ids).
type DeviceFilter struct {
	Org      string
	Restrict bool
	IDs      []string
	Limit    int
	Offset   int
}

// AccessStore keeps organisations, care teams, consents and break-glass
// grants, and answers the lookups the access policy needs.
type AccessStore interface {
	CreateOrg(ctx context.Context, o Organisation) error // ErrConflict if the id exists
	Org(ctx context.Context, id string) (Organisation, error)
	Orgs(ctx context.Context) ([]Organisation, error) // ordered by id
	// OrgUsers lists the users of an organisation, ordered by id.
	OrgUsers(ctx context.Context, org string) ([]User, error)

	CreateCareTeam(ctx context.Context, t CareTeam) error // Members and Patients are ignored
	CareTeam(ctx context.Context, id string) (CareTeam, error)
	CareTeams(ctx context.Context, org string) ([]CareTeam, error) // ordered by id
	// SetCareTeamMember adds (in true) or removes a user; adding twice is
	// harmless. The same for SetCareTeamPatient.
	SetCareTeamMember(ctx context.Context, team, user string, in bool) error
	SetCareTeamPatient(ctx context.Context, team, patient string, in bool) error
	// TeamPatients returns the ids of the patients of every team the user
	// is a member of, sorted and without duplicates.
	TeamPatients(ctx context.Context, user string) ([]string, error)

	CreateConsent(ctx context.Context, c Consent) error
	Consent(ctx context.Context, id string) (Consent, error)
	// Consents lists an organisation's consents, of one patient when
	// patient is set, newest first.
	Consents(ctx context.Context, org, patient string) ([]Consent, error)
	// RevokeConsent ends the consent at at; revoking twice keeps the first time.
	RevokeConsent(ctx context.Context, id string, at time.Time) error
	// ActiveConsents returns the consents granted to grantee in force at t.
	ActiveConsents(ctx context.Context, grantee string, t time.Time) ([]Consent, error)

	CreateBreakGlass(ctx context.Context, g BreakGlass) error
	// BreakGlassGrants lists an organisation's grants, newest first.
	BreakGlassGrants(ctx context.Context, org string, limit int) ([]BreakGlass, error)
	// ActiveBreakGlass returns the user's grants in force at t.
	ActiveBreakGlass(ctx context.Context, user string, t time.Time) ([]BreakGlass, error)

	// SearchPatients lists the patients f selects, ordered by id, with the
	// total count of matches ignoring Limit and Offset.
	SearchPatients(ctx context.Context, f PatientFilter) ([]Patient, int, error)
	// SearchDevices lists the devices f selects, ordered by id, with the total.
	SearchDevices(ctx context.Context, f DeviceFilter) ([]Device, int, error)
}

// OrgOrDefault returns org, or DefaultOrg when it is empty.
func OrgOrDefault(org string) string {
	if org == "" {
		return DefaultOrg
	}
	return org
}
