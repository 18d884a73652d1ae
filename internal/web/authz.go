package web

import (
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// permission is something a page or action needs. The table follows the
// API's model (package api, authz.go, access.go): patients and alarms are
// open to every role but auditors, each seeing only their own patients
// (access.go); clinicians, nurses and caregivers (acknowledge only) act
// on alarms; changing configuration (devices, users) is admin only.
type permission int

const (
	permViewPatients permission = iota
	permViewAlarms
	permActOnAlarms
	permViewDevices
	permManageDevices
	permManageUsers
	permAdminister // care teams, consents, organisation settings, break-glass list
	permReadAudit  // the audit trail viewer
	permBreakGlass // emergency access to a patient outside one's care teams
	permReadNotes  // a patient's notes (within scope)
	permWriteNotes // add a note (within scope)
	permViewRules  // a patient's alarm rules (within scope)
	permEditRules  // override a patient's alarm rules (within scope), audited with a reason
	permHome       // the start page: the ward, or the audit trail for those who see no patients
)

var permissions = map[permission]struct {
	roles []store.Role
	what  string
}{
	permViewPatients:  {patientRoles, "view patients"},
	permViewAlarms:    {patientRoles, "view alarms"},
	permActOnAlarms:   {[]store.Role{store.RoleAdmin, store.RoleIntegration, store.RoleClinician, store.RoleNurse, store.RoleCaregiver}, "act on alarms"},
	permViewDevices:   {[]store.Role{store.RoleAdmin, store.RoleIntegration, store.RoleClinician, store.RoleNurse}, "view devices"},
	permManageDevices: {[]store.Role{store.RoleAdmin}, "register devices or issue their credentials"},
	permManageUsers:   {[]store.Role{store.RoleAdmin}, "manage users"},
	permAdminister:    {[]store.Role{store.RoleAdmin}, "administer the organisation"},
	permReadAudit:     {[]store.Role{store.RoleAdmin, store.RoleAuditor}, "read the audit trail"},
	permBreakGlass:    {[]store.Role{store.RoleClinician, store.RoleNurse}, "use emergency access"},
	permReadNotes:     {[]store.Role{store.RoleAdmin, store.RoleClinician, store.RoleNurse, store.RoleCaregiver}, "read notes"},
	permWriteNotes:    {[]store.Role{store.RoleClinician, store.RoleNurse, store.RoleCaregiver}, "write notes"},
	// Alarm limits are a clinical decision: clinicians (and admins) change
	// them, nurses and integrations only read them; caregivers and
	// patients see the alarms, not their configuration.
	permViewRules: {[]store.Role{store.RoleAdmin, store.RoleIntegration, store.RoleClinician, store.RoleNurse}, "view alarm rules"},
	permEditRules: {[]store.Role{store.RoleAdmin, store.RoleClinician}, "change alarm rules"},
	permHome:      {append([]store.Role{store.RoleAuditor}, patientRoles...), "open Tend"},
}

// patientRoles see patients (within their scope); auditors do not.
var patientRoles = []store.Role{store.RoleAdmin, store.RoleIntegration, store.RoleClinician, store.RoleNurse, store.RoleCaregiver, store.RolePatient}

func (p permission) allows(r store.Role) bool {
	for _, role := range permissions[p].roles {
		if role == r {
			return true
		}
	}
	return false
}

func (p permission) what() string { return permissions[p].what }

// can is for templates: whether the session may do something, to hide
// actions it would be refused.
func (s session) can(p permission) bool { return p.allows(s.Role) }

func (s session) CanManageDevices() bool { return s.can(permManageDevices) }
func (s session) CanManageUsers() bool   { return s.can(permManageUsers) }
func (s session) CanActOnAlarms() bool   { return s.can(permActOnAlarms) }
func (s session) CanViewPatients() bool  { return s.can(permViewPatients) }
func (s session) CanViewDevices() bool   { return s.can(permViewDevices) }
func (s session) CanReadAudit() bool     { return s.can(permReadAudit) }
func (s session) CanBreakGlass() bool    { return s.can(permBreakGlass) }
func (s session) CanViewRules() bool     { return s.can(permViewRules) }
func (s session) CanEditRules() bool     { return s.can(permEditRules) }

// checkPassword is a variable so benchmarks and tests need not pay for
// argon2id; production uses auth.PasswordMatches.
var checkPassword = auth.PasswordMatches
