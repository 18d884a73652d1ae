-- +goose Up

-- Organisations (tenants) and who may see which patient. Rows from before
-- organisations existed belong to the default organisation.
CREATE TABLE organisations (
	id              text PRIMARY KEY,
	name            text NOT NULL,
	privacy_officer text NOT NULL DEFAULT '',
	created         bigint NOT NULL
);
INSERT INTO organisations(id, name, created) VALUES ('default', 'Default organisation', 0);

ALTER TABLE patients ADD COLUMN org text NOT NULL DEFAULT 'default';
ALTER TABLE devices ADD COLUMN org text NOT NULL DEFAULT 'default';
ALTER TABLE users ADD COLUMN org text NOT NULL DEFAULT 'default';
ALTER TABLE users ADD COLUMN patient text NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN org text NOT NULL DEFAULT 'default';
CREATE INDEX patients_org ON patients(org, id);
CREATE INDEX devices_org ON devices(org, id);
CREATE INDEX devices_patient ON devices(patient_id);
CREATE INDEX users_org ON users(org, id);

CREATE TABLE care_teams (
	id      text PRIMARY KEY,
	org     text NOT NULL,
	name    text NOT NULL,
	created bigint NOT NULL
);
CREATE INDEX care_teams_org ON care_teams(org, id);
CREATE TABLE care_team_members (
	team text NOT NULL REFERENCES care_teams(id) ON DELETE CASCADE,
	user_id text NOT NULL,
	PRIMARY KEY (team, user_id)
);
CREATE INDEX care_team_members_user ON care_team_members(user_id);
CREATE TABLE care_team_patients (
	team    text NOT NULL REFERENCES care_teams(id) ON DELETE CASCADE,
	patient text NOT NULL,
	PRIMARY KEY (team, patient)
);

-- Times are unix nanoseconds; end_ns and revoked_ns 0 mean none.
CREATE TABLE consents (
	id         text PRIMARY KEY,
	org        text NOT NULL,
	patient    text NOT NULL,
	grantee    text NOT NULL,
	scope      text NOT NULL,
	start_ns   bigint NOT NULL,
	end_ns     bigint NOT NULL DEFAULT 0,
	revoked_ns bigint NOT NULL DEFAULT 0,
	created    bigint NOT NULL
);
CREATE INDEX consents_grantee ON consents(grantee);
CREATE INDEX consents_org_patient ON consents(org, patient);

CREATE TABLE break_glass (
	id         text PRIMARY KEY,
	org        text NOT NULL,
	user_id    text NOT NULL,
	patient    text NOT NULL,
	reason     text NOT NULL,
	start_ns   bigint NOT NULL,
	expires_ns bigint NOT NULL
);
CREATE INDEX break_glass_user ON break_glass(user_id, expires_ns);
CREATE INDEX break_glass_org ON break_glass(org, start_ns);

-- +goose Down
DROP TABLE break_glass;
DROP TABLE consents;
DROP TABLE care_team_patients;
DROP TABLE care_team_members;
DROP TABLE care_teams;
DROP INDEX users_org;
DROP INDEX devices_patient;
DROP INDEX devices_org;
DROP INDEX patients_org;
ALTER TABLE tokens DROP COLUMN org;
ALTER TABLE users DROP COLUMN patient;
ALTER TABLE users DROP COLUMN org;
ALTER TABLE devices DROP COLUMN org;
ALTER TABLE patients DROP COLUMN org;
DROP TABLE organisations;
