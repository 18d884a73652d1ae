-- +goose Up

-- FHIR Bulk Data export jobs and their NDJSON files, kept in the store so
-- every node answers the status URL. Times are unix nanoseconds (0: unset).
CREATE TABLE export_jobs (
	id               text PRIMARY KEY,
	owner            text NOT NULL,
	org              text NOT NULL,
	principal        bytea NOT NULL,
	request          text NOT NULL,
	params           bytea NOT NULL,
	state            text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
	progress         text NOT NULL,
	error            text NOT NULL,
	transaction_time bigint NOT NULL,
	created          bigint NOT NULL,
	expires          bigint NOT NULL,
	lease_until      bigint NOT NULL
);
CREATE INDEX export_jobs_state ON export_jobs(state, created);
CREATE INDEX export_jobs_expires ON export_jobs(expires);

CREATE TABLE export_files (
	job   text NOT NULL REFERENCES export_jobs(id) ON DELETE CASCADE,
	name  text NOT NULL,
	type  text NOT NULL,
	count integer NOT NULL,
	body  bytea NOT NULL,
	PRIMARY KEY (job, name)
);

-- +goose Down
DROP TABLE export_files;
DROP TABLE export_jobs;
