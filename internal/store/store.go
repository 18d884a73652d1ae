// Package store defines what Tend keeps: the registry (patients, devices,
// bindings, credentials, API tokens, users), readings as time series, and the
// dead-letter store. Implementations live in subpackages (sqlite now,
// postgres later) and must all pass the conformance suite in storetest; no
// SQL dialect detail leaks out of them.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/tendhealth/tend/internal/reading"
)

// Errors every implementation returns (wrapped) so callers can branch.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
)

// Identifier is a FHIR-style business identifier.
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// Patient is a registered patient. Resource holds the FHIR JSON as last
// written; the store indexes only what it searches on.
type Patient struct {
	ID          string
	Org         string // owning organisation; "" is stored as DefaultOrg
	Identifiers []Identifier
	Resource    []byte
	Version     int // starts at 1, +1 on every update
	Updated     time.Time
}

// Device is a registered device. Patient is the current binding ("" when
// unbound); the full history is in Bindings.
type Device struct {
	ID          string
	Org         string // owning organisation; "" is stored as DefaultOrg
	Identifiers []Identifier
	Patient     string
	Resource    []byte
	Version     int
	Updated     time.Time
}

// Binding says a device was bound to a patient during [From, To); a zero To
// means the binding is still open.
type Binding struct {
	Device  string
	Patient string
	From    time.Time
	To      time.Time
}

// LocationStay says a patient was at Location (e.g. "WEST/ICU/12/A" from
// HL7 PV1-3) during [From, To); a zero To means the patient is still there.
type LocationStay struct {
	Patient  string
	Location string
	From     time.Time
	To       time.Time
}

// Role names what an API token or user may do. Admins configure their
// organisation and see all of its patients; integration tokens are systems
// (EHRs, gateways) with the same patient reach; clinicians and nurses see
// the patients of their care teams; caregivers see the patients who granted
// them consent; a patient sees only themself; auditors read the audit trail
// and no clinical data.
type Role string

const (
	RoleAdmin       Role = "admin"
	RoleIntegration Role = "integration"
	RoleClinician   Role = "clinician"
	RoleNurse       Role = "nurse"
	RoleCaregiver   Role = "caregiver"
	RolePatient     Role = "patient"
	RoleAuditor     Role = "auditor"
)

// Roles lists every role, for validation and tests that walk them all.
var Roles = []Role{RoleAdmin, RoleIntegration, RoleClinician, RoleNurse, RoleCaregiver, RolePatient, RoleAuditor}

// DefaultOrg is the organisation every record belongs to on an installation
// that never created another one (and that rows from before organisations
// existed were assigned to).
const DefaultOrg = "default"

// Token is an API bearer token, kept only as a hash.
type Token struct {
	Hash    []byte
	Role    Role
	Subject string // who it belongs to: a user id or "bootstrap"
	Org     string // the organisation it acts in; "" is stored as DefaultOrg
	Created time.Time
	// Expires is when the token stops working; zero means never (API
	// tokens from before OAuth, the bootstrap token).
	Expires time.Time
	// Scopes are the SMART scopes an OAuth access token was granted; nil
	// means the role alone decides.
	Scopes []string
	Client string // the OAuth client it was issued to, "" for other tokens
}

// User is a person who signs in; passwords are kept only as argon2id hashes.
type User struct {
	ID           string
	Name         string
	Role         Role
	Org          string // the organisation the user belongs to; "" is stored as DefaultOrg
	Patient      string // for the patient role: the patient the user is
	PasswordHash string
	Created      time.Time
}

// Sample is a stored reading with its stable observation id.
type Sample struct {
	ID string
	reading.Reading
}

// Query selects samples of one patient.
type Query struct {
	Patient string
	Codes   []string  // LOINC codes; empty means every code
	From    time.Time // inclusive; zero means unbounded
	To      time.Time // exclusive; zero means unbounded
	Limit   int       // 0 means no limit; ties in time are ordered by observation id
	Offset  int
	Oldest  bool // oldest first; the default is newest first
	// Devices keeps only samples from these devices; empty means any.
	Devices []string
	// After is the observation id of a sample (of any series): only
	// samples strictly after it in the query's order are returned. Paging
	// by the last id seen stays correct while new samples arrive, where
	// Offset would shift. It must be a valid observation id.
	After string
}

// Bucket is one downsampled interval of a series (for charts).
type Bucket struct {
	Start time.Time
	Count int
	Min   float64
	Max   float64
	Mean  float64
}

