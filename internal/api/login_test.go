package api

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/totp"
)

// TestLoginSecondFactorExpiryAndLogout: a user with TOTP needs "totp", the
// token lasts 12 h, logout kills it, and lockout answers like a wrong password.
func TestLoginSecondFactorExpiryAndLogout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now().UTC()
	sealer, _ := totp.NewSealer(bytes.Repeat([]byte{3}, 32))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	clock := func() time.Time { return now }
	srv := httptest.NewServer(New(Config{Store: f.st, Now: clock, Logger: log,
		SignIn: signin.New(signin.Config{Store: f.st, Sealer: sealer, Now: clock, Logger: log})}))
	t.Cleanup(srv.Close)
	f.srv = srv
	for _, u := range []string{"ann", "bob"} {
		if err := f.st.CreateUser(ctx, store.User{ID: u, Role: store.RoleAdmin, PasswordHash: auth.HashPassword("pw-" + u)}); err != nil {
			t.Fatal(err)
		}
	}
	secret := totp.NewSecret()
	if err := f.st.SetUserTOTP(ctx, "ann", sealer.Seal("ann", secret), true); err != nil {
		t.Fatal(err)
	}
	login := func(body string) (int, map[string]any) {
		r, m := f.do(t, "POST", "/api/v1/auth/token", "", "application/json", body)
		return r.StatusCode, m
	}
	code := totp.Generate(secret, now)
	if st, _ := login(`{"username":"ann","password":"pw-ann"}`); st != 401 {
		t.Fatalf("no totp: %d", st)
	}
	st, m := login(`{"username":"ann","password":"pw-ann","totp":"` + code + `"}`)
	if st != 201 {
		t.Fatalf("login with totp: %d %v", st, m)
	}
	if again, _ := login(`{"username":"ann","password":"pw-ann","totp":"` + code + `"}`); again != 401 {
		t.Fatalf("replayed totp: %d", again)
	}
	tok := m["token"].(string)
	stored, err := f.st.TokenByHash(ctx, auth.HashSecret(tok))
	if err != nil || !stored.Expires.Equal(now.Add(12*time.Hour)) || m["expires"] != now.Add(12*time.Hour).Format(time.RFC3339) {
		t.Fatalf("token expiry %v (%v), answer %v", stored.Expires, err, m["expires"])
	}
	if r, _ := f.do(t, "GET", "/api/v1/deadletters", tok, "", ""); r.StatusCode != 200 {
		t.Fatalf("token from login: %d", r.StatusCode)
	}
	if r, _ := f.do(t, "POST", "/api/v1/auth/logout", tok, "", ""); r.StatusCode != 204 {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	for _, path := range []string{"/api/v1/deadletters", "/api/v1/auth/logout"} {
		method := "GET"
		if path == "/api/v1/auth/logout" {
			method = "POST"
		}
		if r, _ := f.do(t, method, path, tok, "", ""); r.StatusCode != 401 {
			t.Errorf("%s after logout: %d", path, r.StatusCode)
		}
	}

	// Lockout: five failures, then the right password gets the same answer.
	_, wrong := login(`{"username":"bob","password":"nope"}`)
	for range signin.UserThreshold - 1 {
		login(`{"username":"bob","password":"nope"}`)
	}
	st, locked := login(`{"username":"bob","password":"pw-bob"}`)
	if st != 401 || locked["detail"] != wrong["detail"] {
		t.Fatalf("locked: %d %v, want 401 %v", st, locked, wrong)
	}
	now = now.Add(signin.BaseLock)
	if st, _ := login(`{"username":"bob","password":"pw-bob"}`); st != 201 {
		t.Fatalf("after the lock: %d", st)
	}
}
