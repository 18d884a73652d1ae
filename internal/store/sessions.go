package store

import (
	"context"
	"time"
)

// Session is a signed-in dashboard user, kept server-side so that signing
// out, an idle timeout or a revocation ends it on every node at once. ID is
// the SHA-256 of the random value in the browser's cookie: the store never
// holds the cookie itself, so a copy of the database does not sign anyone in.
type Session struct {
	ID       []byte
	User     string
	Org      string // the organisation the user acted in, if any
	Created  time.Time
	LastSeen time.Time     // moved forward by TouchSession
	Expires  time.Time     // absolute end, whatever the activity
	Idle     time.Duration // the session ends once unused this long
}

// Live reports whether the session may still be used at now: before its
// absolute expiry and used within its idle timeout.
func (s Session) Live(now time.Time) bool {
	if !now.Before(s.Expires) {
		return false
	}
	return s.Idle <= 0 || now.Sub(s.LastSeen) < s.Idle
}

// TOTP is a user's second factor. Secret is the sealed (encrypted) shared
// secret: it weighs as much as the password hash and is never shown again
// once enrolment is confirmed. LastStep is the last accepted RFC 6238 time
// step, so a code cannot be used twice.
type TOTP struct {
	Secret   []byte
	Enabled  bool
	LastStep int64
}

// SignInFailures counts consecutive failed sign-ins under one key (a user
// name or a source address) for lockout and backoff.
type SignInFailures struct {
	Count int
	Last  time.Time // time of the latest failure
}

// People is what sign-in, sessions and the second factor keep.
type People interface {
	// CreateSession stores a new session; an existing id is ErrConflict.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session with the id, live or not (callers check
	// Session.Live and delete dead ones); ErrNotFound if absent.
	Session(ctx context.Context, id []byte) (Session, error)
	// TouchSession records use of the session at at (LastSeen only moves
	// forward); an absent session is ErrNotFound.
	TouchSession(ctx context.Context, id []byte, at time.Time) error
	// DeleteSession ends one session; deleting an absent one is not an error.
	DeleteSession(ctx context.Context, id []byte) error
	// RevokeUserSessions ends every session of the user except keep (nil
	// keeps none) and returns how many ended.
	RevokeUserSessions(ctx context.Context, user string, keep []byte) (int, error)
	// SweepSessions deletes the sessions no longer live at now.
	SweepSessions(ctx context.Context, now time.Time) (int, error)

	// UserTOTP returns the user's second factor; a user without one gets
	// the zero TOTP. An unknown user is ErrNotFound.
	UserTOTP(ctx context.Context, user string) (TOTP, error)
	// SetUserTOTP stores a sealed secret (enabled or pending confirmation)
	// and resets LastStep; a nil secret removes the second factor.
	SetUserTOTP(ctx context.Context, user string, secret []byte, enabled bool) error
	// AcceptTOTPStep records step as used if it is later than the last
	// accepted one and reports whether it was: of two concurrent sign-ins
	// with the same code, exactly one wins.
	AcceptTOTPStep(ctx context.Context, user string, step int64) (bool, error)

	// SignInFailures returns the failure count under key (zero if none).
	SignInFailures(ctx context.Context, key string) (SignInFailures, error)
	// RecordSignInFailure adds one failure at at and returns the new count.
	RecordSignInFailure(ctx context.Context, key string, at time.Time) (SignInFailures, error)
	// ResetSignInFailures forgets the failures under key.
	ResetSignInFailures(ctx context.Context, key string) error
	// SweepSignInFailures forgets failures whose latest is before before.
	SweepSignInFailures(ctx context.Context, before time.Time) (int, error)

	// DeleteToken removes an API token (logout); an absent one is ErrNotFound.
	DeleteToken(ctx context.Context, hash []byte) error
}
