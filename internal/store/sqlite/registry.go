package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// CreatePatient inserts p and sets its Version (1) and Updated.
func (s *Store) CreatePatient(ctx context.Context, p *store.Patient) error {
	if p == nil || p.ID == "" {
		return errors.New("sqlite: create patient: id is required")
	}
	now := s.now().UTC()
	err := s.withTx(ctx, "create patient", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO patients(id, org, resource, version, updated) VALUES (?, ?, ?, 1, ?) ON CONFLICT(id) DO NOTHING`,
			p.ID, store.OrgOrDefault(p.Org), p.Resource, toNanos(now))
		if err != nil {
			return fmt.Errorf("sqlite: create patient: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("sqlite: create patient %q: %w", p.ID, store.ErrConflict)
		}
		return putIdentifiers(ctx, tx, "patient", p.ID, p.Identifiers)
	})
	if err != nil {
		return err
	}
	p.Version, p.Updated, p.Org = 1, now, store.OrgOrDefault(p.Org)
	return nil
}

// UpdatePatient replaces p's resource and identifiers and bumps its Version.
func (s *Store) UpdatePatient(ctx context.Context, p *store.Patient) error {
	if p == nil || p.ID == "" {
		return errors.New("sqlite: update patient: id is required")
	}
	now := s.now().UTC()
	var version int
	err := s.withTx(ctx, "update patient", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE patients SET resource = ?, version = version + 1, updated = ? WHERE id = ? RETURNING version, org`,
			p.Resource, toNanos(now), p.ID).Scan(&version, &p.Org)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: update patient %q: %w", p.ID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: update patient: %w", err)
		}
		return putIdentifiers(ctx, tx, "patient", p.ID, p.Identifiers)
	})
	if err != nil {
		return err
	}
	p.Version, p.Updated = version, now
	return nil
}

// Patient returns the patient with the given id.
func (s *Store) Patient(ctx context.Context, id string) (store.Patient, error) {
	var p store.Patient
	var updated int64
	err := s.r.QueryRowContext(ctx, `SELECT id, org, resource, version, updated FROM patients WHERE id = ?`, id).
		Scan(&p.ID, &p.Org, &p.Resource, &p.Version, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Patient{}, fmt.Errorf("sqlite: patient %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Patient{}, fmt.Errorf("sqlite: patient: %w", err)
	}
	p.Updated = fromNanos(updated)
	if p.Identifiers, err = s.identifiers(ctx, "patient", id); err != nil {
		return store.Patient{}, err
	}
	return p, nil
}

// Patients lists patients ordered by id, optionally only those carrying
// ident, and returns the total matching count ignoring limit and offset.
func (s *Store) Patients(ctx context.Context, ident *store.Identifier, limit, offset int) ([]store.Patient, int, error) {
	where, args := "", []any{}
	if ident != nil {
		where = ` WHERE EXISTS (SELECT 1 FROM patient_identifiers i WHERE i.patient = p.id AND i.value = ?`
		args = append(args, ident.Value)
		if ident.System != "" {
			where += ` AND i.system = ?`
			args = append(args, ident.System)
		}
		where += `)`
	}
	var total int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM patients p`+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("sqlite: count patients: %w", err)
	}
	lo, loArgs := limitOffset(limit, offset)
	rows, err := s.r.QueryContext(ctx, `SELECT id, org, resource, version, updated FROM patients p`+where+` ORDER BY id`+lo, append(args, loArgs...)...)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: list patients: %w", err)
	}
	var out []store.Patient
	for rows.Next() {
		var p store.Patient
		var updated int64
		if err := rows.Scan(&p.ID, &p.Org, &p.Resource, &p.Version, &updated); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("sqlite: list patients: %w", err)
		}
		p.Updated = fromNanos(updated)
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("sqlite: list patients: %w", err)
	}
	for i := range out {
		if out[i].Identifiers, err = s.identifiers(ctx, "patient", out[i].ID); err != nil {
			return nil, 0, err
		}
	}
	return out, total, nil
}

// identifier tables are named after their owner kind; kind is never user input.
func putIdentifiers(ctx context.Context, tx *sql.Tx, kind, owner string, ids []store.Identifier) error {
	table := kind + "_identifiers"
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE `+kind+` = ?`, owner); err != nil {
		return fmt.Errorf("sqlite: replace %s identifiers: %w", kind, err)
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+`(`+kind+`, system, value) VALUES (?, ?, ?)`, owner, id.System, id.Value); err != nil {
			return fmt.Errorf("sqlite: insert %s identifier: %w", kind, err)
		}
	}
	return nil
}

