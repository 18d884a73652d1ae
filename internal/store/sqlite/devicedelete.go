package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tendhealth/tend/internal/store"
)

// DeleteDevice removes an unbound device; the foreign keys cascade to its
// identifiers, bindings and secret.
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM devices WHERE id = ? AND patient = ''`, id)
	if err != nil {
		return fmt.Errorf("sqlite: delete device: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var patient string
	err = s.w.QueryRowContext(ctx, `SELECT patient FROM devices WHERE id = ?`, id).Scan(&patient)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: delete device %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete device: %w", err)
	}
	return fmt.Errorf("sqlite: delete device %q: bound to a patient: %w", id, store.ErrConflict)
}
