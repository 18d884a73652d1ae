package signin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
	"github.com/tendhealth/tend/internal/totp"
)

var epoch = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

func TestLockedUntil(t *testing.T) {
	tests := []struct {
		count int
		since time.Duration // since the last failure
		want  time.Duration // lock left; 0 = not locked
	}{
		{4, 0, 0},
		{5, 0, time.Minute},
		{5, 59 * time.Second, time.Second},
		{5, time.Minute, 0},
		{6, 0, 2 * time.Minute},
		{7, time.Minute, 3 * time.Minute},
		{11, 0, time.Hour}, // 2^6 min = 64 min, over the cap
		{12, 0, time.Hour},
		{40, 59 * time.Minute, time.Minute},
	}
	for _, tc := range tests {
		now := epoch.Add(tc.since)
		got := LockedUntil(store.SignInFailures{Count: tc.count, Last: epoch}, UserThreshold, now)
		var left time.Duration
		if !got.IsZero() {
			left = got.Sub(now)
		}
		if left != tc.want {
			t.Errorf("%d failures, %v ago: locked for %v more, want %v", tc.count, tc.since, left, tc.want)
		}
	}
}

type fixture struct {
	st     store.Store
	c      *Checker
	mu     sync.Mutex
	now    time.Time
	checks int // argon2id runs (CheckPassword calls)
	events []Event
	sealer *totp.Sealer
}