func (s *Store) identifiers(ctx context.Context, kind, owner string) ([]store.Identifier, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT system, value FROM `+kind+`_identifiers WHERE `+kind+` = ? ORDER BY rowid`, owner)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s identifiers: %w", kind, err)
	}
	defer rows.Close()
	var out []store.Identifier
	for rows.Next() {
		var id store.Identifier
		if err := rows.Scan(&id.System, &id.Value); err != nil {
			return nil, fmt.Errorf("sqlite: %s identifiers: %w", kind, err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s identifiers: %w", kind, err)
	}
	return out, nil
}

// CreateDevice inserts d and, when d.Patient is set, opens a binding at at.
func (s *Store) CreateDevice(ctx context.Context, d *store.Device, at time.Time) error {
	if d == nil || d.ID == "" {
		return errors.New("sqlite: create device: id is required")
	}
	if !representable(at) {
		return errors.New("sqlite: create device: binding time out of range")
	}
	now := s.now().UTC()
	err := s.withTx(ctx, "create device", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO devices(id, org, patient, resource, version, updated) VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(id) DO NOTHING`,
			d.ID, store.OrgOrDefault(d.Org), d.Patient, d.Resource, toNanos(now))
		if err != nil {
			return fmt.Errorf("sqlite: create device: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("sqlite: create device %q: %w", d.ID, store.ErrConflict)
		}
		if err := putIdentifiers(ctx, tx, "device", d.ID, d.Identifiers); err != nil {
			return err
		}
		return rebind(ctx, tx, d.ID, d.Patient, at)
	})
	if err != nil {
		return err
	}
	d.Version, d.Updated, d.Org = 1, now, store.OrgOrDefault(d.Org)
	return nil
}

// UpdateDevice replaces d and, when its patient changed, closes the open
// binding at at and opens the new one there, in the same transaction.
func (s *Store) UpdateDevice(ctx context.Context, d *store.Device, at time.Time) error {
	if d == nil || d.ID == "" {
		return errors.New("sqlite: update device: id is required")
	}
	if !representable(at) {
		return errors.New("sqlite: update device: binding time out of range")
	}
	now := s.now().UTC()
	var version int
	err := s.withTx(ctx, "update device", func(tx *sql.Tx) error {
		var current string
		err := tx.QueryRowContext(ctx, `SELECT patient FROM devices WHERE id = ?`, d.ID).Scan(&current)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: update device %q: %w", d.ID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: update device: %w", err)
		}
		if err := tx.QueryRowContext(ctx, `UPDATE devices SET patient = ?, resource = ?, version = version + 1, updated = ? WHERE id = ? RETURNING version, org`,
			d.Patient, d.Resource, toNanos(now), d.ID).Scan(&version, &d.Org); err != nil {
			return fmt.Errorf("sqlite: update device: %w", err)
		}
		if err := putIdentifiers(ctx, tx, "device", d.ID, d.Identifiers); err != nil {
			return err
		}
		if current == d.Patient {
			return nil
		}
		return rebind(ctx, tx, d.ID, d.Patient, at)
	})
	if err != nil {
		return err
	}
	d.Version, d.Updated = version, now
	return nil
}

