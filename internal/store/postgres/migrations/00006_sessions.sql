-- +goose Up

-- Dashboard sessions, kept server-side so signing out ends them on every
-- node at once. id is the SHA-256 of the cookie value; times are unix
-- nanoseconds.
CREATE TABLE sessions (
	id        bytea PRIMARY KEY,
	user_id   text NOT NULL,
	org       text NOT NULL DEFAULT '',
	created   bigint NOT NULL,
	last_seen bigint NOT NULL,
	expires   bigint NOT NULL,
	idle_ns   bigint NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expires ON sessions(expires);

-- The second factor. totp_secret is sealed with a key outside the database
-- but still weighs as much as password_hash: treat both alike.
ALTER TABLE users ADD COLUMN totp_secret bytea;
ALTER TABLE users ADD COLUMN totp_enabled boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN totp_last_step bigint NOT NULL DEFAULT 0;

-- Consecutive failed sign-ins per user name or source address.
CREATE TABLE signin_failures (
	key      text PRIMARY KEY,
	failures integer NOT NULL,
	last     bigint NOT NULL
);

-- +goose Down
DROP TABLE signin_failures;
ALTER TABLE users DROP COLUMN totp_last_step;
ALTER TABLE users DROP COLUMN totp_enabled;
ALTER TABLE users DROP COLUMN totp_secret;
DROP TABLE sessions;
