package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/store"
)

// CreateOrg inserts an organisation; an existing id is ErrConflict.
func (s *Store) CreateOrg(ctx context.Context, o store.Organisation) error {
	if o.ID == "" {
		return errors.New("postgres: create organisation: id is required")
	}
	created := o.Created
	if created.IsZero() {
		created = s.now()
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO organisations(id, name, privacy_officer, created) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`,
		o.ID, o.Name, o.PrivacyOfficer, toNanos(created))
	if err != nil {
		return fmt.Errorf("postgres: create organisation: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create organisation %q: %w", o.ID, store.ErrConflict)
	}
	return nil
}

func scanOrg(r pgx.Row) (store.Organisation, error) {
	var o store.Organisation
	var created int64
	err := r.Scan(&o.ID, &o.Name, &o.PrivacyOfficer, &created)
	o.Created = fromNanos(created)
	return o, err
}

// Org returns one organisation.
func (s *Store) Org(ctx context.Context, id string) (store.Organisation, error) {
	o, err := scanOrg(s.pool.QueryRow(ctx, `SELECT id, name, privacy_officer, created FROM organisations WHERE id = $1`, id))
	if isNoRows(err) {
		return store.Organisation{}, fmt.Errorf("postgres: organisation %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Organisation{}, fmt.Errorf("postgres: organisation: %w", err)
	}
	return o, nil
}

// Orgs lists every organisation by id.
func (s *Store) Orgs(ctx context.Context) ([]store.Organisation, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, privacy_officer, created FROM organisations ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: organisations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Organisation, error) { return scanOrg(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: organisations: %w", err)
	}
	return out, nil
}

// OrgUsers lists an organisation's users by id.
func (s *Store) OrgUsers(ctx context.Context, org string) ([]store.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, role, org, patient, password_hash, created FROM users WHERE org = $1 ORDER BY id`, org)
	if err != nil {
		return nil, fmt.Errorf("postgres: users: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.User, error) {
		var u store.User
		var role string
		var created int64
		err := r.Scan(&u.ID, &u.Name, &role, &u.Org, &u.Patient, &u.PasswordHash, &created)
		u.Role, u.Created = store.Role(role), fromNanos(created)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: users: %w", err)
	}
	return out, nil
}

// CreateCareTeam inserts a care team (without members or patients).
func (s *Store) CreateCareTeam(ctx context.Context, t store.CareTeam) error {
	if t.ID == "" || t.Org == "" {
		return errors.New("postgres: create care team: id and org are required")
	}
	created := t.Created
	if created.IsZero() {
		created = s.now()
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO care_teams(id, org, name, created) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`,
		t.ID, t.Org, t.Name, toNanos(created))
	if err != nil {
		return fmt.Errorf("postgres: create care team: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create care team %q: %w", t.ID, store.ErrConflict)
	}
	return nil
}

// CareTeam returns a care team with its members and patients.
func (s *Store) CareTeam(ctx context.Context, id string) (store.CareTeam, error) {
	var t store.CareTeam
	var created int64
	err := s.pool.QueryRow(ctx, `SELECT id, org, name, created FROM care_teams WHERE id = $1`, id).Scan(&t.ID, &t.Org, &t.Name, &created)
	if isNoRows(err) {
		return store.CareTeam{}, fmt.Errorf("postgres: care team %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.CareTeam{}, fmt.Errorf("postgres: care team: %w", err)
	}
	t.Created = fromNanos(created)
	if t.Members, err = s.strings(ctx, `SELECT user_id FROM care_team_members WHERE team = $1 ORDER BY user_id`, id); err != nil {
		return store.CareTeam{}, err
	}
	if t.Patients, err = s.strings(ctx, `SELECT patient FROM care_team_patients WHERE team = $1 ORDER BY patient`, id); err != nil {
		return store.CareTeam{}, err
	}
	return t, nil
}

// CareTeams lists an organisation's care teams by id.
func (s *Store) CareTeams(ctx context.Context, org string) ([]store.CareTeam, error) {
	ids, err := s.strings(ctx, `SELECT id FROM care_teams WHERE org = $1 ORDER BY id`, org)
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
	return s.withTx(ctx, "set care team "+col, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM care_teams WHERE id = $1`, team).Scan(&one)
		if isNoRows(err) {
			return fmt.Errorf("postgres: care team %q: %w", team, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: care team: %w", err)
		}
		q := `INSERT INTO ` + table + `(team, ` + col + `) VALUES ($1, $2) ON CONFLICT DO NOTHING`
		if !in {
			q = `DELETE FROM ` + table + ` WHERE team = $1 AND ` + col + ` = $2`
		}
		if _, err := tx.Exec(ctx, q, team, value); err != nil {
			return fmt.Errorf("postgres: set care team %s: %w", col, err)
		}
		return nil
	})
}

