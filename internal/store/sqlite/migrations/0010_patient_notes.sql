-- Append-only notes on a patient's record; created is unix nanoseconds.
CREATE TABLE patient_notes (
	id      TEXT PRIMARY KEY,
	org     TEXT NOT NULL,
	patient TEXT NOT NULL,
	author  TEXT NOT NULL,
	role    TEXT NOT NULL,
	body    TEXT NOT NULL,
	created INTEGER NOT NULL
);
CREATE INDEX patient_notes_patient ON patient_notes(patient, created);
