-- FHIR Bulk Data export jobs and their NDJSON files, kept in the store so
-- every node answers the status URL. Times are unix nanoseconds (0: unset).
CREATE TABLE export_jobs (
	id               TEXT PRIMARY KEY,
	owner            TEXT NOT NULL,
	org              TEXT NOT NULL,
	principal        BLOB NOT NULL,
	request          TEXT NOT NULL,
	params           BLOB NOT NULL,
	state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
	progress         TEXT NOT NULL,
	error            TEXT NOT NULL,
	transaction_time INTEGER NOT NULL,
	created          INTEGER NOT NULL,
	expires          INTEGER NOT NULL,
	lease_until      INTEGER NOT NULL
);
CREATE INDEX export_jobs_state ON export_jobs(state, created);
CREATE INDEX export_jobs_expires ON export_jobs(expires);

CREATE TABLE export_files (
	job   TEXT NOT NULL REFERENCES export_jobs(id) ON DELETE CASCADE,
	name  TEXT NOT NULL,
	type  TEXT NOT NULL,
	count INTEGER NOT NULL,
	body  BLOB NOT NULL,
	PRIMARY KEY (job, name)
);
