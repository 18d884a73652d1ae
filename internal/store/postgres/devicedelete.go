package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/store"
)

// DeleteDevice removes an unbound device; the foreign keys cascade to its
// identifiers, bindings and secret.
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM devices WHERE id = $1 AND patient_id = ''`, id)
	if err != nil {
		return fmt.Errorf("postgres: delete device: %w", err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var patient string
	err = s.pool.QueryRow(ctx, `SELECT patient_id FROM devices WHERE id = $1`, id).Scan(&patient)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: delete device %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("postgres: delete device: %w", err)
	}
	return fmt.Errorf("postgres: delete device %q: bound to a patient: %w", id, store.ErrConflict)
}
