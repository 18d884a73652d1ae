package sqlite

import (
	"context"
	"fmt"

	"github.com/tendhealth/tend/internal/store"
)

// DevicesByIdentifier returns every device carrying ident, ordered by id.
func (s *Store) DevicesByIdentifier(ctx context.Context, ident store.Identifier) ([]store.Device, error) {
	q, args := `SELECT DISTINCT device FROM device_identifiers WHERE value = ?`, []any{ident.Value}
	if ident.System != "" {
		q += ` AND system = ?`
		args = append(args, ident.System)
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY device`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: devices by identifier: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: devices by identifier: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: devices by identifier: %w", err)
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
