package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// CreateOrg inserts an organisation; an existing id is ErrConflict.
func (s *Store) CreateOrg(ctx context.Context, o store.Organisation) error {
	if o.ID == "" {
		return errors.New("sqlite: create organisation: id is required")
	}
	created := o.Created
	if created.IsZero() {
		created = s.now()
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO organisations(id, name, privacy_officer, created) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		o.ID, o.Name, o.PrivacyOfficer, toNanos(created))
	if err != nil {
		return fmt.Errorf("sqlite: create organisation: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: create organisation %q: %w", o.ID, store.ErrConflict)
	}
	return nil
}

// Org returns one organisation.
func (s *Store) Org(ctx context.Context, id string) (store.Organisation, error) {
	var o store.Organisation
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT id, name, privacy_officer, created FROM organisations WHERE id = ?`, id).
		Scan(&o.ID, &o.Name, &o.PrivacyOfficer, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Organisation{}, fmt.Errorf("sqlite: organisation %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Organisation{}, fmt.Errorf("sqlite: organisation: %w", err)
	}
	o.Created = fromNanos(created)
	return o, nil
}

// Orgs lists every organisation by id.
func (s *Store) Orgs(ctx context.Context) ([]store.Organisation, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, name, privacy_officer, created FROM organisations ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: organisations: %w", err)
	}
	defer rows.Close()
	var out []store.Organisation
	for rows.Next() {
		var o store.Organisation
		var created int64
		if err := rows.Scan(&o.ID, &o.Name, &o.PrivacyOfficer, &created); err != nil {
			return nil, fmt.Errorf("sqlite: organisations: %w", err)
		}
		o.Created = fromNanos(created)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: organisations: %w", err)
	}
	return out, nil
}

// OrgUsers lists an organisation's users by id.
func (s *Store) OrgUsers(ctx context.Context, org string) ([]store.User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, name, role, org, patient, password_hash, created FROM users WHERE org = ? ORDER BY id`, org)
	if err != nil {
		return nil, fmt.Errorf("sqlite: users: %w", err)
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		var u store.User
		var role string
		var created int64
		if err := rows.Scan(&u.ID, &u.Name, &role, &u.Org, &u.Patient, &u.PasswordHash, &created); err != nil {
			return nil, fmt.Errorf("sqlite: users: %w", err)
		}
		u.Role, u.Created = store.Role(role), fromNanos(created)
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: users: %w", err)
	}
	return out, nil
}

// CreateCareTeam inserts a care team (without members or patients).
func (s *Store) CreateCareTeam(ctx context.Context, t store.CareTeam) error {
	if t.ID == "" || t.Org == "" {
		return errors.New("sqlite: create care team: id and org are required")
	}
	created := t.Created
	if created.IsZero() {
		created = s.now()
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO care_teams(id, org, name, created) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		t.ID, t.Org, t.Name, toNanos(created))
	if err != nil {
		return fmt.Errorf("sqlite: create care team: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: create care team %q: %w", t.ID, store.ErrConflict)
	}
	return nil
}

// CareTeam returns a care team with its members and patients.
func (s *Store) CareTeam(ctx context.Context, id string) (store.CareTeam, error) {
	var t store.CareTeam
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT id, org, name, created FROM care_teams WHERE id = ?`, id).Scan(&t.ID, &t.Org, &t.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.CareTeam{}, fmt.Errorf("sqlite: care team %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.CareTeam{}, fmt.Errorf("sqlite: care team: %w", err)
	}
	t.Created = fromNanos(created)
	if t.Members, err = s.strings(ctx, `SELECT user_id FROM care_team_members WHERE team = ? ORDER BY user_id`, id); err != nil {
		return store.CareTeam{}, err
	}
	if t.Patients, err = s.strings(ctx, `SELECT patient FROM care_team_patients WHERE team = ? ORDER BY patient`, id); err != nil {
		return store.CareTeam{}, err
	}
	return t, nil
}

// CareTeams lists an organisation's care teams by id.
func (s *Store) CareTeams(ctx context.Context, org string) ([]store.CareTeam, error) {
	ids, err := s.strings(ctx, `SELECT id FROM care_teams WHERE org = ? ORDER BY id`, org)
	if err != nil {
		return nil, err
	}
	out := make([]store.CareTeam, 0, len(ids))
	for _, id := range ids {
		t, err := s.CareTeam(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// SetCareTeamMember adds or removes a member.
func (s *Store) SetCareTeamMember(ctx context.Context, team, user string, in bool) error {
	return s.setTeamRow(ctx, "care_team_members", "user_id", team, user, in)
}

// SetCareTeamPatient adds or removes a patient.
func (s *Store) SetCareTeamPatient(ctx context.Context, team, patient string, in bool) error {
	return s.setTeamRow(ctx, "care_team_patients", "patient", team, patient, in)
}

// setTeamRow: table and col are constants of this file, never user input.
func (s *Store) setTeamRow(ctx context.Context, table, col, team, value string, in bool) error {
	return s.withTx(ctx, "set care team "+col, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM care_teams WHERE id = ?`, team).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: care team %q: %w", team, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: care team: %w", err)
		}
		q := `INSERT INTO ` + table + `(team, ` + col + `) VALUES (?, ?) ON CONFLICT DO NOTHING`
		if !in {
			q = `DELETE FROM ` + table + ` WHERE team = ? AND ` + col + ` = ?`
		}
		if _, err := tx.ExecContext(ctx, q, team, value); err != nil {
			return fmt.Errorf("sqlite: set care team %s: %w", col, err)
		}
		return nil
	})
}

