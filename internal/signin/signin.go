// Package signin decides whether a person may sign in: password (argon2id),
// second factor (TOTP) when the user has one, and lockout with backoff
// after repeated failures. The dashboard and the API login both go through
// Checker.Check, which is also the one place that reports every attempt
// (Config.OnAttempt) for the audit trail.
//
// Whatever went wrong, the caller gets ErrRefused and shows the same
// "wrong username or password": an unknown user, a wrong password, a
// missing or wrong or replayed code and a locked account look alike, and
// cost the same argon2id work, so neither existence nor lock state leaks.
// The reason is in the log (without the typed name when no such user
// exists: it may be a mistyped password) and in the OnAttempt event.
package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/totp"
)

// ErrRefused is the only refusal a person sees.
var ErrRefused = errors.New("wrong username or password")

// Lockout policy: after UserThreshold consecutive failures for one user
// name (or AddrThreshold from one source address, which a ward behind NAT
// shares), further attempts are refused unchecked for a period that starts
// at BaseLock and doubles with each further failure up to MaxLock.
// Failures are forgotten after ForgetAfter without one, and on success.
const (
	UserThreshold = 5
	AddrThreshold = 20
	BaseLock      = time.Minute
	MaxLock       = time.Hour
	ForgetAfter   = 24 * time.Hour
)

// Reasons in Event.Reason.
const (
	ReasonOK          = "ok"
	ReasonUnknownUser = "unknown-user"
	ReasonPassword    = "wrong-password"
	ReasonCode        = "wrong-code" // missing, malformed or not matching
	ReasonReplay      = "replayed-code"
	ReasonLocked      = "locked"
)

// Attempt is what a person submitted.
type Attempt struct {
	Username string
	Password string
	Code     string // TOTP code; "" when none was given
	Source   string // client address, for per-address lockout and the audit trail
	Via      string // "web" or "api"
}

// Event reports one attempt to Config.OnAttempt. User is set only when the
// name is a known user; Username is as typed and may be a mistyped password.
type Event struct {
	Time     time.Time
	Via      string
	Username string
	User     string
	Source   string
	OK       bool
	Reason   string
	Locked   time.Time // when the attempt locked the user, the end of the lock
}

// Result is a successful sign-in.
type Result struct {
	User store.User
	// MustEnrol: the user's role requires a second factor and the user has
	// none yet; they may do nothing but enrol.
	MustEnrol bool
}

// Config wires a Checker.
type Config struct {
	Store  store.Store
	Sealer *totp.Sealer // opens TOTP secrets; nil refuses users who have one
	// RequireTOTP lists roles that must use a second factor.
	RequireTOTP   []store.Role
	CheckPassword func(password, hash string) bool // auth.PasswordMatches when nil
	OnAttempt     func(ctx context.Context, e Event)
	Now           func() time.Time
	Logger        *slog.Logger
}

// Checker checks sign-ins. It is safe for concurrent use.
type Checker struct {
	cfg   Config
	slots chan struct{} // bounds concurrent argon2id checks (64 MiB each)

	dummyOnce sync.Once
	dummy     string
}

