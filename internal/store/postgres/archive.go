package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/store"
)

// PutOrg creates or replaces an organisation, for import.
func (s *Store) PutOrg(ctx context.Context, o store.Organisation) error {
	if o.ID == "" {
		return errors.New("postgres: put organisation: id is required")
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO organisations(id, name, privacy_officer, created) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, privacy_officer = excluded.privacy_officer, created = excluded.created`,
		o.ID, o.Name, o.PrivacyOfficer, toNanos(o.Created))
	if err != nil {
		return fmt.Errorf("postgres: put organisation: %w", err)
	}
	return nil
}

// JTIs lists the assertion ids not expired at now, for export.
func (s *Store) JTIs(ctx context.Context, now time.Time) ([]store.JTI, error) {
	rows, err := s.pool.Query(ctx, `SELECT client, jti, expires FROM oauth_jtis WHERE expires >= $1 ORDER BY client, jti`, toNanos(now))
	if err != nil {
		return nil, fmt.Errorf("postgres: list jtis: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.JTI, error) {
		var j store.JTI
		var expires int64
		err := r.Scan(&j.Client, &j.JTI, &expires)
		j.Expires = fromNanos(expires)
		return j, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list jtis: %w", err)
	}
	return out, nil
}

// AllSignInFailures lists every failure counter, for export.
func (s *Store) AllSignInFailures(ctx context.Context) ([]store.KeyedSignInFailures, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, failures, last FROM signin_failures ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list sign-in failures: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.KeyedSignInFailures, error) {
		var f store.KeyedSignInFailures
		var last int64
		err := r.Scan(&f.Key, &f.Count, &last)
		f.Last = fromNanos(last)
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list sign-in failures: %w", err)
	}
	return out, nil
}

// PutSignInFailures sets the failure counter under key, for import.
func (s *Store) PutSignInFailures(ctx context.Context, key string, f store.SignInFailures) error {
	if f.Count <= 0 {
		return s.ResetSignInFailures(ctx, key)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO signin_failures(key, failures, last) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, last = excluded.last`, key, f.Count, toNanos(f.Last))
	if err != nil {
		return fmt.Errorf("postgres: put sign-in failures: %w", err)
	}
	return nil
}
