package alarm

import (
	"context"
	"slices"
	"time"
)

// Store persists episodes, their history, the outbox, evaluator
// checkpoints, versioned configuration documents and webhooks. An
// implementation must pass the alarmtest conformance suite.
type Store interface {
	// Update runs fn in one write transaction: everything fn wrote is
	// committed (durably) together, or nothing is.
	Update(ctx context.Context, fn func(Tx) error) error

	Alarm(ctx context.Context, id string) (Alarm, error)
	// Alarms lists episodes matching f, newest raised first.
	Alarms(ctx context.Context, f Filter) ([]Alarm, error)
	History(ctx context.Context, alarm string) ([]Change, error) // oldest first
	Deliveries(ctx context.Context, alarm string) ([]Delivery, error)
	// DueEscalations returns open, unacknowledged episodes whose
	// next_escalation is set and not after now, oldest first.
	DueEscalations(ctx context.Context, now time.Time, limit int) ([]Alarm, error)
	// ClaimDeliveries leases up to limit pending deliveries due by now whose
	// lease has expired, for lease: another claimer does not get them until
	// the lease ends (a dispatcher that dies mid-send loses its lease).
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// NextDue is the earliest due time of a pending delivery (zero if none).
	NextDue(ctx context.Context) (time.Time, error)
	Checkpoint(ctx context.Context, name string) (Checkpoint, error) // zero Checkpoint if none

	// Doc returns the current version of a document (ErrNotFound if none).
	Doc(ctx context.Context, scope, kind string) (Doc, error)
	DocHistory(ctx context.Context, scope, kind string) ([]Doc, error) // newest first
	// DocsVersion increases with every document change (cache invalidation).
	DocsVersion(ctx context.Context) (int64, error)
	// PutDoc stores a new version (Version is set: previous + 1).
	PutDoc(ctx context.Context, d *Doc) error

	PutWebhook(ctx context.Context, w Webhook) error
	Webhook(ctx context.Context, id string) (Webhook, error)
	Webhooks(ctx context.Context) ([]Webhook, error)
	DeleteWebhook(ctx context.Context, id string) error

	Close() error
}

// Tx is the write side, inside Update.
type Tx interface {
	// OpenAlarm returns the open (not resolved) episode of a patient, rule
	// and subject, if any.
	OpenAlarm(patient, rule, subject string) (Alarm, bool, error)
	Alarm(id string) (Alarm, error)
	// PutAlarm inserts a (Version 0 → 1) or updates it if its stored
	// Version is still a.Version (then Version+1); else ErrConflict. It sets
	// a.Version to the stored version.
	PutAlarm(a *Alarm) error
	AddChange(c Change) error
	// Enqueue adds a delivery; one whose ID exists is ignored (replays).
	Enqueue(d Delivery) error
	// FinishDelivery records an attempt: its new state, attempts, error or
	// receipt, and (when still pending) when to try again; it ends the lease.
	FinishDelivery(d Delivery) error
	// CountDeliveries counts an episode's deliveries in a state.
	CountDeliveries(alarm string, state DeliveryState) (int, error)
	// SetCheckpoint records Applied; Snapshot and SnapSeq are replaced only
	// when Snapshot is non-nil (snapshots are taken less often).
	SetCheckpoint(c Checkpoint) error
	// Checkpoint returns the position (Name, Applied, SnapSeq) as this
	// transaction sees it, without the Snapshot bytes: it is read on every
	// batch and the snapshot can be megabytes.
	Checkpoint(name string) (Checkpoint, error)
}

// PerPatientScan is the size up to which a store answers a Restrict
// filter patient by patient (each one's newest alarms through the patient
// index); above it, an organisation's worth of patients, it walks alarms
// newest first and keeps those of the set.
const PerPatientScan = 64

// ScopedPatients returns the patients f restricts to, sorted and without
// duplicates (nil: any patient), and whether f can match nothing. Patient,
// when set, is intersected with the set.
func ScopedPatients(f Filter) (patients []string, none bool) {
	if !f.Restrict {
		if f.Patient != "" {
			return []string{f.Patient}, false
		}
		return nil, false
	}
	if f.Patient != "" {
		if slices.Contains(f.Patients, f.Patient) {
			return []string{f.Patient}, false
		}
		return nil, true
	}
	if len(f.Patients) == 0 {
		return nil, true
	}
	out := slices.Clone(f.Patients)
	slices.Sort(out)
	return slices.Compact(out), false
}
