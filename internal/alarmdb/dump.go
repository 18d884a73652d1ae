package alarmdb

import (
	"context"
	"fmt"
)

// DocKeys lists the scope and kind of every configuration document, for
// export.
func (db *DB) DocKeys(ctx context.Context) ([][2]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT DISTINCT scope, kind FROM docs ORDER BY scope, kind`)
	if err != nil {
		return nil, fmt.Errorf("alarmdb: list documents: %w", err)
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			return nil, fmt.Errorf("alarmdb: list documents: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
