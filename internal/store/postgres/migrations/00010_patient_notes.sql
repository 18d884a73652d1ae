-- +goose Up

-- Append-only notes on a patient's record; created is unix nanoseconds.
CREATE TABLE patient_notes (
	id      text PRIMARY KEY,
	org     text NOT NULL,
	patient text NOT NULL,
	author  text NOT NULL,
	role    text NOT NULL,
	body    text NOT NULL,
	created bigint NOT NULL
);
CREATE INDEX patient_notes_patient ON patient_notes(patient, created);

-- +goose Down
DROP TABLE patient_notes;
