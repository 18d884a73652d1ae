package storetest

import (
	"bytes"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/store"
)

// peopleCases are the conformance cases of store.People; Run includes them.
var peopleCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"Sessions", testSessions},
	{"SessionRevokeAndSweep", testSessionRevokeAndSweep},
	{"UserTOTP", testUserTOTP},
	{"TOTPStepRace", testTOTPStepRace},
	{"SignInFailures", testSignInFailures},
	{"DeleteToken", testDeleteToken},
}

func sessionID(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func testSessions(t *testing.T, s store.Store) {
	want := store.Session{ID: sessionID("a"), User: "u1", Org: "org1", Created: t0, LastSeen: t0,
		Expires: t0.Add(12 * time.Hour), Idle: 15 * time.Minute}
	must(t, s.CreateSession(ctx(t), want), "create")
	wantErr(t, s.CreateSession(ctx(t), want), store.ErrConflict, "create existing")
	got, err := s.Session(ctx(t), want.ID)
	must(t, err, "read")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("session round trip (-want +got):\n%s", diff)
	}
	_, err = s.Session(ctx(t), sessionID("nope"))
	wantErr(t, err, store.ErrNotFound, "read absent")

	// Touch moves LastSeen forward only.
	must(t, s.TouchSession(ctx(t), want.ID, t0.Add(5*time.Minute)), "touch")
	must(t, s.TouchSession(ctx(t), want.ID, t0.Add(time.Minute)), "touch back in time")
	got, err = s.Session(ctx(t), want.ID)
	must(t, err, "read touched")
	if !got.LastSeen.Equal(t0.Add(5 * time.Minute)) {
		t.Fatalf("LastSeen %v, want %v", got.LastSeen, t0.Add(5*time.Minute))
	}
	wantErr(t, s.TouchSession(ctx(t), sessionID("nope"), t0), store.ErrNotFound, "touch absent")

	tests := []struct {
		at   time.Time
		live bool
	}{
		{t0.Add(19 * time.Minute), true},
		{t0.Add(20 * time.Minute), false}, // idle 15 min after the touch at 5
		{t0.Add(13 * time.Hour), false},
	}
	for _, tc := range tests {
		if got.Live(tc.at) != tc.live {
			t.Errorf("Live(%v) = %v, want %v", tc.at.Sub(t0), !tc.live, tc.live)
		}
	}

	must(t, s.DeleteSession(ctx(t), want.ID), "delete")
	must(t, s.DeleteSession(ctx(t), want.ID), "delete again")
	_, err = s.Session(ctx(t), want.ID)
	wantErr(t, err, store.ErrNotFound, "read deleted")
}

func testSessionRevokeAndSweep(t *testing.T, s store.Store) {
	mk := func(id, user string, seen time.Time, expires time.Duration) {
		must(t, s.CreateSession(ctx(t), store.Session{ID: sessionID(id), User: user, Created: t0, LastSeen: seen,
			Expires: t0.Add(expires), Idle: 15 * time.Minute}), "create "+id)
	}
	mk("a1", "ann", t0, 12*time.Hour)
	mk("a2", "ann", t0, 12*time.Hour)
	mk("a3", "ann", t0, 12*time.Hour)
	mk("b1", "bob", t0, 12*time.Hour)
	n, err := s.RevokeUserSessions(ctx(t), "ann", sessionID("a2"))
	must(t, err, "revoke")
	if n != 2 {
		t.Fatalf("revoked %d sessions, want 2", n)
	}
	for id, alive := range map[string]bool{"a1": false, "a2": true, "a3": false, "b1": true} {
		_, err := s.Session(ctx(t), sessionID(id))
		if (err == nil) != alive {
			t.Errorf("session %s: err %v, want alive=%v", id, err, alive)
		}
	}
	n, err = s.RevokeUserSessions(ctx(t), "ann", nil)
	must(t, err, "revoke all")
	if n != 1 {
		t.Fatalf("revoked %d sessions, want 1", n)
	}

	// Sweep: idle for 15 min, absolute expiry, and live ones kept.
	mk("idle", "bob", t0, 12*time.Hour)
	mk("busy", "bob", t0.Add(50*time.Minute), 12*time.Hour)
	mk("old", "bob", t0.Add(59*time.Minute), time.Hour)
	must(t, s.TouchSession(ctx(t), sessionID("b1"), t0.Add(55*time.Minute)), "touch b1")
	n, err = s.SweepSessions(ctx(t), t0.Add(time.Hour))
	must(t, err, "sweep")
	if n != 2 {
		t.Fatalf("swept %d sessions, want 2 (idle, old)", n)
	}
	for id, alive := range map[string]bool{"idle": false, "old": false, "busy": true, "b1": true} {
		_, err := s.Session(ctx(t), sessionID(id))
		if (err == nil) != alive {
			t.Errorf("after sweep, session %s: err %v, want alive=%v", id, err, alive)
		}
	}
}

