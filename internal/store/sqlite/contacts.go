package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SetUserContact sets or (with "") removes a user's notification address.
func (s *Store) SetUserContact(ctx context.Context, user, contact string) error {
	var err error
	if contact == "" {
		_, err = s.w.ExecContext(ctx, `DELETE FROM user_contacts WHERE user_id = ?`, user)
	} else {
		_, err = s.w.ExecContext(ctx, `INSERT INTO user_contacts(user_id, contact) VALUES (?, ?)
			ON CONFLICT(user_id) DO UPDATE SET contact = excluded.contact`, user, contact)
	}
	if err != nil {
		return fmt.Errorf("sqlite: set user contact: %w", err)
	}
	return nil
}

// UserContact returns a user's notification address, "" when none.
func (s *Store) UserContact(ctx context.Context, user string) (string, error) {
	var c string
	err := s.r.QueryRowContext(ctx, `SELECT contact FROM user_contacts WHERE user_id = ?`, user).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: user contact: %w", err)
	}
	return c, nil
}
