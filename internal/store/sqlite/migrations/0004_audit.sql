-- The tamper-evident audit trail (package audit): one row per audited
-- request, hash-chained in seq order. seq is assigned by Tend, not by
-- SQLite, so a deleted row leaves a visible gap.
CREATE TABLE audit_log (
	seq       INTEGER PRIMARY KEY,
	t_ns      INTEGER NOT NULL,
	action    TEXT NOT NULL,
	subtype   TEXT NOT NULL,
	outcome   INTEGER NOT NULL,
	status    INTEGER NOT NULL,
	subject   TEXT NOT NULL,
	role      TEXT NOT NULL,
	org       TEXT NOT NULL,
	source    TEXT NOT NULL,
	entity    TEXT NOT NULL,
	query     TEXT NOT NULL,
	prev_hash BLOB NOT NULL,
	hash      BLOB NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log(subject, seq);
CREATE INDEX audit_log_time ON audit_log(t_ns);
-- The patients of a record, in the record's order (idx).
CREATE TABLE audit_patients (
	seq     INTEGER NOT NULL,
	idx     INTEGER NOT NULL,
	patient TEXT NOT NULL,
	PRIMARY KEY (seq, idx)
);
CREATE INDEX audit_patients_patient ON audit_patients(patient, seq);
-- The chain head, updated with every append: a deleted tail shows.
CREATE TABLE audit_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  INTEGER NOT NULL,
	hash BLOB NOT NULL
);
