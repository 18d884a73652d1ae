-- +goose Up

-- The tamper-evident audit trail (package audit): one row per audited
-- request, hash-chained in seq order. seq is assigned by Tend under an
-- advisory lock, not by a sequence, so a deleted row leaves a visible gap.
-- On Citus these stay plain tables on the coordinator (one chain).
CREATE TABLE audit_log (
	seq       bigint PRIMARY KEY,
	t_ns      bigint NOT NULL,
	action    text NOT NULL,
	subtype   text NOT NULL,
	outcome   integer NOT NULL,
	status    integer NOT NULL,
	subject   text NOT NULL,
	role      text NOT NULL,
	org       text NOT NULL,
	source    text NOT NULL,
	entity    text NOT NULL,
	query     text NOT NULL,
	prev_hash bytea NOT NULL,
	hash      bytea NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log(subject, seq);
CREATE INDEX audit_log_time ON audit_log(t_ns);
-- The patients of a record, in the record's order (idx).
CREATE TABLE audit_patients (
	seq     bigint NOT NULL,
	idx     integer NOT NULL,
	patient text NOT NULL,
	PRIMARY KEY (seq, idx)
);
CREATE INDEX audit_patients_patient ON audit_patients(patient, seq);
-- The chain head, updated with every append: a deleted tail shows.
CREATE TABLE audit_head (
	id   integer PRIMARY KEY CHECK (id = 1),
	seq  bigint NOT NULL,
	hash bytea NOT NULL
);

-- +goose Down
DROP TABLE audit_head;
DROP TABLE audit_patients;
DROP TABLE audit_log;
