-- Registry.
CREATE TABLE patients (
	id       TEXT PRIMARY KEY,
	resource BLOB,
	version  INTEGER NOT NULL,
	updated  INTEGER NOT NULL
);
CREATE TABLE patient_identifiers (
	patient TEXT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
	system  TEXT NOT NULL,
	value   TEXT NOT NULL
);
CREATE INDEX patient_identifiers_value ON patient_identifiers(value, system);
CREATE INDEX patient_identifiers_patient ON patient_identifiers(patient);

CREATE TABLE devices (
	id       TEXT PRIMARY KEY,
	patient  TEXT NOT NULL DEFAULT '',
	resource BLOB,
	version  INTEGER NOT NULL,
	updated  INTEGER NOT NULL
);
CREATE TABLE device_identifiers (
	device TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
	system TEXT NOT NULL,
	value  TEXT NOT NULL
);
CREATE INDEX device_identifiers_value ON device_identifiers(value, system);
CREATE INDEX device_identifiers_device ON device_identifiers(device);

-- A binding is [from_ns, to_ns); to_ns NULL means still open.
CREATE TABLE bindings (
	id      INTEGER PRIMARY KEY,
	device  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
	patient TEXT NOT NULL,
	from_ns INTEGER NOT NULL,
	to_ns   INTEGER
);
CREATE INDEX bindings_device ON bindings(device, from_ns);

CREATE TABLE device_secrets (
	device  TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
	hash    BLOB NOT NULL,
	updated INTEGER NOT NULL
);

CREATE TABLE tokens (
	hash    BLOB PRIMARY KEY,
	role    TEXT NOT NULL,
	subject TEXT NOT NULL,
	created INTEGER NOT NULL
);
CREATE INDEX tokens_role ON tokens(role);

CREATE TABLE users (
	id            TEXT PRIMARY KEY,
	name          TEXT NOT NULL,
	role          TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	created       INTEGER NOT NULL
);

-- Readings: one row per sample, keyed by series and effective time so a
-- redelivered reading is stored once.
CREATE TABLE series (
	id      INTEGER PRIMARY KEY,
	patient TEXT NOT NULL,
	device  TEXT NOT NULL,
	code    TEXT NOT NULL,
	unit    TEXT NOT NULL,
	mdc     TEXT NOT NULL,
	UNIQUE (patient, device, code)
);
CREATE INDEX series_patient_code ON series(patient, code);

CREATE TABLE samples (
	series_id  INTEGER NOT NULL,
	t          INTEGER NOT NULL,
	value      REAL,
	components BLOB,
	received   INTEGER NOT NULL,
	source     TEXT NOT NULL,
	-- Set only when a reading's unit or MDC differs from its series'.
	unit       TEXT,
	mdc        TEXT,
	PRIMARY KEY (series_id, t)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	received     INTEGER NOT NULL,
	source       TEXT NOT NULL,
	device       TEXT NOT NULL,
	content_type TEXT NOT NULL,
	payload      BLOB,
	reason       TEXT NOT NULL,
	replayed     INTEGER
);
