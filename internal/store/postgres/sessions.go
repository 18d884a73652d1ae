package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// CreateSession stores a new session; an existing id is ErrConflict.
func (s *Store) CreateSession(ctx context.Context, se store.Session) error {
	if len(se.ID) == 0 || se.User == "" {
		return errors.New("postgres: create session: id and user are required")
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO sessions(id, user_id, org, created, last_seen, expires, idle_ns)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		se.ID, se.User, se.Org, toNanos(se.Created), toNanos(se.LastSeen), toNanos(se.Expires), int64(se.Idle))
	if err != nil {
		return fmt.Errorf("postgres: create session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create session: %w", store.ErrConflict)
	}
	return nil
}

// Session returns the session with the id.
func (s *Store) Session(ctx context.Context, id []byte) (store.Session, error) {
	se := store.Session{ID: id}
	var created, seen, expires, idle int64
	err := s.pool.QueryRow(ctx, `SELECT user_id, org, created, last_seen, expires, idle_ns FROM sessions WHERE id = $1`, id).
		Scan(&se.User, &se.Org, &created, &seen, &expires, &idle)
	if isNoRows(err) {
		// The id is a credential derivative: keep it out of the error.
		return store.Session{}, fmt.Errorf("postgres: session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Session{}, fmt.Errorf("postgres: session: %w", err)
	}
	se.Created, se.LastSeen, se.Expires, se.Idle = fromNanos(created), fromNanos(seen), fromNanos(expires), time.Duration(idle)
	return se, nil
}

// TouchSession moves LastSeen forward to at.
func (s *Store) TouchSession(ctx context.Context, id []byte, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE sessions SET last_seen = GREATEST(last_seen, $1) WHERE id = $2`, toNanos(at), id)
	if err != nil {
		return fmt.Errorf("postgres: touch session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: touch session: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteSession ends one session.
func (s *Store) DeleteSession(ctx context.Context, id []byte) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE id = $1`, id); err != nil {
		return fmt.Errorf("postgres: delete session: %w", err)
	}
	return nil
}

// RevokeUserSessions ends the user's sessions except keep.
func (s *Store) RevokeUserSessions(ctx context.Context, user string, keep []byte) (int, error) {
	if keep == nil {
		keep = []byte{}
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1 AND id <> $2`, user, keep)
	if err != nil {
		return 0, fmt.Errorf("postgres: revoke sessions: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// SweepSessions deletes sessions past their absolute or idle end.
func (s *Store) SweepSessions(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE expires <= $1 OR (idle_ns > 0 AND last_seen + idle_ns <= $1)`, toNanos(now))
	if err != nil {
		return 0, fmt.Errorf("postgres: sweep sessions: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// UserTOTP returns the user's second factor.
func (s *Store) UserTOTP(ctx context.Context, user string) (store.TOTP, error) {
	var t store.TOTP
	err := s.pool.QueryRow(ctx, `SELECT totp_secret, totp_enabled, totp_last_step FROM users WHERE id = $1`, user).
		Scan(&t.Secret, &t.Enabled, &t.LastStep)
	if isNoRows(err) {
		return store.TOTP{}, fmt.Errorf("postgres: user totp: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.TOTP{}, fmt.Errorf("postgres: user totp: %w", err)
	}
	t.Enabled = t.Enabled && len(t.Secret) > 0
	return t, nil
}

// SetUserTOTP stores or removes the user's second factor.
func (s *Store) SetUserTOTP(ctx context.Context, user string, secret []byte, enabled bool) error {
	if len(secret) == 0 {
		secret, enabled = nil, false
	}
	tag, err := s.pool.Exec(ctx, `UPDATE users SET totp_secret = $1, totp_enabled = $2, totp_last_step = 0 WHERE id = $3`, secret, enabled, user)
	if err != nil {
		return fmt.Errorf("postgres: set user totp: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: set user totp: %w", store.ErrNotFound)
	}
	return nil
}

// AcceptTOTPStep records step if it is newer than the last accepted one.
func (s *Store) AcceptTOTPStep(ctx context.Context, user string, step int64) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1`, step, user)
	if err != nil {
		return false, fmt.Errorf("postgres: accept totp step: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SignInFailures returns the failures under key.
func (s *Store) SignInFailures(ctx context.Context, key string) (store.SignInFailures, error) {
	var f store.SignInFailures
	var last int64
	err := s.pool.QueryRow(ctx, `SELECT failures, last FROM signin_failures WHERE key = $1`, key).Scan(&f.Count, &last)
	if isNoRows(err) {
		return store.SignInFailures{}, nil
	}
	if err != nil {
		return store.SignInFailures{}, fmt.Errorf("postgres: sign-in failures: %w", err)
	}
	f.Last = fromNanos(last)
	return f, nil
}

// RecordSignInFailure adds a failure under key.
func (s *Store) RecordSignInFailure(ctx context.Context, key string, at time.Time) (store.SignInFailures, error) {
	var f store.SignInFailures
	var last int64
	err := s.pool.QueryRow(ctx, `INSERT INTO signin_failures AS f (key, failures, last) VALUES ($1, 1, $2)
		ON CONFLICT (key) DO UPDATE SET failures = f.failures + 1, last = GREATEST(f.last, excluded.last)
		RETURNING failures, last`, key, toNanos(at)).Scan(&f.Count, &last)
	if err != nil {
		return store.SignInFailures{}, fmt.Errorf("postgres: record sign-in failure: %w", err)
	}
	f.Last = fromNanos(last)
	return f, nil
}

// ResetSignInFailures forgets the failures under key.
func (s *Store) ResetSignInFailures(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM signin_failures WHERE key = $1`, key); err != nil {
		return fmt.Errorf("postgres: reset sign-in failures: %w", err)
	}
	return nil
}

// SweepSignInFailures forgets failures older than before.
func (s *Store) SweepSignInFailures(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM signin_failures WHERE last < $1`, toNanos(before))
	if err != nil {
		return 0, fmt.Errorf("postgres: sweep sign-in failures: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// DeleteToken removes an API token.
func (s *Store) DeleteToken(ctx context.Context, hash []byte) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM tokens WHERE hash = $1`, hash)
	if err != nil {
		return fmt.Errorf("postgres: delete token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete token: %w", store.ErrNotFound)
	}
	return nil
}
