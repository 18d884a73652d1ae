-- Where a user is told about notices addressed to them (the privacy
-- officer about break-glass access): "email:ADDRESS" or "webhook:ID".
CREATE TABLE user_contacts (
	user_id TEXT PRIMARY KEY,
	contact TEXT NOT NULL
);
-- The purpose of use of an audited access when it is not ordinary care
-- ("BTG": under a break-glass grant); '' for every earlier record.
ALTER TABLE audit_log ADD COLUMN purpose TEXT NOT NULL DEFAULT '';
