package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/tendhealth/tend/internal/store"
)

// AddNote appends a note; an existing id is ErrConflict.
func (s *Store) AddNote(ctx context.Context, n store.Note) error {
	if n.ID == "" || n.Patient == "" || n.Author == "" {
		return errors.New("sqlite: add note: id, patient and author are required")
	}
	created := n.Created
	if created.IsZero() {
		created = s.now()
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO patient_notes(id, org, patient, author, role, body, created)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		n.ID, store.OrgOrDefault(n.Org), n.Patient, n.Author, string(n.Role), n.Text, toNanos(created))
	if err != nil {
		return fmt.Errorf("sqlite: add note: %w", err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("sqlite: add note: %w", store.ErrConflict)
	}
	return nil
}

// Notes lists a patient's notes, newest first.
func (s *Store) Notes(ctx context.Context, patient string, limit int) ([]store.Note, error) {
	q := `SELECT id, org, patient, author, role, body, created FROM patient_notes WHERE patient = ? ORDER BY created DESC, id DESC`
	args := []any{patient}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: notes: %w", err)
	}
	defer rows.Close()
	var out []store.Note
	for rows.Next() {
		var n store.Note
		var role string
		var created int64
		if err := rows.Scan(&n.ID, &n.Org, &n.Patient, &n.Author, &role, &n.Text, &created); err != nil {
			return nil, fmt.Errorf("sqlite: notes: %w", err)
		}
		n.Role, n.Created = store.Role(role), fromNanos(created)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: notes: %w", err)
	}
	return out, nil
}

// UpdateOrg sets an organisation's name and privacy officer.
func (s *Store) UpdateOrg(ctx context.Context, o store.Organisation) error {
	res, err := s.w.ExecContext(ctx, `UPDATE organisations SET name = ?, privacy_officer = ? WHERE id = ?`, o.Name, o.PrivacyOfficer, o.ID)
	if err != nil {
		return fmt.Errorf("sqlite: update organisation: %w", err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("sqlite: update organisation %q: %w", o.ID, store.ErrNotFound)
	}
	return nil
}
