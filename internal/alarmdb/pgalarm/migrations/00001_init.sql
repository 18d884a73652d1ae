-- +goose Up

-- Times are bigint unix nanoseconds (timestamptz keeps only microseconds);
-- 0 stands for "not set". Every table carries the alarm_ prefix so the
-- schema can be shared with the samples store.

-- Episodes. value may be NaN or ±Inf, which float8 stores as is.
CREATE TABLE alarms (
	id              text PRIMARY KEY,
	patient         text NOT NULL,
	state           text NOT NULL CHECK (state IN ('active', 'acknowledged', 'resolved')),
	priority        text NOT NULL,
	kind            text NOT NULL,
	rule            text NOT NULL,
	rule_kind       text NOT NULL,
	subject         text NOT NULL,
	name            text NOT NULL,
	raised          bigint NOT NULL,
	updated         bigint NOT NULL,
	condition       boolean NOT NULL,
	latching        boolean NOT NULL,
	device          text NOT NULL,
	code            text NOT NULL,
	value           double precision NOT NULL,
	unit            text NOT NULL,
	message         text NOT NULL,
	detail          bytea,
	acked_by        text NOT NULL,
	acked_at        bigint NOT NULL,
	resolved_by     text NOT NULL,
	resolved_at     bigint NOT NULL,
	snoozed_until   bigint NOT NULL,
	snooze_reason   text NOT NULL,
	tier            integer NOT NULL,
	round           integer NOT NULL,
	next_escalation bigint NOT NULL,
	version         integer NOT NULL
);
-- At most one open episode per patient, rule and subject, across nodes.
CREATE UNIQUE INDEX alarms_open_key ON alarms(patient, rule, subject) WHERE state <> 'resolved';
CREATE INDEX alarms_patient_raised ON alarms(patient, raised, id);
CREATE INDEX alarms_state_raised ON alarms(state, raised, id);
CREATE INDEX alarms_raised ON alarms(raised, id);
-- Only active episodes with a timer are ever asked for.
CREATE INDEX alarms_due_escalation ON alarms(next_escalation, raised, id)
	WHERE state = 'active' AND next_escalation <> 0;

-- History; seq keeps insertion order among changes at the same instant.
CREATE TABLE alarm_changes (
	seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	alarm  text NOT NULL,
	at     bigint NOT NULL,
	action text NOT NULL,
	by     text NOT NULL,
	reason text NOT NULL,
	detail text NOT NULL
);
CREATE INDEX alarm_changes_alarm_at ON alarm_changes(alarm, at, seq);

-- Outbox. claimed_until is the end of the current lease (0: none); seq
-- keeps creation order among rows created at the same instant.
CREATE TABLE alarm_deliveries (
	id            text PRIMARY KEY,
	seq           bigint GENERATED ALWAYS AS IDENTITY,
	alarm         text NOT NULL,
	event         text NOT NULL,
	recipient     text NOT NULL,
	body          bytea,
	created       bigint NOT NULL,
	due           bigint NOT NULL,
	attempts      integer NOT NULL,
	state         text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
	last_error    text NOT NULL,
	receipt       text NOT NULL,
	delivered     bigint NOT NULL,
	claimed_until bigint NOT NULL DEFAULT 0
);
-- The claim and NextDue read only pending rows; finished rows pile up.
CREATE INDEX alarm_deliveries_pending_due ON alarm_deliveries(due, created, seq) WHERE state = 'pending';
CREATE INDEX alarm_deliveries_alarm_state ON alarm_deliveries(alarm, state);

-- Rule evaluator checkpoints; sequences are uint64 stored bit for bit.
CREATE TABLE alarm_checkpoints (
	name     text PRIMARY KEY,
	applied  bigint NOT NULL,
	snapshot bytea,
	snap_seq bigint NOT NULL
);

-- Configuration documents, every version kept.
CREATE TABLE alarm_docs (
	scope   text NOT NULL,
	kind    text NOT NULL,
	version integer NOT NULL,
	body    bytea,
	author  text NOT NULL,
	reason  text NOT NULL,
	at      bigint NOT NULL,
	PRIMARY KEY (scope, kind, version)
);

-- One row counting document changes. PutDoc bumps it first, so its row
-- lock serialises PutDocs and the counter grows in commit order: a reader
-- never sees a version whose documents a later commit still changes.
CREATE TABLE alarm_docs_version (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	version bigint NOT NULL
);
INSERT INTO alarm_docs_version(version) VALUES (0);

CREATE TABLE alarm_webhooks (
	id      text PRIMARY KEY,
	url     text NOT NULL,
	secret  bytea,
	created bigint NOT NULL
);

-- +goose Down
DROP TABLE alarm_webhooks;
DROP TABLE alarm_docs_version;
DROP TABLE alarm_docs;
DROP TABLE alarm_checkpoints;
DROP TABLE alarm_deliveries;
DROP TABLE alarm_changes;
DROP TABLE alarms;
