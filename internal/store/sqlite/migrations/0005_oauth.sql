-- SMART Backend Services: registered OAuth clients, the assertion ids they
-- used (so a replayed assertion is refused, also after a restart), and the
-- expiry, scopes and client of the access tokens issued to them. Times are
-- unix nanoseconds; tokens.expires 0 means never; tokens.scopes NULL means
-- the role alone decides, otherwise it is the space-separated scopes.
CREATE TABLE oauth_clients (
	id      TEXT PRIMARY KEY,
	name    TEXT NOT NULL,
	org     TEXT NOT NULL,
	role    TEXT NOT NULL,
	scope   TEXT NOT NULL,
	jwks    BLOB NOT NULL,
	created INTEGER NOT NULL
);
CREATE INDEX oauth_clients_org ON oauth_clients(org, id);

CREATE TABLE oauth_jtis (
	client  TEXT NOT NULL,
	jti     TEXT NOT NULL,
	expires INTEGER NOT NULL,
	PRIMARY KEY (client, jti)
);
CREATE INDEX oauth_jtis_expires ON oauth_jtis(expires);

ALTER TABLE tokens ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN scopes TEXT;
ALTER TABLE tokens ADD COLUMN client TEXT NOT NULL DEFAULT '';
CREATE INDEX tokens_client ON tokens(client) WHERE client <> '';