func newFixture(t *testing.T, require ...store.Role) *fixture {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, now: epoch}
	f.sealer, _ = totp.NewSealer(bytes.Repeat([]byte{1}, 32))
	for _, u := range []store.User{
		{ID: "ann", Role: store.RoleAdmin, PasswordHash: "pw:ann"},
		{ID: "cid", Role: store.RoleClinician, PasswordHash: "pw:cid"},
	} {
		if err := st.CreateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	f.c = New(Config{Store: st, Sealer: f.sealer, RequireTOTP: require,
		Now: func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now },
		CheckPassword: func(p, h string) bool {
			f.mu.Lock()
			f.checks++
			f.mu.Unlock()
			return "pw:"+p == h
		},
		OnAttempt: func(_ context.Context, e Event) { f.events = append(f.events, e) },
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.c.dummy = "dummy-hash" // skip argon2id in unit tests
	f.c.dummyOnce.Do(func() {})
	return f
}

func (f *fixture) try(t *testing.T, a Attempt) (Result, string) {
	t.Helper()
	before := f.checks
	res, err := f.c.Check(context.Background(), a)
	if err != nil && !errors.Is(err, ErrRefused) {
		t.Fatalf("Check: %v", err)
	}
	if f.checks != before+1 {
		t.Fatalf("%d password checks for one attempt, want exactly 1 (constant work)", f.checks-before)
	}
	e := f.events[len(f.events)-1]
	if (err == nil) != e.OK {
		t.Fatalf("event %+v for err %v", e, err)
	}
	return res, e.Reason
}

func TestReasonsAndLockout(t *testing.T) {
	f := newFixture(t)
	src := "192.0.2.7"
	tests := []struct {
		name     string
		a        Attempt
		want     string
		wantUser string
	}{
		{"unknown user", Attempt{Username: "nobody", Password: "x", Source: src}, ReasonUnknownUser, ""},
		{"wrong password 1", Attempt{Username: "ann", Password: "x", Source: src}, ReasonPassword, "ann"},
		{"right password", Attempt{Username: "ann", Password: "ann", Source: src}, ReasonOK, "ann"},
		{"wrong password 1", Attempt{Username: "ann", Password: "x", Source: src}, ReasonPassword, "ann"},
		{"wrong password 2", Attempt{Username: "ann", Password: "x", Source: src}, ReasonPassword, "ann"},
		{"wrong password 3", Attempt{Username: "ann", Password: "x", Source: src}, ReasonPassword, "ann"},
		{"wrong password 4", Attempt{Username: "ann", Password: "x", Source: src}, ReasonPassword, "ann"},
		{"wrong password 5", Attempt{Username: "ann", Password: "x", Source: src}, ReasonPassword, "ann"},
		{"locked, right password", Attempt{Username: "ann", Password: "ann", Source: src}, ReasonLocked, "ann"},
		{"other user", Attempt{Username: "cid", Password: "cid", Source: src}, ReasonOK, "cid"},
	}
	for _, tc := range tests {
		_, reason := f.try(t, tc.a)
		if e := f.events[len(f.events)-1]; reason != tc.want || e.User != tc.wantUser {
			t.Errorf("%s: reason %q user %q, want %q %q", tc.name, reason, e.User, tc.want, tc.wantUser)
		}
	}
	if got, _ := f.st.SignInFailures(context.Background(), "user:ann"); got.Count != 5 {
		t.Errorf("a locked attempt was counted: %d failures", got.Count)
	}
	f.now = epoch.Add(BaseLock)
	if _, reason := f.try(t, Attempt{Username: "ann", Password: "x", Source: src}); reason != ReasonPassword {
		t.Fatalf("after the lock: %s", reason)
	}
	if _, reason := f.try(t, Attempt{Username: "ann", Password: "ann", Source: src}); reason != ReasonLocked {
		t.Fatalf("a failure after the lock locks again (2 min): %s", reason)
	}
	f.now = epoch.Add(BaseLock + 2*BaseLock)
	if _, reason := f.try(t, Attempt{Username: "ann", Password: "ann", Source: src}); reason != ReasonOK {
		t.Fatalf("after the doubled lock: %s", reason)
	}
}

func TestAddressLockout(t *testing.T) {
	f := newFixture(t)
	src := "198.51.100.9"
	for i := range AddrThreshold {
		// Spraying: a different name each time, none locked by itself.
		f.try(t, Attempt{Username: "guess" + string(rune('a'+i)), Password: "x", Source: src})
	}
	if _, reason := f.try(t, Attempt{Username: "ann", Password: "ann", Source: src}); reason != ReasonLocked {
		t.Fatalf("from a spraying address: %s", reason)
	}
	if _, reason := f.try(t, Attempt{Username: "ann", Password: "ann", Source: "203.0.113.1"}); reason != ReasonOK {
		t.Fatalf("from another address: %s", reason)
	}
}

func enrolled(t *testing.T, f *fixture, user string) []byte {
	secret := totp.NewSecret()
	if err := f.st.SetUserTOTP(context.Background(), user, f.sealer.Seal(user, secret), true); err != nil {
		t.Fatal(err)
	}
	return secret
}

func TestSecondFactor(t *testing.T) {
	f := newFixture(t)
	secret := enrolled(t, f, "ann")
	code := totp.Generate(secret, epoch)
	tests := []struct {
		name, password, code, want string
	}{
		{"no code", "ann", "", ReasonCode},
		{"malformed code", "ann", "12a456", ReasonCode},
		{"wrong password, right code", "x", code, ReasonPassword},
		{"right code", "ann", code, ReasonOK},
		{"replayed code", "ann", code, ReasonReplay},
		{"previous step", "ann", totp.Generate(secret, epoch.Add(-totp.Period)), ReasonReplay},
	}
	for _, tc := range tests {
		if _, reason := f.try(t, Attempt{Username: "ann", Password: tc.password, Code: tc.code}); reason != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, reason, tc.want)
		}
	}
	// A secret sealed for another user does not open: an error, not a sign-in.
	st, _ := f.st.UserTOTP(context.Background(), "ann")
	if err := f.st.SetUserTOTP(context.Background(), "cid", st.Secret, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Check(context.Background(), Attempt{Username: "cid", Password: "cid", Code: code}); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("a secret copied from another user: %v, want an internal error", err)
	}
}

func TestRequiredRoles(t *testing.T) {
	f := newFixture(t, store.RoleClinician)
	if res, _ := f.try(t, Attempt{Username: "cid", Password: "cid"}); !res.MustEnrol {
		t.Error("a clinician without TOTP need not enrol")
	}
	if res, _ := f.try(t, Attempt{Username: "ann", Password: "ann"}); res.MustEnrol {
		t.Error("an admin must enrol though only clinicians are required to")
	}
	secret := enrolled(t, f, "cid")
	if res, reason := f.try(t, Attempt{Username: "cid", Password: "cid", Code: totp.Generate(secret, epoch)}); reason != ReasonOK || res.MustEnrol {
		t.Errorf("enrolled clinician: %s, must enrol %v", reason, res.MustEnrol)
	}
}