func testUserTOTP(t *testing.T, s store.Store) {
	must(t, s.CreateUser(ctx(t), store.User{ID: "u1", Name: "Ada", Role: store.RoleAdmin, PasswordHash: "$argon2id$x", Created: t0}), "create user")
	got, err := s.UserTOTP(ctx(t), "u1")
	must(t, err, "read none")
	if got.Enabled || len(got.Secret) != 0 {
		t.Fatalf("new user has TOTP %+v", got)
	}
	_, err = s.UserTOTP(ctx(t), "nobody")
	wantErr(t, err, store.ErrNotFound, "unknown user")
	wantErr(t, s.SetUserTOTP(ctx(t), "nobody", []byte("x"), true), store.ErrNotFound, "set on unknown user")

	sealed := []byte{0, 1, 2, 0xff}
	must(t, s.SetUserTOTP(ctx(t), "u1", sealed, false), "set pending")
	got, err = s.UserTOTP(ctx(t), "u1")
	must(t, err, "read pending")
	if got.Enabled || !bytes.Equal(got.Secret, sealed) {
		t.Fatalf("pending TOTP %+v", got)
	}
	must(t, s.SetUserTOTP(ctx(t), "u1", sealed, true), "enable")

	// Steps are accepted once each and only forward.
	for _, tc := range []struct {
		step int64
		want bool
	}{{100, true}, {100, false}, {99, false}, {101, true}} {
		ok, err := s.AcceptTOTPStep(ctx(t), "u1", tc.step)
		must(t, err, "accept")
		if ok != tc.want {
			t.Errorf("AcceptTOTPStep(%d) = %v, want %v", tc.step, ok, tc.want)
		}
	}
	got, err = s.UserTOTP(ctx(t), "u1")
	must(t, err, "read enabled")
	if !got.Enabled || got.LastStep != 101 {
		t.Fatalf("enabled TOTP %+v, want enabled at step 101", got)
	}
	// Re-enrolment starts over; removing clears everything.
	must(t, s.SetUserTOTP(ctx(t), "u1", sealed, true), "re-enrol")
	if got, _ := s.UserTOTP(ctx(t), "u1"); got.LastStep != 0 {
		t.Errorf("re-enrolment kept LastStep %d", got.LastStep)
	}
	must(t, s.SetUserTOTP(ctx(t), "u1", nil, true), "remove")
	got, err = s.UserTOTP(ctx(t), "u1")
	must(t, err, "read removed")
	if got.Enabled || len(got.Secret) != 0 {
		t.Fatalf("removed TOTP %+v", got)
	}
	// The user's other fields are untouched.
	u, err := s.User(ctx(t), "u1")
	must(t, err, "read user")
	if u.PasswordHash != "$argon2id$x" || u.Role != store.RoleAdmin {
		t.Errorf("user changed: %+v", u)
	}
}

// testTOTPStepRace: of concurrent sign-ins with the same code, one wins.
func testTOTPStepRace(t *testing.T, s store.Store) {
	must(t, s.CreateUser(ctx(t), store.User{ID: "u1", Name: "Ada", Role: store.RoleAdmin, PasswordHash: "$argon2id$x", Created: t0}), "create user")
	must(t, s.SetUserTOTP(ctx(t), "u1", []byte("sealed"), true), "enable")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.AcceptTOTPStep(ctx(t), "u1", 5000)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent acceptances of one step, want 1", wins)
	}
}

func testSignInFailures(t *testing.T, s store.Store) {
	got, err := s.SignInFailures(ctx(t), "user:ann")
	must(t, err, "read none")
	if got != (store.SignInFailures{}) {
		t.Fatalf("no failures yet, got %+v", got)
	}
	for i := 1; i <= 3; i++ {
		f, err := s.RecordSignInFailure(ctx(t), "user:ann", t0.Add(time.Duration(i)*time.Minute))
		must(t, err, "record")
		if f.Count != i || !f.Last.Equal(t0.Add(time.Duration(i)*time.Minute)) {
			t.Fatalf("failure %d: %+v", i, f)
		}
	}
	_, err = s.RecordSignInFailure(ctx(t), "addr:192.0.2.1", t0)
	must(t, err, "record other key")
	got, err = s.SignInFailures(ctx(t), "user:ann")
	must(t, err, "read")
	if got.Count != 3 || !got.Last.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("failures %+v, want 3 at +3m", got)
	}
	n, err := s.SweepSignInFailures(ctx(t), t0.Add(time.Minute))
	must(t, err, "sweep")
	if n != 1 {
		t.Fatalf("swept %d, want 1 (the address, last at t0)", n)
	}
	must(t, s.ResetSignInFailures(ctx(t), "user:ann"), "reset")
	must(t, s.ResetSignInFailures(ctx(t), "user:ann"), "reset again")
	if got, _ := s.SignInFailures(ctx(t), "user:ann"); got.Count != 0 {
		t.Fatalf("after reset %+v", got)
	}
}

func testDeleteToken(t *testing.T, s store.Store) {
	tok := store.Token{Hash: sessionID("tok"), Role: store.RoleAdmin, Subject: "u1", Created: t0}
	must(t, s.PutToken(ctx(t), tok), "put")
	must(t, s.DeleteToken(ctx(t), tok.Hash), "delete")
	_, err := s.TokenByHash(ctx(t), tok.Hash)
	wantErr(t, err, store.ErrNotFound, "read deleted")
	wantErr(t, s.DeleteToken(ctx(t), tok.Hash), store.ErrNotFound, "delete again")
}