// TeamPatients returns the patients of the user's care teams.
func (s *Store) TeamPatients(ctx context.Context, user string) ([]string, error) {
	return s.strings(ctx, `SELECT DISTINCT p.patient FROM care_team_members m JOIN care_team_patients p ON p.team = m.team
		WHERE m.user_id = ? ORDER BY p.patient`, user)
}

func (s *Store) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("sqlite: list: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list: %w", err)
	}
	return out, nil
}

// CreateConsent inserts a consent.
func (s *Store) CreateConsent(ctx context.Context, c store.Consent) error {
	if c.ID == "" || c.Org == "" || c.Patient == "" || c.Grantee == "" {
		return errors.New("sqlite: create consent: id, org, patient and grantee are required")
	}
	created := c.Created
	if created.IsZero() {
		created = s.now()
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO consents(id, org, patient, grantee, scope, start_ns, end_ns, revoked_ns, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		c.ID, c.Org, c.Patient, c.Grantee, c.Scope, toNanos(c.Start), toNanos(c.End), toNanos(c.Revoked), toNanos(created))
	if err != nil {
		return fmt.Errorf("sqlite: create consent: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: create consent %q: %w", c.ID, store.ErrConflict)
	}
	return nil
}

const consentCols = `id, org, patient, grantee, scope, start_ns, end_ns, revoked_ns, created`

func scanConsent(sc interface{ Scan(...any) error }) (store.Consent, error) {
	var c store.Consent
	var start, end, revoked, created int64
	if err := sc.Scan(&c.ID, &c.Org, &c.Patient, &c.Grantee, &c.Scope, &start, &end, &revoked, &created); err != nil {
		return store.Consent{}, err
	}
	c.Start, c.End, c.Revoked, c.Created = fromNanos(start), fromNanos(end), fromNanos(revoked), fromNanos(created)
	return c, nil
}

// Consent returns one consent.
func (s *Store) Consent(ctx context.Context, id string) (store.Consent, error) {
	c, err := scanConsent(s.r.QueryRowContext(ctx, `SELECT `+consentCols+` FROM consents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Consent{}, fmt.Errorf("sqlite: consent %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Consent{}, fmt.Errorf("sqlite: consent: %w", err)
	}
	return c, nil
}

// Consents lists an organisation's consents, newest first.
func (s *Store) Consents(ctx context.Context, org, patient string) ([]store.Consent, error) {
	q, args := `SELECT `+consentCols+` FROM consents WHERE org = ?`, []any{org}
	if patient != "" {
		q += ` AND patient = ?`
		args = append(args, patient)
	}
	return s.consents(ctx, q+` ORDER BY created DESC, id`, args...)
}

// ActiveConsents returns the grantee's consents in force at t.
func (s *Store) ActiveConsents(ctx context.Context, grantee string, t time.Time) ([]store.Consent, error) {
	ns := toNanos(t)
	return s.consents(ctx, `SELECT `+consentCols+` FROM consents WHERE grantee = ? AND start_ns <= ?
		AND (end_ns = 0 OR end_ns > ?) AND (revoked_ns = 0 OR revoked_ns > ?) ORDER BY patient, id`, grantee, ns, ns, ns)
}

func (s *Store) consents(ctx context.Context, q string, args ...any) ([]store.Consent, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: consents: %w", err)
	}
	defer rows.Close()
	var out []store.Consent
	for rows.Next() {
		c, err := scanConsent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: consents: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: consents: %w", err)
	}
	return out, nil
}

// RevokeConsent ends a consent at at; the first revocation stands.
func (s *Store) RevokeConsent(ctx context.Context, id string, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE consents SET revoked_ns = CASE WHEN revoked_ns = 0 THEN ? ELSE revoked_ns END WHERE id = ?`, toNanos(at), id)
	if err != nil {
		return fmt.Errorf("sqlite: revoke consent: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: revoke consent %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// CreateBreakGlass inserts a break-glass grant.
func (s *Store) CreateBreakGlass(ctx context.Context, g store.BreakGlass) error {
	if g.ID == "" || g.Org == "" || g.User == "" || g.Patient == "" || g.Reason == "" {
		return errors.New("sqlite: create break-glass grant: id, org, user, patient and reason are required")
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO break_glass(id, org, user_id, patient, reason, start_ns, expires_ns) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		g.ID, g.Org, g.User, g.Patient, g.Reason, toNanos(g.Start), toNanos(g.Expires))
	if err != nil {
		return fmt.Errorf("sqlite: create break-glass grant: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: create break-glass grant %q: %w", g.ID, store.ErrConflict)
	}
	return nil
}

const breakGlassCols = `id, org, user_id, patient, reason, start_ns, expires_ns`

// BreakGlassGrants lists an organisation's grants, newest first.
func (s *Store) BreakGlassGrants(ctx context.Context, org string, limit int) ([]store.BreakGlass, error) {
	lo, loArgs := limitOffset(limit, 0)
	return s.breakGlass(ctx, `SELECT `+breakGlassCols+` FROM break_glass WHERE org = ? ORDER BY start_ns DESC, id`+lo, append([]any{org}, loArgs...)...)
}

// ActiveBreakGlass returns the user's grants in force at t.
func (s *Store) ActiveBreakGlass(ctx context.Context, user string, t time.Time) ([]store.BreakGlass, error) {
	ns := toNanos(t)
	return s.breakGlass(ctx, `SELECT `+breakGlassCols+` FROM break_glass WHERE user_id = ? AND expires_ns > ? AND start_ns <= ? ORDER BY patient, id`, user, ns, ns)
}

func (s *Store) breakGlass(ctx context.Context, q string, args ...any) ([]store.BreakGlass, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: break-glass grants: %w", err)
	}
	defer rows.Close()
	var out []store.BreakGlass
	for rows.Next() {
		var g store.BreakGlass
		var start, expires int64
		if err := rows.Scan(&g.ID, &g.Org, &g.User, &g.Patient, &g.Reason, &start, &expires); err != nil {
			return nil, fmt.Errorf("sqlite: break-glass grants: %w", err)
		}
		g.Start, g.Expires = fromNanos(start), fromNanos(expires)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: break-glass grants: %w", err)
	}
	return out, nil
}

// restrictWhere builds the org and id-set conditions shared by both searches.
func restrictWhere(org string, restrict bool, ids []string, idCol string) (string, []any) {
	where, args := ` WHERE org = ?`, []any{org}
	if restrict {
		if len(ids) == 0 {
			return where + ` AND 0`, args
		}
		where += ` AND ` + idCol + ` IN (?` + strings.Repeat(`, ?`, len(ids)-1) + `)`
		for _, id := range ids {
			args = append(args, id)
		}
	}
	return where, args
}

// SearchPatients lists the patients f selects, never crossing organisations.
func (s *Store) SearchPatients(ctx context.Context, f store.PatientFilter) ([]store.Patient, int, error) {
	if f.Org == "" {
		return nil, 0, errors.New("sqlite: search patients: org is required")
	}
	where, args := restrictWhere(f.Org, f.Restrict, f.IDs, "p.id")
	if f.Identifier != nil {
		where += ` AND EXISTS (SELECT 1 FROM patient_identifiers i WHERE i.patient = p.id AND i.value = ?`
		args = append(args, f.Identifier.Value)
		if f.Identifier.System != "" {
			where += ` AND i.system = ?`
			args = append(args, f.Identifier.System)
		}
		where += `)`
	}
	var total int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM patients p`+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("sqlite: count patients: %w", err)
	}
	lo, loArgs := limitOffset(f.Limit, f.Offset)
	ids, err := s.strings(ctx, `SELECT id FROM patients p`+where+` ORDER BY id`+lo, append(args, loArgs...)...)
	if err != nil {
		return nil, 0, err
	}
	out := make([]store.Patient, 0, len(ids))
	for _, id := range ids {
		p, err := s.Patient(ctx, id)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, p)
	}
	return out, total, nil
}

// SearchDevices lists the devices f selects, never crossing organisations.
func (s *Store) SearchDevices(ctx context.Context, f store.DeviceFilter) ([]store.Device, int, error) {
	if f.Org == "" {
		return nil, 0, errors.New("sqlite: search devices: org is required")
	}
	where, args := restrictWhere(f.Org, f.Restrict, f.IDs, "patient")
	var total int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices`+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("sqlite: count devices: %w", err)
	}
	lo, loArgs := limitOffset(f.Limit, f.Offset)
	ids, err := s.strings(ctx, `SELECT id FROM devices`+where+` ORDER BY id`+lo, append(args, loArgs...)...)
	if err != nil {
		return nil, 0, err
	}
	out := make([]store.Device, 0, len(ids))
	for _, id := range ids {
		d, err := s.Device(ctx, id)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, d)
	}
	return out, total, nil
}
