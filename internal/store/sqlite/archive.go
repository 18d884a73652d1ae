package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// PutOrg creates or replaces an organisation, for import.
func (s *Store) PutOrg(ctx context.Context, o store.Organisation) error {
	if o.ID == "" {
		return errors.New("sqlite: put organisation: id is required")
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO organisations(id, name, privacy_officer, created) VALUES (?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET name = excluded.name, privacy_officer = excluded.privacy_officer, created = excluded.created`,
		o.ID, o.Name, o.PrivacyOfficer, toNanos(o.Created))
	if err != nil {
		return fmt.Errorf("sqlite: put organisation: %w", err)
	}
	return nil
}

// JTIs lists the assertion ids not expired at now, for export.
func (s *Store) JTIs(ctx context.Context, now time.Time) ([]store.JTI, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT client, jti, expires FROM oauth_jtis WHERE expires >= ? ORDER BY client, jti`, toNanos(now))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list jtis: %w", err)
	}
	defer rows.Close()
	var out []store.JTI
	for rows.Next() {
		var j store.JTI
		var expires int64
		if err := rows.Scan(&j.Client, &j.JTI, &expires); err != nil {
			return nil, fmt.Errorf("sqlite: list jtis: %w", err)
		}
		j.Expires = fromNanos(expires)
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list jtis: %w", err)
	}
	return out, nil
}

// AllSignInFailures lists every failure counter, for export.
func (s *Store) AllSignInFailures(ctx context.Context) ([]store.KeyedSignInFailures, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT key, failures, last FROM signin_failures ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list sign-in failures: %w", err)
	}
	defer rows.Close()
	var out []store.KeyedSignInFailures
	for rows.Next() {
		var f store.KeyedSignInFailures
		var last int64
		if err := rows.Scan(&f.Key, &f.Count, &last); err != nil {
			return nil, fmt.Errorf("sqlite: list sign-in failures: %w", err)
		}
		f.Last = fromNanos(last)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list sign-in failures: %w", err)
	}
	return out, nil
}

// PutSignInFailures sets the failure counter under key, for import.
func (s *Store) PutSignInFailures(ctx context.Context, key string, f store.SignInFailures) error {
	if f.Count <= 0 {
		return s.ResetSignInFailures(ctx, key)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO signin_failures(key, failures, last) VALUES (?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET failures = excluded.failures, last = excluded.last`, key, f.Count, toNanos(f.Last))
	if err != nil {
		return fmt.Errorf("sqlite: put sign-in failures: %w", err)
	}
	return nil
}
