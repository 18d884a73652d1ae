package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/store"
)

// DevicesByIdentifier returns every device carrying ident, ordered by id.
func (s *Store) DevicesByIdentifier(ctx context.Context, ident store.Identifier) ([]store.Device, error) {
	q, args := `SELECT DISTINCT device_id FROM device_identifiers WHERE value = $1`, []any{ident.Value}
	if ident.System != "" {
		q += ` AND system = $2`
		args = append(args, ident.System)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY device_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: devices by identifier: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: devices by identifier: %w", err)
	}
	out := make([]store.Device, 0, len(ids))
	for _, id := range ids {
		d, err := s.Device(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
