package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/store"
)

// MovePatient closes the patient's open stay at at and opens one at
// location (see store.Store).
func (s *Store) MovePatient(ctx context.Context, patient, location string, at time.Time) error {
	if patient == "" || !representable(at) || at.IsZero() {
		return errors.New("postgres: move patient: patient and a time are required")
	}
	return s.withTx(ctx, "move patient", func(tx pgx.Tx) error {
		var from int64
		var current string
		// FOR UPDATE: two moves of one patient apply one after the other.
		err := tx.QueryRow(ctx, `SELECT location, from_ns FROM patient_locations WHERE patient_id = $1 AND to_ns = 0 ORDER BY from_ns DESC LIMIT 1 FOR UPDATE`, patient).
			Scan(&current, &from)
		open := err == nil
		if err != nil && !isNoRows(err) {
			return fmt.Errorf("postgres: move patient: %w", err)
		}
		if open && current == location {
			return nil
		}
		atNs := toNanos(at)
		if open {
			if atNs < from {
				atNs = from // history is never rewritten
			}
			if _, err := tx.Exec(ctx, `UPDATE patient_locations SET to_ns = $1 WHERE patient_id = $2 AND from_ns = $3`, atNs, patient, from); err != nil {
				return fmt.Errorf("postgres: close location stay: %w", err)
			}
		}
		if location == "" {
			return nil
		}
		// A move at the very instant the open stay began replaces it.
		if _, err := tx.Exec(ctx, `INSERT INTO patient_locations(patient_id, from_ns, location) VALUES ($1, $2, $3)
			ON CONFLICT (patient_id, from_ns) DO UPDATE SET location = EXCLUDED.location, to_ns = 0`, patient, atNs, location); err != nil {
			return fmt.Errorf("postgres: open location stay: %w", err)
		}
		return nil
	})
}

// Locations returns the patient's stays, oldest first.
func (s *Store) Locations(ctx context.Context, patient string) ([]store.LocationStay, error) {
	rows, err := s.pool.Query(ctx, `SELECT location, from_ns, to_ns FROM patient_locations WHERE patient_id = $1 ORDER BY from_ns`, patient)
	if err != nil {
		return nil, fmt.Errorf("postgres: locations: %w", err)
	}
	defer rows.Close()
	var out []store.LocationStay
	for rows.Next() {
		l := store.LocationStay{Patient: patient}
		var from, to int64
		if err := rows.Scan(&l.Location, &from, &to); err != nil {
			return nil, fmt.Errorf("postgres: locations: %w", err)
		}
		l.From, l.To = fromNanos(from), fromNanos(to)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: locations: %w", err)
	}
	return out, nil
}