// TeamPatients returns the patients of the user's care teams.
func (s *Store) TeamPatients(ctx context.Context, user string) ([]string, error) {
	return s.strings(ctx, `SELECT DISTINCT p.patient FROM care_team_members m JOIN care_team_patients p ON p.team = m.team
		WHERE m.user_id = $1 ORDER BY p.patient`, user)
}

func (s *Store) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: list: %w", err)
	}
	return out, nil
}

// CreateConsent inserts a consent.
func (s *Store) CreateConsent(ctx context.Context, c store.Consent) error {
	if c.ID == "" || c.Org == "" || c.Patient == "" || c.Grantee == "" {
		return errors.New("postgres: create consent: id, org, patient and grantee are required")
	}
	created := c.Created
	if created.IsZero() {
		created = s.now()
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO consents(id, org, patient, grantee, scope, start_ns, end_ns, revoked_ns, created)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING`,
		c.ID, c.Org, c.Patient, c.Grantee, c.Scope, toNanos(c.Start), toNanos(c.End), toNanos(c.Revoked), toNanos(created))
	if err != nil {
		return fmt.Errorf("postgres: create consent: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create consent %q: %w", c.ID, store.ErrConflict)
	}
	return nil
}

const consentCols = `id, org, patient, grantee, scope, start_ns, end_ns, revoked_ns, created`

func scanConsent(r pgx.Row) (store.Consent, error) {
	var c store.Consent
	var start, end, revoked, created int64
	if err := r.Scan(&c.ID, &c.Org, &c.Patient, &c.Grantee, &c.Scope, &start, &end, &revoked, &created); err != nil {
		return store.Consent{}, err
	}
	c.Start, c.End, c.Revoked, c.Created = fromNanos(start), fromNanos(end), fromNanos(revoked), fromNanos(created)
	return c, nil
}

// Consent returns one consent.
func (s *Store) Consent(ctx context.Context, id string) (store.Consent, error) {
	c, err := scanConsent(s.pool.QueryRow(ctx, `SELECT `+consentCols+` FROM consents WHERE id = $1`, id))
	if isNoRows(err) {
		return store.Consent{}, fmt.Errorf("postgres: consent %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Consent{}, fmt.Errorf("postgres: consent: %w", err)
	}
	return c, nil
}

// Consents lists an organisation's consents, newest first.
func (s *Store) Consents(ctx context.Context, org, patient string) ([]store.Consent, error) {
	return s.consents(ctx, `SELECT `+consentCols+` FROM consents WHERE org = $1 AND ($2 = '' OR patient = $2) ORDER BY created DESC, id`, org, patient)
}

// ActiveConsents returns the grantee's consents in force at t.
func (s *Store) ActiveConsents(ctx context.Context, grantee string, t time.Time) ([]store.Consent, error) {
	return s.consents(ctx, `SELECT `+consentCols+` FROM consents WHERE grantee = $1 AND start_ns <= $2
		AND (end_ns = 0 OR end_ns > $2) AND (revoked_ns = 0 OR revoked_ns > $2) ORDER BY patient, id`, grantee, toNanos(t))
}

func (s *Store) consents(ctx context.Context, q string, args ...any) ([]store.Consent, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: consents: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Consent, error) { return scanConsent(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: consents: %w", err)
	}
	return out, nil
}

// RevokeConsent ends a consent at at; the first revocation stands.
func (s *Store) RevokeConsent(ctx context.Context, id string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE consents SET revoked_ns = CASE WHEN revoked_ns = 0 THEN $1 ELSE revoked_ns END WHERE id = $2`, toNanos(at), id)
	if err != nil {
		return fmt.Errorf("postgres: revoke consent: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: revoke consent %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// CreateBreakGlass inserts a break-glass grant.
func (s *Store) CreateBreakGlass(ctx context.Context, g store.BreakGlass) error {
	if g.ID == "" || g.Org == "" || g.User == "" || g.Patient == "" || g.Reason == "" {
		return errors.New("postgres: create break-glass grant: id, org, user, patient and reason are required")
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO break_glass(id, org, user_id, patient, reason, start_ns, expires_ns) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		g.ID, g.Org, g.User, g.Patient, g.Reason, toNanos(g.Start), toNanos(g.Expires))
	if err != nil {
		return fmt.Errorf("postgres: create break-glass grant: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create break-glass grant %q: %w", g.ID, store.ErrConflict)
	}
	return nil
}

const breakGlassCols = `id, org, user_id, patient, reason, start_ns, expires_ns`

// BreakGlassGrants lists an organisation's grants, newest first.
func (s *Store) BreakGlassGrants(ctx context.Context, org string, limit int) ([]store.BreakGlass, error) {
	lim, _ := limitOffset(limit, 0)
	return s.breakGlass(ctx, `SELECT `+breakGlassCols+` FROM break_glass WHERE org = $1 ORDER BY start_ns DESC, id LIMIT $2::bigint`, org, lim)
}

// ActiveBreakGlass returns the user's grants in force at t.
func (s *Store) ActiveBreakGlass(ctx context.Context, user string, t time.Time) ([]store.BreakGlass, error) {
	return s.breakGlass(ctx, `SELECT `+breakGlassCols+` FROM break_glass WHERE user_id = $1 AND expires_ns > $2 AND start_ns <= $2 ORDER BY patient, id`, user, toNanos(t))
}

func (s *Store) breakGlass(ctx context.Context, q string, args ...any) ([]store.BreakGlass, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: break-glass grants: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.BreakGlass, error) {
		var g store.BreakGlass
		var start, expires int64
		err := r.Scan(&g.ID, &g.Org, &g.User, &g.Patient, &g.Reason, &start, &expires)
		g.Start, g.Expires = fromNanos(start), fromNanos(expires)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: break-glass grants: %w", err)
	}
	return out, nil
}

// restrictWhere builds the org and id-set conditions shared by both searches.
func restrictWhere(a *args, org string, restrict bool, ids []string, idCol string) string {
	where := ` WHERE org = ` + a.add(org)
	if restrict {
		if ids == nil {
			ids = []string{}
		}
		where += ` AND ` + idCol + ` = ANY(` + a.add(ids) + `::text[])`
	}
	return where
}

// SearchPatients lists the patients f selects, never crossing organisations.
func (s *Store) SearchPatients(ctx context.Context, f store.PatientFilter) ([]store.Patient, int, error) {
	if f.Org == "" {
		return nil, 0, errors.New("postgres: search patients: org is required")
	}
	var a args
	where := restrictWhere(&a, f.Org, f.Restrict, f.IDs, "p.id")
	if f.Identifier != nil {
		where += ` AND EXISTS (SELECT 1 FROM patient_identifiers i WHERE i.patient_id = p.id AND i.value = ` + a.add(f.Identifier.Value)
		if f.Identifier.System != "" {
			where += ` AND i.system = ` + a.add(f.Identifier.System)
		}
		where += `)`
	}
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM patients p`+where, a...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("postgres: count patients: %w", err)
	}
	lim, off := limitOffset(f.Limit, f.Offset)
	ids, err := s.strings(ctx, `SELECT id FROM patients p`+where+` ORDER BY id LIMIT `+a.add(lim)+`::bigint OFFSET `+a.add(off)+`::bigint`, a...)
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
		return nil, 0, errors.New("postgres: search devices: org is required")
	}
	var a args
	where := restrictWhere(&a, f.Org, f.Restrict, f.IDs, "patient_id")
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM devices`+where, a...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("postgres: count devices: %w", err)
	}
	lim, off := limitOffset(f.Limit, f.Offset)
	ids, err := s.strings(ctx, `SELECT id FROM devices`+where+` ORDER BY id LIMIT `+a.add(lim)+`::bigint OFFSET `+a.add(off)+`::bigint`, a...)
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