// New returns a Checker; it does no I/O.
func New(cfg Config) *Checker {
	if cfg.CheckPassword == nil {
		cfg.CheckPassword = auth.PasswordMatches
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Checker{cfg: cfg, slots: make(chan struct{}, 2)}
}

// Requires reports whether users of role must have a second factor.
func (c *Checker) Requires(role store.Role) bool {
	for _, r := range c.cfg.RequireTOTP {
		if r == role {
			return true
		}
	}
	return false
}

// Sealer is the sealer of TOTP secrets (nil when none is configured).
func (c *Checker) Sealer() *totp.Sealer { return c.cfg.Sealer }

// dummyHash is checked for unknown or locked users so every attempt costs
// one argon2id run.
func (c *Checker) dummyHash() string {
	c.dummyOnce.Do(func() { c.dummy = auth.HashPassword("tend: no such user") })
	return c.dummy
}

// LockedUntil returns when a lock on f ends (zero when f is not locked at now).
func LockedUntil(f store.SignInFailures, threshold int, now time.Time) time.Time {
	if f.Count < threshold {
		return time.Time{}
	}
	d := BaseLock
	for i := threshold; i < f.Count && d < MaxLock; i++ {
		d *= 2
	}
	d = min(d, MaxLock)
	if until := f.Last.Add(d); now.Before(until) {
		return until
	}
	return time.Time{}
}

func userKey(name string) string {
	if len(name) > 128 {
		name = name[:128]
	}
	return "user:" + name
}

func addrKey(addr string) string { return "addr:" + addr }

// Check runs one attempt. It returns ErrRefused for every refusal; other
// errors are the store's (the caller shows a generic failure).
func (c *Checker) Check(ctx context.Context, a Attempt) (Result, error) {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	defer func() { <-c.slots }()

	now := c.cfg.Now()
	ev := Event{Time: now, Via: a.Via, Username: a.Username, Source: a.Source}
	st := c.cfg.Store
	uf, err := st.SignInFailures(ctx, userKey(a.Username))
	if err != nil {
		return Result{}, fmt.Errorf("sign-in failures: %w", err)
	}
	var af store.SignInFailures
	if a.Source != "" {
		if af, err = st.SignInFailures(ctx, addrKey(a.Source)); err != nil {
			return Result{}, fmt.Errorf("sign-in failures: %w", err)
		}
	}
	u, err := st.User(ctx, a.Username)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Result{}, fmt.Errorf("load user: %w", err)
	}
	if known {
		ev.User = u.ID
	}

	if !LockedUntil(uf, UserThreshold, now).IsZero() || !LockedUntil(af, AddrThreshold, now).IsZero() {
		c.cfg.CheckPassword(a.Password, c.dummyHash()) // same work as a real check
		return Result{}, c.refuse(ctx, ev, ReasonLocked, false)
	}
	hash := c.dummyHash()
	if known {
		hash = u.PasswordHash
	}
	if !c.cfg.CheckPassword(a.Password, hash) || !known {
		reason := ReasonPassword
		if !known {
			reason = ReasonUnknownUser
		}
		return Result{}, c.refuse(ctx, ev, reason, true)
	}

	res := Result{User: u}
	tf, err := st.UserTOTP(ctx, u.ID)
	if err != nil {
		return Result{}, fmt.Errorf("load second factor: %w", err)
	}
	if tf.Enabled {
		if reason, err := c.checkCode(ctx, u.ID, tf, a.Code, now); err != nil {
			return Result{}, err
		} else if reason != "" {
			return Result{}, c.refuse(ctx, ev, reason, true)
		}
	} else if c.Requires(u.Role) {
		res.MustEnrol = true
	}

	if err := st.ResetSignInFailures(ctx, userKey(a.Username)); err != nil {
		return Result{}, fmt.Errorf("reset sign-in failures: %w", err)
	}
	if a.Source != "" {
		if err := st.ResetSignInFailures(ctx, addrKey(a.Source)); err != nil {
			return Result{}, fmt.Errorf("reset sign-in failures: %w", err)
		}
	}
	if _, err := st.SweepSignInFailures(ctx, now.Add(-ForgetAfter)); err != nil {
		c.cfg.Logger.Warn("could not forget old sign-in failures", "err", err)
	}
	ev.OK, ev.Reason = true, ReasonOK
	c.report(ctx, ev)
	return res, nil
}

// checkCode returns the refusal reason for a code ("" when it is good).
func (c *Checker) checkCode(ctx context.Context, user string, tf store.TOTP, typed string, now time.Time) (string, error) {
	code, err := totp.ParseCode(typed)
	if err != nil {
		return ReasonCode, nil
	}
	if c.cfg.Sealer == nil {
		return "", errors.New("a user has a second factor but no TOTP key is configured")
	}
	secret, err := c.cfg.Sealer.Open(user, tf.Secret)
	if err != nil {
		return "", fmt.Errorf("open the second factor of a user: %w", err)
	}
	step, ok := totp.Validate(secret, code, now)
	if !ok {
		return ReasonCode, nil
	}
	if step <= tf.LastStep {
		return ReasonReplay, nil
	}
	won, err := c.cfg.Store.AcceptTOTPStep(ctx, user, step)
	if err != nil {
		return "", fmt.Errorf("record second-factor step: %w", err)
	}
	if !won {
		return ReasonReplay, nil
	}
	return "", nil
}

// refuse records a failure (unless the attempt was not even checked),
// logs and reports it, and returns ErrRefused.
func (c *Checker) refuse(ctx context.Context, ev Event, reason string, count bool) error {
	ev.Reason = reason
	if count {
		uf, err := c.cfg.Store.RecordSignInFailure(ctx, userKey(ev.Username), ev.Time)
		if err != nil {
			return fmt.Errorf("record sign-in failure: %w", err)
		}
		if ev.Source != "" {
			af, err := c.cfg.Store.RecordSignInFailure(ctx, addrKey(ev.Source), ev.Time)
			if err != nil {
				return fmt.Errorf("record sign-in failure: %w", err)
			}
			if until := LockedUntil(af, AddrThreshold, ev.Time); !until.IsZero() {
				c.cfg.Logger.Warn("sign-in locked for a source address after repeated failures", "source", ev.Source, "failures", af.Count, "until", until)
			}
		}
		if until := LockedUntil(uf, UserThreshold, ev.Time); !until.IsZero() {
			ev.Locked = until
			if ev.User != "" {
				c.cfg.Logger.Warn("sign-in locked for a user after repeated failures", "user", ev.User, "failures", uf.Count, "until", until)
			} else {
				c.cfg.Logger.Warn("sign-in locked for an unknown user name after repeated failures", "source", ev.Source, "failures", uf.Count, "until", until)
			}
		}
	}
	attrs := []any{"via", ev.Via, "reason", reason, "source", ev.Source}
	if ev.User != "" {
		attrs = append(attrs, "user", ev.User)
	}
	c.cfg.Logger.Info("sign-in refused", attrs...)
	c.report(ctx, ev)
	return ErrRefused
}

func (c *Checker) report(ctx context.Context, ev Event) {
	if c.cfg.OnAttempt != nil {
		c.cfg.OnAttempt(ctx, ev)
	}
}
