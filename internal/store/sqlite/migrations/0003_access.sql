-- Organisations (tenants) and who may see which patient. Rows from before
-- organisations existed belong to the default organisation.
CREATE TABLE organisations (
	id              TEXT PRIMARY KEY,
	name            TEXT NOT NULL,
	privacy_officer TEXT NOT NULL DEFAULT '',
	created         INTEGER NOT NULL
);
INSERT INTO organisations(id, name, created) VALUES ('default', 'Default organisation', 0);

ALTER TABLE patients ADD COLUMN org TEXT NOT NULL DEFAULT 'default';
ALTER TABLE devices ADD COLUMN org TEXT NOT NULL DEFAULT 'default';
ALTER TABLE users ADD COLUMN org TEXT NOT NULL DEFAULT 'default';
ALTER TABLE users ADD COLUMN patient TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN org TEXT NOT NULL DEFAULT 'default';
CREATE INDEX patients_org ON patients(org, id);
CREATE INDEX devices_org ON devices(org, id);
CREATE INDEX devices_patient ON devices(patient);
CREATE INDEX users_org ON users(org, id);

CREATE TABLE care_teams (
	id      TEXT PRIMARY KEY,
	org     TEXT NOT NULL,
	name    TEXT NOT NULL,
	created INTEGER NOT NULL
);
CREATE INDEX care_teams_org ON care_teams(org, id);
CREATE TABLE care_team_members (
	team TEXT NOT NULL REFERENCES care_teams(id) ON DELETE CASCADE,
	user_id TEXT NOT NULL,
	PRIMARY KEY (team, user_id)
);
CREATE INDEX care_team_members_user ON care_team_members(user_id);
CREATE TABLE care_team_patients (
	team    TEXT NOT NULL REFERENCES care_teams(id) ON DELETE CASCADE,
	patient TEXT NOT NULL,
	PRIMARY KEY (team, patient)
);

-- Times are unix nanoseconds; end_ns and revoked_ns 0 mean none.
CREATE TABLE consents (
	id         TEXT PRIMARY KEY,
	org        TEXT NOT NULL,
	patient    TEXT NOT NULL,
	grantee    TEXT NOT NULL,
	scope      TEXT NOT NULL,
	start_ns   INTEGER NOT NULL,
	end_ns     INTEGER NOT NULL DEFAULT 0,
	revoked_ns INTEGER NOT NULL DEFAULT 0,
	created    INTEGER NOT NULL
);
CREATE INDEX consents_grantee ON consents(grantee);
CREATE INDEX consents_org_patient ON consents(org, patient);

CREATE TABLE break_glass (
	id         TEXT PRIMARY KEY,
	org        TEXT NOT NULL,
	user_id    TEXT NOT NULL,
	patient    TEXT NOT NULL,
	reason     TEXT NOT NULL,
	start_ns   INTEGER NOT NULL,
	expires_ns INTEGER NOT NULL
);
CREATE INDEX break_glass_user ON break_glass(user_id, expires_ns);
CREATE INDEX break_glass_org ON break_glass(org, start_ns);
