package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tendhealth/tend/internal/store"
)

// DeviceIDs lists every registered device, for export.
func (s *Store) DeviceIDs(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM devices ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list devices: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: list devices: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// Tokens lists every API token (hashes only), for export.
func (s *Store) Tokens(ctx context.Context) ([]store.Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT hash, role, subject, org, created, expires, scopes, client FROM tokens ORDER BY created, hash`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list tokens: %w", err)
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		var t store.Token
		var created, expires int64
		var scopes sql.NullString
		if err := rows.Scan(&t.Hash, &t.Role, &t.Subject, &t.Org, &created, &expires, &scopes, &t.Client); err != nil {
			return nil, fmt.Errorf("sqlite: list tokens: %w", err)
		}
		t.Created = fromNanos(created)
		t.Expires, t.Scopes = fromNanos(expires), scanTokenScopes(scopes) // expiry and scopes survive an export
		out = append(out, t)
	}
	return out, rows.Err()
}

// Users lists every user (password hashes only), for export.
func (s *Store) Users(ctx context.Context) ([]store.User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, name, role, org, patient, password_hash, created FROM users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list users: %w", err)
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		var u store.User
		var created int64
		if err := rows.Scan(&u.ID, &u.Name, &u.Role, &u.Org, &u.Patient, &u.PasswordHash, &created); err != nil {
			return nil, fmt.Errorf("sqlite: list users: %w", err)
		}
		u.Created = fromNanos(created)
		out = append(out, u)
	}
	return out, rows.Err()
}