// rebind closes the device's open binding at at and opens one to patient
// (unless patient is empty). Binding history is append-only: a change may
// not predate the latest recorded boundary, so the attribution of readings
// already taken never changes (ErrConflict otherwise).
func rebind(ctx context.Context, tx *sql.Tx, device, patient string, at time.Time) error {
	atNs := at.UnixNano()
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(MAX(from_ns), MAX(COALESCE(to_ns, from_ns))) FROM bindings WHERE device = ?`, device).Scan(&last); err != nil {
		return fmt.Errorf("sqlite: read binding history: %w", err)
	}
	if last.Valid && atNs < last.Int64 {
		return fmt.Errorf("sqlite: binding change for device %q at %s precedes its binding history (%s): %w",
			device, at.UTC().Format(time.RFC3339Nano), fromNanos(last.Int64).Format(time.RFC3339Nano), store.ErrConflict)
	}
	var openID, openFrom int64
	err := tx.QueryRowContext(ctx, `SELECT id, from_ns FROM bindings WHERE device = ? AND to_ns IS NULL`, device).Scan(&openID, &openFrom)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("sqlite: read open binding: %w", err)
	case atNs == openFrom:
		// An interval [at, at) is empty; keep no trace of it.
		if _, err := tx.ExecContext(ctx, `DELETE FROM bindings WHERE id = ?`, openID); err != nil {
			return fmt.Errorf("sqlite: drop empty binding: %w", err)
		}
	default:
		if _, err := tx.ExecContext(ctx, `UPDATE bindings SET to_ns = ? WHERE id = ?`, atNs, openID); err != nil {
			return fmt.Errorf("sqlite: close binding: %w", err)
		}
	}
	if patient == "" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO bindings(device, patient, from_ns) VALUES (?, ?, ?)`, device, patient, atNs); err != nil {
		return fmt.Errorf("sqlite: open binding: %w", err)
	}
	return nil
}

// Device returns the device with the given id.
func (s *Store) Device(ctx context.Context, id string) (store.Device, error) {
	var d store.Device
	var updated int64
	err := s.r.QueryRowContext(ctx, `SELECT id, org, patient, resource, version, updated FROM devices WHERE id = ?`, id).
		Scan(&d.ID, &d.Org, &d.Patient, &d.Resource, &d.Version, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Device{}, fmt.Errorf("sqlite: device %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("sqlite: device: %w", err)
	}
	d.Updated = fromNanos(updated)
	if d.Identifiers, err = s.identifiers(ctx, "device", id); err != nil {
		return store.Device{}, err
	}
	return d, nil
}

// DeviceByIdentifier returns the device carrying ident.
func (s *Store) DeviceByIdentifier(ctx context.Context, ident store.Identifier) (store.Device, error) {
	q, args := `SELECT device FROM device_identifiers WHERE value = ?`, []any{ident.Value}
	if ident.System != "" {
		q += ` AND system = ?`
		args = append(args, ident.System)
	}
	var id string
	err := s.r.QueryRowContext(ctx, q+` ORDER BY device LIMIT 1`, args...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Device{}, fmt.Errorf("sqlite: device with identifier %q: %w", ident.Value, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("sqlite: device by identifier: %w", err)
	}
	return s.Device(ctx, id)
}

// Bindings returns the device's binding history, oldest first.
func (s *Store) Bindings(ctx context.Context, device string) ([]store.Binding, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT device, patient, from_ns, to_ns FROM bindings WHERE device = ? ORDER BY from_ns, id`, device)
	if err != nil {
		return nil, fmt.Errorf("sqlite: bindings: %w", err)
	}
	defer rows.Close()
	var out []store.Binding
	for rows.Next() {
		var b store.Binding
		var from int64
		var to sql.NullInt64
		if err := rows.Scan(&b.Device, &b.Patient, &from, &to); err != nil {
			return nil, fmt.Errorf("sqlite: bindings: %w", err)
		}
		b.From = time.Unix(0, from).UTC()
		if to.Valid {
			b.To = time.Unix(0, to.Int64).UTC()
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: bindings: %w", err)
	}
	return out, nil
}

// PatientAt returns the patient the device was bound to at t, or "".
func (s *Store) PatientAt(ctx context.Context, device string, t time.Time) (string, error) {
	if !representable(t) {
		return "", nil
	}
	ns := t.UnixNano()
	var patient string
	err := s.r.QueryRowContext(ctx, `SELECT patient FROM bindings WHERE device = ? AND from_ns <= ? AND (to_ns IS NULL OR to_ns > ?) ORDER BY from_ns DESC LIMIT 1`,
		device, ns, ns).Scan(&patient)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: patient at: %w", err)
	}
	return patient, nil
}

// SetDeviceSecret replaces the device's credential hash.
func (s *Store) SetDeviceSecret(ctx context.Context, device string, hash []byte) error {
	if len(hash) == 0 {
		return errors.New("sqlite: set device secret: empty hash")
	}
	now := s.now().UTC()
	return s.withTx(ctx, "set device secret", func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = ?`, device).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: set device secret %q: %w", device, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: set device secret: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO device_secrets(device, hash, updated) VALUES (?, ?, ?)
			ON CONFLICT(device) DO UPDATE SET hash = excluded.hash, updated = excluded.updated`, device, hash, toNanos(now)); err != nil {
			return fmt.Errorf("sqlite: set device secret: %w", err)
		}
		return nil
	})
}

// DeviceSecret returns the device's credential hash.
func (s *Store) DeviceSecret(ctx context.Context, device string) ([]byte, error) {
	var hash []byte
	err := s.r.QueryRowContext(ctx, `SELECT hash FROM device_secrets WHERE device = ?`, device).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: device secret %q: %w", device, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: device secret: %w", err)
	}
	return hash, nil
}

// PutToken stores a new API token hash; an existing hash is ErrConflict.
func (s *Store) PutToken(ctx context.Context, t store.Token) error {
	if len(t.Hash) == 0 {
		return errors.New("sqlite: put token: empty hash")
	}
	created := t.Created
	if created.IsZero() {
		created = s.now()
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO tokens(hash, role, subject, org, created, expires, scopes, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(hash) DO NOTHING`,
		t.Hash, string(t.Role), t.Subject, store.OrgOrDefault(t.Org), toNanos(created), toNanos(t.Expires), tokenScopes(t.Scopes), t.Client)
	if err != nil {
		return fmt.Errorf("sqlite: put token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: put token: %w", store.ErrConflict)
	}
	return nil
}

