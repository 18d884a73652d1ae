package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// MovePatient closes the patient's open stay at at and opens one at
// location (see store.Store).
func (s *Store) MovePatient(ctx context.Context, patient, location string, at time.Time) error {
	if patient == "" || !representable(at) || at.IsZero() {
		return errors.New("sqlite: move patient: patient and a time are required")
	}
	return s.withTx(ctx, "move patient", func(tx *sql.Tx) error {
		var id, from int64
		var current string
		err := tx.QueryRowContext(ctx, `SELECT id, location, from_ns FROM patient_locations WHERE patient = ? AND to_ns = 0 ORDER BY from_ns DESC LIMIT 1`, patient).
			Scan(&id, &current, &from)
		open := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: move patient: %w", err)
		}
		if open && current == location {
			return nil
		}
		atNs := toNanos(at)
		if open {
			if atNs < from {
				atNs = from // history is never rewritten
			}
			if _, err := tx.ExecContext(ctx, `UPDATE patient_locations SET to_ns = ? WHERE id = ?`, atNs, id); err != nil {
				return fmt.Errorf("sqlite: close location stay: %w", err)
			}
		}
		if location == "" {
			return nil
		}
		// One stay per patient and start: a move at the very instant another
		// stay began replaces it (as the PostgreSQL primary key does).
		if _, err := tx.ExecContext(ctx, `DELETE FROM patient_locations WHERE patient = ? AND from_ns = ?`, patient, atNs); err != nil {
			return fmt.Errorf("sqlite: open location stay: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO patient_locations(patient, location, from_ns) VALUES (?, ?, ?)`, patient, location, atNs); err != nil {
			return fmt.Errorf("sqlite: open location stay: %w", err)
		}
		return nil
	})
}

// Locations returns the patient's stays, oldest first.
func (s *Store) Locations(ctx context.Context, patient string) ([]store.LocationStay, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT location, from_ns, to_ns FROM patient_locations WHERE patient = ? ORDER BY from_ns, id`, patient)
	if err != nil {
		return nil, fmt.Errorf("sqlite: locations: %w", err)
	}
	defer rows.Close()
	var out []store.LocationStay
	for rows.Next() {
		l := store.LocationStay{Patient: patient}
		var from, to int64
		if err := rows.Scan(&l.Location, &from, &to); err != nil {
			return nil, fmt.Errorf("sqlite: locations: %w", err)
		}
		l.From, l.To = fromNanos(from), fromNanos(to)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: locations: %w", err)
	}
	return out, nil
}