// DeadLetter is a rejected payload kept with its reason so an operator can
// inspect and replay it.
type DeadLetter struct {
	ID          int64
	Received    time.Time
	Source      string // "mqtt", "http", ...
	Device      string // as claimed by the sender; may be unknown
	ContentType string
	Payload     []byte
	Reason      string
	Replayed    time.Time // zero until a replay succeeded
}

// Store is the persistence contract. Every method is safe for concurrent use.
type Store interface {
	People     // sessions, second factor, sign-in lockout (sessions.go)
	AuditStore // tamper-evident audit trail (audit.go)
	// Patient notes and organisation settings (notes.go).
	NoteStore
	OrgSettings
	// Where users are told about notices addressed to them (contacts.go).
	ContactStore

	CreatePatient(ctx context.Context, p *Patient) error // sets Version and Updated
	UpdatePatient(ctx context.Context, p *Patient) error // ErrNotFound if absent
	Patient(ctx context.Context, id string) (Patient, error)
	// Patients lists patients, optionally only those with the identifier
	// (System may be empty to match any system), ordered by id.
	Patients(ctx context.Context, ident *Identifier, limit, offset int) ([]Patient, int, error)
	// MovePatient records that the patient is at location from at on: the
	// open stay is closed at at and a new one opened ("" only closes it;
	// the current location again changes nothing). A move may not reach
	// back before the open stay began; it is then recorded at that start.
	MovePatient(ctx context.Context, patient, location string, at time.Time) error
	Locations(ctx context.Context, patient string) ([]LocationStay, error) // oldest first

	// CreateDevice and UpdateDevice record a binding change at `at` when
	// Device.Patient differs from the current binding: the open binding is
	// closed at `at` and a new one opened there. History is append-only: a
	// change before the latest recorded boundary is ErrConflict.
	CreateDevice(ctx context.Context, d *Device, at time.Time) error
	UpdateDevice(ctx context.Context, d *Device, at time.Time) error
	Device(ctx context.Context, id string) (Device, error)
	// DeviceByIdentifier returns the device carrying ident (System may be
	// empty to match any system); with several, the one with the lowest id.
	DeviceByIdentifier(ctx context.Context, ident Identifier) (Device, error)
	Bindings(ctx context.Context, device string) ([]Binding, error) // oldest first
	// PatientAt returns the patient bound to device at time t, or "" if none.
	PatientAt(ctx context.Context, device string, t time.Time) (string, error)

	SetDeviceSecret(ctx context.Context, device string, hash []byte) error
	DeviceSecret(ctx context.Context, device string) ([]byte, error) // ErrNotFound if none

	PutToken(ctx context.Context, t Token) error
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
	CreateUser(ctx context.Context, u User) error
	User(ctx context.Context, id string) (User, error) // ErrNotFound if absent; id is the sign-in name
	CountUsers(ctx context.Context, role Role) (int, error)
	CountTokens(ctx context.Context, role Role) (int, error)

	// Append stores readings durably (committed and synced when it returns)
	// and returns how many were new; a reading whose patient, device, code
	// and time are already stored is skipped (the first delivery wins). The
	// whole batch is refused if any reading lacks a patient or code, has a
	// zero time or no finite value.
	Append(ctx context.Context, rs []reading.Reading) (int, error)
	Samples(ctx context.Context, q Query) ([]Sample, error)
	CountSamples(ctx context.Context, q Query) (int, error) // ignores Limit, Offset and After
	Sample(ctx context.Context, id string) (Sample, error)
	Latest(ctx context.Context, patient string) ([]Sample, error) // newest per code, ordered by code
	// Downsample returns the non-empty buckets of [from, to), oldest first;
	// panels are summarised by their first component.
	Downsample(ctx context.Context, patient, code string, from, to time.Time, step time.Duration) ([]Bucket, error)

	AddDeadLetter(ctx context.Context, d *DeadLetter) error                           // sets ID
	DeadLetters(ctx context.Context, limit int, beforeID int64) ([]DeadLetter, error) // newest first
	DeadLetter(ctx context.Context, id int64) (DeadLetter, error)
	MarkReplayed(ctx context.Context, id int64, at time.Time) error

	// Devices sharing an identifier, e.g. a bed location (devicelocation.go).
	DeviceFinder
	DeviceDeleter // removing unbound devices (devicedelete.go)
	AccessStore
	OAuthStore   // SMART Backend Services clients and assertion ids (oauth.go)
	ArchiveStore // what export and import carry beyond the above (archive.go)
	ExportStore  // FHIR Bulk Data export jobs and files (export.go)

	// Device certificate authorities and the certificates they issued (deviceca.go).
	DeviceCAStore

	Close() error
}