// TokenByHash looks a token up by its hash.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	var t store.Token
	var role string
	var created, expires int64
	var scopes sql.NullString
	err := s.r.QueryRowContext(ctx, `SELECT hash, role, subject, org, created, expires, scopes, client FROM tokens WHERE hash = ?`, hash).
		Scan(&t.Hash, &role, &t.Subject, &t.Org, &created, &expires, &scopes, &t.Client)
	if errors.Is(err, sql.ErrNoRows) {
		// The hash is a credential derivative: keep it out of the error.
		return store.Token{}, fmt.Errorf("sqlite: token: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("sqlite: token: %w", err)
	}
	t.Role, t.Created = store.Role(role), fromNanos(created)
	t.Expires, t.Scopes = fromNanos(expires), scanTokenScopes(scopes)
	return t, nil
}

// CreateUser inserts a user; an existing id is ErrConflict.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	if u.ID == "" {
		return errors.New("sqlite: create user: id is required")
	}
	created := u.Created
	if created.IsZero() {
		created = s.now()
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO users(id, name, role, org, patient, password_hash, created) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		u.ID, u.Name, string(u.Role), store.OrgOrDefault(u.Org), u.Patient, u.PasswordHash, toNanos(created))
	if err != nil {
		return fmt.Errorf("sqlite: create user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: create user %q: %w", u.ID, store.ErrConflict)
	}
	return nil
}

