-- +goose Up

-- Where each patient was, from HL7 ADT (PV1-3): admit, transfer, discharge.
-- Times are unix nanoseconds; to_ns 0 means the stay is open.
CREATE TABLE patient_locations (
	patient_id text NOT NULL,
	from_ns    bigint NOT NULL,
	to_ns      bigint NOT NULL DEFAULT 0,
	location   text NOT NULL,
	PRIMARY KEY (patient_id, from_ns)
);

-- +goose Down
DROP TABLE patient_locations;
