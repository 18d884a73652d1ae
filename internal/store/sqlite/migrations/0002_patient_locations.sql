-- Where each patient was, from HL7 ADT (PV1-3): admit, transfer, discharge.
CREATE TABLE patient_locations (
	id       INTEGER PRIMARY KEY,
	patient  TEXT NOT NULL,
	location TEXT NOT NULL,
	from_ns  INTEGER NOT NULL,
	to_ns    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX patient_locations_patient ON patient_locations(patient, from_ns);
