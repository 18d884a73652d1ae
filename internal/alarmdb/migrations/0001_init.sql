-- Times are unix nanoseconds; 0 stands for "not set".

-- Episodes. Detail is the rule's detail JSON, kept as bytes.
CREATE TABLE alarms (
	id              TEXT PRIMARY KEY,
	patient         TEXT NOT NULL,
	state           TEXT NOT NULL CHECK (state IN ('active', 'acknowledged', 'resolved')),
	priority        TEXT NOT NULL,
	kind            TEXT NOT NULL,
	rule            TEXT NOT NULL,
	rule_kind       TEXT NOT NULL,
	subject         TEXT NOT NULL,
	name            TEXT NOT NULL,
	raised          INTEGER NOT NULL,
	updated         INTEGER NOT NULL,
	condition       INTEGER NOT NULL,
	latching        INTEGER NOT NULL,
	device          TEXT NOT NULL,
	code            TEXT NOT NULL,
	value           REAL, -- NULL: NaN, which SQLite cannot store
	unit            TEXT NOT NULL,
	message         TEXT NOT NULL,
	detail          BLOB,
	acked_by        TEXT NOT NULL,
	acked_at        INTEGER NOT NULL,
	resolved_by     TEXT NOT NULL,
	resolved_at     INTEGER NOT NULL,
	snoozed_until   INTEGER NOT NULL,
	snooze_reason   TEXT NOT NULL,
	tier            INTEGER NOT NULL,
	round           INTEGER NOT NULL,
	next_escalation INTEGER NOT NULL,
	version         INTEGER NOT NULL
);
-- At most one open episode per patient, rule and subject.
CREATE UNIQUE INDEX alarms_open_key ON alarms(patient, rule, subject) WHERE state <> 'resolved';
CREATE INDEX alarms_patient_raised ON alarms(patient, raised, id);
CREATE INDEX alarms_state_raised ON alarms(state, raised, id);
CREATE INDEX alarms_raised ON alarms(raised, id);
CREATE INDEX alarms_state_escalation ON alarms(state, next_escalation);

-- History; seq keeps insertion order among changes at the same instant.
CREATE TABLE changes (
	seq    INTEGER PRIMARY KEY AUTOINCREMENT,
	alarm  TEXT NOT NULL,
	at     INTEGER NOT NULL,
	action TEXT NOT NULL,
	by     TEXT NOT NULL,
	reason TEXT NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX changes_alarm_at ON changes(alarm, at, seq);

-- Outbox. claimed_until is the end of the current lease (0: none).
CREATE TABLE deliveries (
	id            TEXT PRIMARY KEY,
	alarm         TEXT NOT NULL,
	event         TEXT NOT NULL,
	recipient     TEXT NOT NULL,
	body          BLOB,
	created       INTEGER NOT NULL,
	due           INTEGER NOT NULL,
	attempts      INTEGER NOT NULL,
	state         TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
	last_error    TEXT NOT NULL,
	receipt       TEXT NOT NULL,
	delivered     INTEGER NOT NULL,
	claimed_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_state_due ON deliveries(state, due);
CREATE INDEX deliveries_alarm_state ON deliveries(alarm, state);

-- Rule evaluator checkpoints; sequences are uint64 stored bit for bit. The
-- position changes with every batch and the snapshot every few seconds:
-- they live in separate tables because SQLite rewrites a whole row (a
-- megabytes-long snapshot included) on any update.
CREATE TABLE checkpoints (
	name    TEXT PRIMARY KEY,
	applied INTEGER NOT NULL
);
CREATE TABLE snapshots (
	name     TEXT PRIMARY KEY,
	snap_seq INTEGER NOT NULL,
	snapshot BLOB NOT NULL
);

-- Configuration documents, every version kept. seq only grows, so its
-- maximum is the documents' version for cache invalidation.
CREATE TABLE docs (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	scope   TEXT NOT NULL,
	kind    TEXT NOT NULL,
	version INTEGER NOT NULL,
	body    BLOB,
	author  TEXT NOT NULL,
	reason  TEXT NOT NULL,
	at      INTEGER NOT NULL,
	UNIQUE (scope, kind, version)
);

CREATE TABLE webhooks (
	id      TEXT PRIMARY KEY,
	url     TEXT NOT NULL,
	secret  BLOB,
	created INTEGER NOT NULL
);
