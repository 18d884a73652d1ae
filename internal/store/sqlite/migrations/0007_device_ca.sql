-- Device certificate authorities, one per organisation. cert is DER;
-- sealed_key is the private key encrypted with a key kept outside the
-- database (--ca-key-file). Times are unix nanoseconds.
CREATE TABLE device_cas (
	org        TEXT PRIMARY KEY,
	cert       BLOB NOT NULL,
	sealed_key BLOB NOT NULL,
	created    INTEGER NOT NULL
);

-- Certificates the CAs issued; only these are accepted. revoked is 0 while
-- the certificate is valid.
CREATE TABLE device_certs (
	serial    TEXT PRIMARY KEY,
	device_id TEXT NOT NULL,
	org       TEXT NOT NULL,
	issued    INTEGER NOT NULL,
	not_after INTEGER NOT NULL,
	revoked   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX device_certs_device ON device_certs(device_id, issued);
CREATE INDEX device_certs_revoked ON device_certs(revoked) WHERE revoked > 0;
