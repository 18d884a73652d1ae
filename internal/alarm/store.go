package alarm

import (
	"context"
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
