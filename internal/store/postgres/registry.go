package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/store"
)

// CreatePatient inserts p and sets its Version (1) and Updated.
func (s *Store) CreatePatient(ctx context.Context, p *store.Patient) error {
	if p == nil || p.ID == "" {
		return errors.New("postgres: create patient: id is required")
	}
	now := s.now().UTC()
	err := s.withTx(ctx, "create patient", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO patients(id, resource, version, updated, org) VALUES ($1, $2, 1, $3, $4) ON CONFLICT (id) DO NOTHING`,
			p.ID, p.Resource, toNanos(now), store.OrgOrDefault(p.Org))
		if err != nil {
			return fmt.Errorf("postgres: create patient: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: create patient %q: %w", p.ID, store.ErrConflict)
		}
		return putIdentifiers(ctx, tx, patientIdentifiers, p.ID, p.Identifiers)
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
		return errors.New("postgres: update patient: id is required")
	}
	now := s.now().UTC()
	var version int
	err := s.withTx(ctx, "update patient", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE patients SET resource = $1, version = version + 1, updated = $2 WHERE id = $3 RETURNING version, org`,
			p.Resource, toNanos(now), p.ID).Scan(&version, &p.Org)
		if isNoRows(err) {
			return fmt.Errorf("postgres: update patient %q: %w", p.ID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: update patient: %w", err)
		}
		return putIdentifiers(ctx, tx, patientIdentifiers, p.ID, p.Identifiers)
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
	err := s.pool.QueryRow(ctx, `SELECT id, org, resource, version, updated FROM patients WHERE id = $1`, id).
		Scan(&p.ID, &p.Org, &p.Resource, &p.Version, &updated)
	if isNoRows(err) {
		return store.Patient{}, fmt.Errorf("postgres: patient %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Patient{}, fmt.Errorf("postgres: patient: %w", err)
	}
	p.Updated = fromNanos(updated)
	ids, err := s.identifiers(ctx, patientIdentifiers, []string{id})
	if err != nil {
		return store.Patient{}, err
	}
	p.Identifiers = ids[id]
	return p, nil
}

// Patients lists patients ordered by id, optionally only those carrying
// ident, and returns the total matching count ignoring limit and offset.
func (s *Store) Patients(ctx context.Context, ident *store.Identifier, limit, offset int) ([]store.Patient, int, error) {
	var a args
	where := ""
	if ident != nil {
		where = ` WHERE EXISTS (SELECT 1 FROM patient_identifiers i WHERE i.patient_id = p.id AND i.value = ` + a.add(ident.Value)
		if ident.System != "" {
			where += ` AND i.system = ` + a.add(ident.System)
		}
		where += `)`
	}
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM patients p`+where, a...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("postgres: count patients: %w", err)
	}
	lim, off := limitOffset(limit, offset)
	query := `SELECT id, org, resource, version, updated FROM patients p` + where + ` ORDER BY id LIMIT ` + a.add(lim) + `::bigint OFFSET ` + a.add(off) + `::bigint`
	rows, err := s.pool.Query(ctx, query, a...)
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: list patients: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Patient, error) {
		var p store.Patient
		var updated int64
		err := r.Scan(&p.ID, &p.Org, &p.Resource, &p.Version, &updated)
		p.Updated = fromNanos(updated)
		return p, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: list patients: %w", err)
	}
	owners := make([]string, len(out))
	for i := range out {
		owners[i] = out[i].ID
	}
	ids, err := s.identifiers(ctx, patientIdentifiers, owners)
	if err != nil {
		return nil, 0, err
	}
	for i := range out {
		out[i].Identifiers = ids[out[i].ID]
	}
	return out, total, nil
}

// identifierTable names an identifier table and its owner column; both are
// constants, never user input.
type identifierTable struct{ table, owner string }

var (
	patientIdentifiers = identifierTable{"patient_identifiers", "patient_id"}
	deviceIdentifiers  = identifierTable{"device_identifiers", "device_id"}
)

func putIdentifiers(ctx context.Context, tx pgx.Tx, it identifierTable, owner string, ids []store.Identifier) error {
	if _, err := tx.Exec(ctx, `DELETE FROM `+it.table+` WHERE `+it.owner+` = $1`, owner); err != nil {
		return fmt.Errorf("postgres: replace %s: %w", it.table, err)
	}
	if len(ids) == 0 {
		return nil
	}
	systems, values := make([]string, len(ids)), make([]string, len(ids))
	for i, id := range ids {
		systems[i], values[i] = id.System, id.Value
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+it.table+`(`+it.owner+`, ord, system, value)
		SELECT $1, x.ord, x.system, x.value FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(system, value, ord)`,
		owner, systems, values); err != nil {
		return fmt.Errorf("postgres: insert %s: %w", it.table, err)
	}
	return nil
}

// identifiers returns the identifiers of the given owners, in the order
// they were written.
func (s *Store) identifiers(ctx context.Context, it identifierTable, owners []string) (map[string][]store.Identifier, error) {
	out := make(map[string][]store.Identifier)
	if len(owners) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+it.owner+`, system, value FROM `+it.table+` WHERE `+it.owner+` = ANY($1) ORDER BY `+it.owner+`, ord`, owners)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", it.table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var owner string
		var id store.Identifier
		if err := rows.Scan(&owner, &id.System, &id.Value); err != nil {
			return nil, fmt.Errorf("postgres: %s: %w", it.table, err)
		}
		out[owner] = append(out[owner], id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", it.table, err)
	}
	return out, nil
}

// CreateDevice inserts d and, when d.Patient is set, opens a binding at at.
func (s *Store) CreateDevice(ctx context.Context, d *store.Device, at time.Time) error {
	if d == nil || d.ID == "" {
		return errors.New("postgres: create device: id is required")
	}
	if !representable(at) {
		return errors.New("postgres: create device: binding time out of range")
	}
	now := s.now().UTC()
	err := s.withTx(ctx, "create device", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO devices(id, patient_id, resource, version, updated, org) VALUES ($1, $2, $3, 1, $4, $5) ON CONFLICT (id) DO NOTHING`,
			d.ID, d.Patient, d.Resource, toNanos(now), store.OrgOrDefault(d.Org))
		if err != nil {
			return fmt.Errorf("postgres: create device: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: create device %q: %w", d.ID, store.ErrConflict)
		}
		if err := putIdentifiers(ctx, tx, deviceIdentifiers, d.ID, d.Identifiers); err != nil {
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
		return errors.New("postgres: update device: id is required")
	}
	if !representable(at) {
		return errors.New("postgres: update device: binding time out of range")
	}
	now := s.now().UTC()
	var version int
	err := s.withTx(ctx, "update device", func(tx pgx.Tx) error {
		// FOR UPDATE serialises concurrent updates of one device, so two
		// rebinds cannot both read the same open binding.
		var current string
		err := tx.QueryRow(ctx, `SELECT patient_id FROM devices WHERE id = $1 FOR UPDATE`, d.ID).Scan(&current)
		if isNoRows(err) {
			return fmt.Errorf("postgres: update device %q: %w", d.ID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: update device: %w", err)
		}
		if err := tx.QueryRow(ctx, `UPDATE devices SET patient_id = $1, resource = $2, version = version + 1, updated = $3 WHERE id = $4 RETURNING version, org`,
			d.Patient, d.Resource, toNanos(now), d.ID).Scan(&version, &d.Org); err != nil {
			return fmt.Errorf("postgres: update device: %w", err)
		}
		if err := putIdentifiers(ctx, tx, deviceIdentifiers, d.ID, d.Identifiers); err != nil {
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
func rebind(ctx context.Context, tx pgx.Tx, device, patient string, at time.Time) error {
	atNs := at.UnixNano()
	var last *int64
	if err := tx.QueryRow(ctx, `SELECT GREATEST(MAX(from_ns), MAX(to_ns)) FROM bindings WHERE device_id = $1`, device).Scan(&last); err != nil {
		return fmt.Errorf("postgres: read binding history: %w", err)
	}
	if last != nil && atNs < *last {
		return fmt.Errorf("postgres: binding change for device %q at %s precedes its binding history (%s): %w",
			device, at.UTC().Format(time.RFC3339Nano), fromNanos(*last).Format(time.RFC3339Nano), store.ErrConflict)
	}
	var openFrom int64
	err := tx.QueryRow(ctx, `SELECT from_ns FROM bindings WHERE device_id = $1 AND to_ns IS NULL`, device).Scan(&openFrom)
	switch {
	case isNoRows(err):
	case err != nil:
		return fmt.Errorf("postgres: read open binding: %w", err)
	case atNs == openFrom:
		// An interval [at, at) is empty; keep no trace of it.
		if _, err := tx.Exec(ctx, `DELETE FROM bindings WHERE device_id = $1 AND from_ns = $2`, device, openFrom); err != nil {
			return fmt.Errorf("postgres: drop empty binding: %w", err)
		}
	default:
		if _, err := tx.Exec(ctx, `UPDATE bindings SET to_ns = $1 WHERE device_id = $2 AND from_ns = $3`, atNs, device, openFrom); err != nil {
			return fmt.Errorf("postgres: close binding: %w", err)
		}
	}
	if patient == "" {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO bindings(device_id, patient_id, from_ns) VALUES ($1, $2, $3)`, device, patient, atNs); err != nil {
		return fmt.Errorf("postgres: open binding: %w", err)
	}
	return nil
}

// Device returns the device with the given id.
func (s *Store) Device(ctx context.Context, id string) (store.Device, error) {
	var d store.Device
	var updated int64
	err := s.pool.QueryRow(ctx, `SELECT id, org, patient_id, resource, version, updated FROM devices WHERE id = $1`, id).
		Scan(&d.ID, &d.Org, &d.Patient, &d.Resource, &d.Version, &updated)
	if isNoRows(err) {
		return store.Device{}, fmt.Errorf("postgres: device %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("postgres: device: %w", err)
	}
	d.Updated = fromNanos(updated)
	ids, err := s.identifiers(ctx, deviceIdentifiers, []string{id})
	if err != nil {
		return store.Device{}, err
	}
	d.Identifiers = ids[id]
	return d, nil
}

// DeviceByIdentifier returns the device carrying ident.
func (s *Store) DeviceByIdentifier(ctx context.Context, ident store.Identifier) (store.Device, error) {
	q, args := `SELECT device_id FROM device_identifiers WHERE value = $1`, []any{ident.Value}
	if ident.System != "" {
		q += ` AND system = $2`
		args = append(args, ident.System)
	}
	var id string
	err := s.pool.QueryRow(ctx, q+` ORDER BY device_id LIMIT 1`, args...).Scan(&id)
	if isNoRows(err) {
		return store.Device{}, fmt.Errorf("postgres: device with identifier %q: %w", ident.Value, store.ErrNotFound)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("postgres: device by identifier: %w", err)
	}
	return s.Device(ctx, id)
}

// Bindings returns the device's binding history, oldest first.
func (s *Store) Bindings(ctx context.Context, device string) ([]store.Binding, error) {
	rows, err := s.pool.Query(ctx, `SELECT device_id, patient_id, from_ns, to_ns FROM bindings WHERE device_id = $1 ORDER BY from_ns`, device)
	if err != nil {
		return nil, fmt.Errorf("postgres: bindings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Binding, error) {
		var b store.Binding
		var from int64
		var to *int64
		if err := r.Scan(&b.Device, &b.Patient, &from, &to); err != nil {
			return b, err
		}
		b.From = time.Unix(0, from).UTC()
		if to != nil {
			b.To = time.Unix(0, *to).UTC()
		}
		return b, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: bindings: %w", err)
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
	err := s.pool.QueryRow(ctx, `SELECT patient_id FROM bindings WHERE device_id = $1 AND from_ns <= $2 AND (to_ns IS NULL OR to_ns > $2)
		ORDER BY from_ns DESC LIMIT 1`, device, ns).Scan(&patient)
	if isNoRows(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("postgres: patient at: %w", err)
	}
	return patient, nil
}

// SetDeviceSecret replaces the device's credential hash.
func (s *Store) SetDeviceSecret(ctx context.Context, device string, hash []byte) error {
	if len(hash) == 0 {
		return errors.New("postgres: set device secret: empty hash")
	}
	now := s.now().UTC()
	// Inserting from the devices row makes "unknown device" and the upsert
	// one statement.
	tag, err := s.pool.Exec(ctx, `INSERT INTO device_secrets(device_id, hash, updated)
		SELECT id, $2, $3 FROM devices WHERE id = $1
		ON CONFLICT (device_id) DO UPDATE SET hash = excluded.hash, updated = excluded.updated`, device, hash, toNanos(now))
	if err != nil {
		return fmt.Errorf("postgres: set device secret: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set device secret %q: %w", device, store.ErrNotFound)
	}
	return nil
}

// DeviceSecret returns the device's credential hash.
func (s *Store) DeviceSecret(ctx context.Context, device string) ([]byte, error) {
	var hash []byte
	err := s.pool.QueryRow(ctx, `SELECT hash FROM device_secrets WHERE device_id = $1`, device).Scan(&hash)
	if isNoRows(err) {
		return nil, fmt.Errorf("postgres: device secret %q: %w", device, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: device secret: %w", err)
	}
	return hash, nil
}

// PutToken stores a new API token hash; an existing hash is ErrConflict.
func (s *Store) PutToken(ctx context.Context, t store.Token) error {
	if len(t.Hash) == 0 {
		return errors.New("postgres: put token: empty hash")
	}
	created := t.Created
	if created.IsZero() {
		created = s.now()
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO tokens(hash, role, subject, created, org, expires, scopes, client) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (hash) DO NOTHING`,
		t.Hash, string(t.Role), t.Subject, toNanos(created), store.OrgOrDefault(t.Org), toNanos(t.Expires), tokenScopes(t.Scopes), t.Client)
	if err != nil {
		return fmt.Errorf("postgres: put token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: put token: %w", store.ErrConflict)
	}
	return nil
}

// TokenByHash looks a token up by its hash.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	var t store.Token
	var role string
	var created, expires int64
	var scopes *string
	err := s.pool.QueryRow(ctx, `SELECT hash, role, subject, created, org, expires, scopes, client FROM tokens WHERE hash = $1`, hash).
		Scan(&t.Hash, &role, &t.Subject, &created, &t.Org, &expires, &scopes, &t.Client)
	if isNoRows(err) {
		// The hash is a credential derivative: keep it out of the error.
		return store.Token{}, fmt.Errorf("postgres: token: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("postgres: token: %w", err)
	}
	t.Role, t.Created = store.Role(role), fromNanos(created)
	t.Expires, t.Scopes = fromNanos(expires), scanTokenScopes(scopes)
	return t, nil
}

// CreateUser inserts a user; an existing id is ErrConflict.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	if u.ID == "" {
		return errors.New("postgres: create user: id is required")
	}
	created := u.Created
	if created.IsZero() {
		created = s.now()
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO users(id, name, role, password_hash, created, org, patient) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		u.ID, u.Name, string(u.Role), u.PasswordHash, toNanos(created), store.OrgOrDefault(u.Org), u.Patient)
	if err != nil {
		return fmt.Errorf("postgres: create user: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create user %q: %w", u.ID, store.ErrConflict)
	}
	return nil
}

// User returns the user with the given id (the sign-in name).
func (s *Store) User(ctx context.Context, id string) (store.User, error) {
	var u store.User
	var role string
	var created int64
	err := s.pool.QueryRow(ctx, `SELECT id, name, role, password_hash, created, org, patient FROM users WHERE id = $1`, id).
		Scan(&u.ID, &u.Name, &role, &u.PasswordHash, &created, &u.Org, &u.Patient)
	if isNoRows(err) {
		return store.User{}, fmt.Errorf("postgres: user: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("postgres: user: %w", err)
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

// countByRole counts rows of table (a constant) with the role.
func (s *Store) countByRole(ctx context.Context, table string, role store.Role) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM `+table+` WHERE $1 = '' OR role = $1`, string(role)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres: count %s: %w", table, err)
	}
	return n, nil
}

// AddDeadLetter stores a rejected payload and sets d.ID.
func (s *Store) AddDeadLetter(ctx context.Context, d *store.DeadLetter) error {
	if d == nil {
		return errors.New("postgres: add dead letter: nil")
	}
	received := d.Received
	if received.IsZero() {
		received = s.now()
	}
	var replayed *int64
	if !d.Replayed.IsZero() {
		r := toNanos(d.Replayed)
		replayed = &r
	}
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO dead_letters(received, source, device, content_type, payload, reason, replayed)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		toNanos(received), d.Source, d.Device, d.ContentType, d.Payload, d.Reason, replayed).Scan(&id)
	if err != nil {
		return fmt.Errorf("postgres: add dead letter: %w", err)
	}
	d.ID, d.Received = id, received.UTC()
	return nil
}

const deadLetterCols = `id, received, source, device, content_type, payload, reason, replayed`

func scanDeadLetter(row pgx.Row) (store.DeadLetter, error) {
	var d store.DeadLetter
	var received int64
	var replayed *int64
	if err := row.Scan(&d.ID, &received, &d.Source, &d.Device, &d.ContentType, &d.Payload, &d.Reason, &replayed); err != nil {
		return store.DeadLetter{}, err
	}
	d.Received, d.Replayed = fromNanos(received), nullNanos(replayed)
	return d, nil
}

// DeadLetters lists dead letters newest first; beforeID > 0 pages past it.
func (s *Store) DeadLetters(ctx context.Context, limit int, beforeID int64) ([]store.DeadLetter, error) {
	lim, _ := limitOffset(limit, 0)
	rows, err := s.pool.Query(ctx, `SELECT `+deadLetterCols+` FROM dead_letters WHERE $1::bigint <= 0 OR id < $1::bigint ORDER BY id DESC LIMIT $2::bigint`,
		beforeID, lim)
	if err != nil {
		return nil, fmt.Errorf("postgres: dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.DeadLetter, error) { return scanDeadLetter(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: dead letters: %w", err)
	}
	return out, nil
}

// DeadLetter returns one dead letter.
func (s *Store) DeadLetter(ctx context.Context, id int64) (store.DeadLetter, error) {
	d, err := scanDeadLetter(s.pool.QueryRow(ctx, `SELECT `+deadLetterCols+` FROM dead_letters WHERE id = $1`, id))
	if isNoRows(err) {
		return store.DeadLetter{}, fmt.Errorf("postgres: dead letter %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.DeadLetter{}, fmt.Errorf("postgres: dead letter: %w", err)
	}
	return d, nil
}

// MarkReplayed records that the dead letter was replayed successfully at at.
func (s *Store) MarkReplayed(ctx context.Context, id int64, at time.Time) error {
	if at.IsZero() {
		at = s.now()
	}
	tag, err := s.pool.Exec(ctx, `UPDATE dead_letters SET replayed = $1 WHERE id = $2`, toNanos(at), id)
	if err != nil {
		return fmt.Errorf("postgres: mark replayed: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: mark replayed %d: %w", id, store.ErrNotFound)
	}
	return nil
}
