-- Dashboard sessions, kept server-side so signing out ends them everywhere.
-- id is the SHA-256 of the cookie value; times are unix nanoseconds.
CREATE TABLE sessions (
	id        BLOB PRIMARY KEY,
	user_id   TEXT NOT NULL,
	org       TEXT NOT NULL DEFAULT '',
	created   INTEGER NOT NULL,
	last_seen INTEGER NOT NULL,
	expires   INTEGER NOT NULL,
	idle_ns   INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expires ON sessions(expires);

-- The second factor. totp_secret is sealed with a key outside the database
-- but still weighs as much as password_hash: treat both alike.
ALTER TABLE users ADD COLUMN totp_secret BLOB;
ALTER TABLE users ADD COLUMN totp_enabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;

-- Consecutive failed sign-ins per user name or source address.
CREATE TABLE signin_failures (
	key      TEXT PRIMARY KEY,
	failures INTEGER NOT NULL,
	last     INTEGER NOT NULL
);
