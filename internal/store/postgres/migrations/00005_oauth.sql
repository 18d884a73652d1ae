-- +goose Up

-- SMART Backend Services: registered OAuth clients, the assertion ids they
-- used (so a replayed assertion is refused on every node and after a
-- restart), and the expiry, scopes and client of the access tokens issued
-- to them. Times are unix nanoseconds; tokens.expires 0 means never;
-- tokens.scopes NULL means the role alone decides, otherwise it is the
-- space-separated scopes.
CREATE TABLE oauth_clients (
	id      text PRIMARY KEY,
	name    text NOT NULL,
	org     text NOT NULL,
	role    text NOT NULL,
	scope   text NOT NULL,
	jwks    bytea NOT NULL,
	created bigint NOT NULL
);
CREATE INDEX oauth_clients_org ON oauth_clients(org, id);

CREATE TABLE oauth_jtis (
	client  text NOT NULL,
	jti     text NOT NULL,
	expires bigint NOT NULL,
	PRIMARY KEY (client, jti)
);
CREATE INDEX oauth_jtis_expires ON oauth_jtis(expires);

ALTER TABLE tokens ADD COLUMN expires bigint NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN scopes text;
ALTER TABLE tokens ADD COLUMN client text NOT NULL DEFAULT '';
CREATE INDEX tokens_client ON tokens(client) WHERE client <> '';

-- +goose Down
DROP INDEX tokens_client;
ALTER TABLE tokens DROP COLUMN client;
ALTER TABLE tokens DROP COLUMN scopes;
ALTER TABLE tokens DROP COLUMN expires;
DROP TABLE oauth_jtis;
DROP TABLE oauth_clients;
