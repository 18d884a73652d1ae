-- +goose Up

-- Device certificate authorities, one per organisation. cert is DER;
-- sealed_key is the private key encrypted with a key kept outside the
-- database (--ca-key-file). Times are unix nanoseconds.
CREATE TABLE device_cas (
	org        text PRIMARY KEY,
	cert       bytea NOT NULL,
	sealed_key bytea NOT NULL,
	created    bigint NOT NULL
);

-- Certificates the CAs issued; only these are accepted. revoked is 0 while
-- the certificate is valid.
CREATE TABLE device_certs (
	serial    text PRIMARY KEY,
	device_id text NOT NULL,
	org       text NOT NULL,
	issued    bigint NOT NULL,
	not_after bigint NOT NULL,
	revoked   bigint NOT NULL DEFAULT 0
);
CREATE INDEX device_certs_device ON device_certs(device_id, issued);
CREATE INDEX device_certs_revoked ON device_certs(revoked) WHERE revoked > 0;

-- +goose Down
DROP TABLE device_certs;
DROP TABLE device_cas;
