package postgres

import (
	"context"
	"fmt"
)

// SetUserContact sets or (with "") removes a user's notification address.
func (s *Store) SetUserContact(ctx context.Context, user, contact string) error {
	var err error
	if contact == "" {
		_, err = s.pool.Exec(ctx, `DELETE FROM user_contacts WHERE user_id = $1`, user)
	} else {
		_, err = s.pool.Exec(ctx, `INSERT INTO user_contacts(user_id, contact) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET contact = EXCLUDED.contact`, user, contact)
	}
	if err != nil {
		return fmt.Errorf("postgres: set user contact: %w", err)
	}
	return nil
}

// UserContact returns a user's notification address, "" when none.
func (s *Store) UserContact(ctx context.Context, user string) (string, error) {
	var c string
	err := s.pool.QueryRow(ctx, `SELECT contact FROM user_contacts WHERE user_id = $1`, user).Scan(&c)
	if isNoRows(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("postgres: user contact: %w", err)
	}
	return c, nil
}
