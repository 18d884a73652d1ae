package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// CreateSession stores a new session; an existing id is ErrConflict.
func (s *Store) CreateSession(ctx context.Context, se store.Session) error {
	if len(se.ID) == 0 || se.User == "" {
		return errors.New("sqlite: create session: id and user are required")
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO sessions(id, user_id, org, created, last_seen, expires, idle_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		se.ID, se.User, se.Org, toNanos(se.Created), toNanos(se.LastSeen), toNanos(se.Expires), int64(se.Idle))
	if err != nil {
		return fmt.Errorf("sqlite: create session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: create session: %w", store.ErrConflict)
	}
	return nil
}

// Session returns the session with the id. It reads through the writer:
// a session created or touched a moment ago must be seen at once.
func (s *Store) Session(ctx context.Context, id []byte) (store.Session, error) {
	se := store.Session{ID: id}
	var created, seen, expires, idle int64
	err := s.w.QueryRowContext(ctx, `SELECT user_id, org, created, last_seen, expires, idle_ns FROM sessions WHERE id = ?`, id).
		Scan(&se.User, &se.Org, &created, &seen, &expires, &idle)
	if errors.Is(err, sql.ErrNoRows) {
		// The id is a credential derivative: keep it out of the error.
		return store.Session{}, fmt.Errorf("sqlite: session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Session{}, fmt.Errorf("sqlite: session: %w", err)
	}
	se.Created, se.LastSeen, se.Expires, se.Idle = fromNanos(created), fromNanos(seen), fromNanos(expires), time.Duration(idle)
	return se, nil
}

// TouchSession moves LastSeen forward to at.
func (s *Store) TouchSession(ctx context.Context, id []byte, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE sessions SET last_seen = MAX(last_seen, ?) WHERE id = ?`, toNanos(at), id)
	if err != nil {
		return fmt.Errorf("sqlite: touch session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: touch session: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteSession ends one session.
func (s *Store) DeleteSession(ctx context.Context, id []byte) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id); err != nil {
		return fmt.Errorf("sqlite: delete session: %w", err)
	}
	return nil
}

// RevokeUserSessions ends the user's sessions except keep.
func (s *Store) RevokeUserSessions(ctx context.Context, user string, keep []byte) (int, error) {
	if keep == nil {
		keep = []byte{}
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND id != ?`, user, keep)
	if err != nil {
		return 0, fmt.Errorf("sqlite: revoke sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// SweepSessions deletes sessions past their absolute or idle end.
func (s *Store) SweepSessions(ctx context.Context, now time.Time) (int, error) {
	t := toNanos(now)
	res, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE expires <= ? OR (idle_ns > 0 AND last_seen + idle_ns <= ?)`, t, t)
	if err != nil {
		return 0, fmt.Errorf("sqlite: sweep sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// UserTOTP returns the user's second factor.
func (s *Store) UserTOTP(ctx context.Context, user string) (store.TOTP, error) {
	var t store.TOTP
	var enabled int
	err := s.w.QueryRowContext(ctx, `SELECT totp_secret, totp_enabled, totp_last_step FROM users WHERE id = ?`, user).
		Scan(&t.Secret, &enabled, &t.LastStep)
	if errors.Is(err, sql.ErrNoRows) {
		return store.TOTP{}, fmt.Errorf("sqlite: user totp: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.TOTP{}, fmt.Errorf("sqlite: user totp: %w", err)
	}
	t.Enabled = enabled != 0 && len(t.Secret) > 0
	return t, nil
}

// SetUserTOTP stores or removes the user's second factor.
func (s *Store) SetUserTOTP(ctx context.Context, user string, secret []byte, enabled bool) error {
	on := 0
	if enabled && len(secret) > 0 {
		on = 1
	}
	if len(secret) == 0 {
		secret = nil
	}
	res, err := s.w.ExecContext(ctx, `UPDATE users SET totp_secret = ?, totp_enabled = ?, totp_last_step = 0 WHERE id = ?`, secret, on, user)
	if err != nil {
		return fmt.Errorf("sqlite: set user totp: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: set user totp: %w", store.ErrNotFound)
	}
	return nil
}

// AcceptTOTPStep records step if it is newer than the last accepted one.
func (s *Store) AcceptTOTPStep(ctx context.Context, user string, step int64) (bool, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?`, step, user, step)
	if err != nil {
		return false, fmt.Errorf("sqlite: accept totp step: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// SignInFailures returns the failures under key.
func (s *Store) SignInFailures(ctx context.Context, key string) (store.SignInFailures, error) {
	var f store.SignInFailures
	var last int64
	err := s.w.QueryRowContext(ctx, `SELECT failures, last FROM signin_failures WHERE key = ?`, key).Scan(&f.Count, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return store.SignInFailures{}, nil
	}
	if err != nil {
		return store.SignInFailures{}, fmt.Errorf("sqlite: sign-in failures: %w", err)
	}
	f.Last = fromNanos(last)
	return f, nil
}

// RecordSignInFailure adds a failure under key.
func (s *Store) RecordSignInFailure(ctx context.Context, key string, at time.Time) (store.SignInFailures, error) {
	var f store.SignInFailures
	var last int64
	err := s.w.QueryRowContext(ctx, `INSERT INTO signin_failures(key, failures, last) VALUES (?, 1, ?)
		ON CONFLICT(key) DO UPDATE SET failures = failures + 1, last = MAX(last, excluded.last)
		RETURNING failures, last`, key, toNanos(at)).Scan(&f.Count, &last)
	if err != nil {
		return store.SignInFailures{}, fmt.Errorf("sqlite: record sign-in failure: %w", err)
	}
	f.Last = fromNanos(last)
	return f, nil
}

// ResetSignInFailures forgets the failures under key.
func (s *Store) ResetSignInFailures(ctx context.Context, key string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM signin_failures WHERE key = ?`, key); err != nil {
		return fmt.Errorf("sqlite: reset sign-in failures: %w", err)
	}
	return nil
}

// SweepSignInFailures forgets failures older than before.
func (s *Store) SweepSignInFailures(ctx context.Context, before time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM signin_failures WHERE last < ?`, toNanos(before))
	if err != nil {
		return 0, fmt.Errorf("sqlite: sweep sign-in failures: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// DeleteToken removes an API token.
func (s *Store) DeleteToken(ctx context.Context, hash []byte) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM tokens WHERE hash = ?`, hash)
	if err != nil {
		return fmt.Errorf("sqlite: delete token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: delete token: %w", store.ErrNotFound)
	}
	return nil
}