// User returns the user with the given id (the sign-in name). It is not yet
// part of store.Store; it is here for the sign-in flow, which needs it.
func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	var u store.User
	var role string
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT id, name, role, org, patient, password_hash, created FROM users WHERE id = ?`, id).
		Scan(&u.ID, &u.Name, &role, &u.Org, &u.Patient, &u.PasswordHash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, fmt.Errorf("sqlite: user: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("sqlite: user: %w", err)
	}
	u.Role, u.Created = store.Role(role), fromNanos(created)
	return u, nil
}

// CountUsers counts users with the role ("" counts all).
func (s *Store) CountUsers(ctx context.Context, role store.Role) (int, error) {
	return s.countByRole(ctx, "users", role)
}

// CountTokens counts tokens with the role ("" counts all).
func (s *Store) CountTokens(ctx context.Context, role store.Role) (int, error) {
	return s.countByRole(ctx, "tokens", role)
}

func (s *Store) countByRole(ctx context.Context, table string, role store.Role) (int, error) {
	q, args := `SELECT COUNT(*) FROM `+table, []any{}
	if role != "" {
		q += ` WHERE role = ?`
		args = append(args, string(role))
	}
	var n int
	if err := s.r.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count %s: %w", table, err)
	}
	return n, nil
}

// AddDeadLetter stores a rejected payload and sets d.ID.
func (s *Store) AddDeadLetter(ctx context.Context, d *store.DeadLetter) error {
	if d == nil {
		return errors.New("sqlite: add dead letter: nil")
	}
	received := d.Received
	if received.IsZero() {
		received = s.now()
	}
	var replayed any
	if !d.Replayed.IsZero() {
		replayed = toNanos(d.Replayed)
	}
	var id int64
	err := s.w.QueryRowContext(ctx, `INSERT INTO dead_letters(received, source, device, content_type, payload, reason, replayed)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		toNanos(received), d.Source, d.Device, d.ContentType, d.Payload, d.Reason, replayed).Scan(&id)
	if err != nil {
		return fmt.Errorf("sqlite: add dead letter: %w", err)
	}
	d.ID, d.Received = id, received.UTC()
	return nil
}

const deadLetterCols = `id, received, source, device, content_type, payload, reason, replayed`

func scanDeadLetter(sc interface{ Scan(...any) error }) (store.DeadLetter, error) {
	var d store.DeadLetter
	var received int64
	var replayed sql.NullInt64
	if err := sc.Scan(&d.ID, &received, &d.Source, &d.Device, &d.ContentType, &d.Payload, &d.Reason, &replayed); err != nil {
		return store.DeadLetter{}, err
	}
	d.Received, d.Replayed = fromNanos(received), nullNanos(replayed)
	return d, nil
}

// DeadLetters lists dead letters newest first; beforeID > 0 pages past it.
func (s *Store) DeadLetters(ctx context.Context, limit int, beforeID int64) ([]store.DeadLetter, error) {
	q, args := `SELECT `+deadLetterCols+` FROM dead_letters`, []any{}
	if beforeID > 0 {
		q += ` WHERE id < ?`
		args = append(args, beforeID)
	}
	lo, loArgs := limitOffset(limit, 0)
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY id DESC`+lo, append(args, loArgs...)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: dead letters: %w", err)
	}
	defer rows.Close()
	var out []store.DeadLetter
	for rows.Next() {
		d, err := scanDeadLetter(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: dead letters: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: dead letters: %w", err)
	}
	return out, nil
}

// DeadLetter returns one dead letter.
func (s *Store) DeadLetter(ctx context.Context, id int64) (store.DeadLetter, error) {
	d, err := scanDeadLetter(s.r.QueryRowContext(ctx, `SELECT `+deadLetterCols+` FROM dead_letters WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.DeadLetter{}, fmt.Errorf("sqlite: dead letter %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.DeadLetter{}, fmt.Errorf("sqlite: dead letter: %w", err)
	}
	return d, nil
}

// MarkReplayed records that the dead letter was replayed successfully at at.
func (s *Store) MarkReplayed(ctx context.Context, id int64, at time.Time) error {
	if at.IsZero() {
		at = s.now()
	}
	res, err := s.w.ExecContext(ctx, `UPDATE dead_letters SET replayed = ? WHERE id = ?`, toNanos(at), id)
	if err != nil {
		return fmt.Errorf("sqlite: mark replayed: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: mark replayed %d: %w", id, store.ErrNotFound)
	}
	return nil
}
