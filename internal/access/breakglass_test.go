package access_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

func TestGrantBreakGlass(t *testing.T) {
	st := fixture(t)
	ctx := context.Background()
	nurse := auth.Principal{Subject: "nurse", Role: string(store.RoleNurse), Org: "north"}
	now := t0.Add(2 * time.Hour)
	for _, tc := range []struct {
		name    string
		who     auth.Principal
		req     access.BreakGlassRequest
		wantErr error // nil: granted
		bad     bool  // a RequestError
		want    time.Duration
	}{
		{"default hour", nurse, access.BreakGlassRequest{Patient: "p3", Reason: " found collapsed "}, nil, false, time.Hour},
		{"minutes asked", nurse, access.BreakGlassRequest{Patient: "p3", Reason: "fall", Minutes: 30}, nil, false, 30 * time.Minute},
		{"four hours at most", nurse, access.BreakGlassRequest{Patient: "p3", Reason: "fall", Minutes: 241}, nil, true, 0},
		{"no negative time", nurse, access.BreakGlassRequest{Patient: "p3", Reason: "fall", Minutes: -1}, nil, true, 0},
		{"reason required", nurse, access.BreakGlassRequest{Patient: "p3", Reason: "  "}, nil, true, 0},
		{"reason bounded", nurse, access.BreakGlassRequest{Patient: "p3", Reason: string(make([]byte, access.MaxReason+1))}, nil, true, 0},
		{"other organisation", nurse, access.BreakGlassRequest{Patient: "s1", Reason: "fall"}, access.ErrNotVisible, false, 0},
		{"unknown patient", nurse, access.BreakGlassRequest{Patient: "nope", Reason: "fall"}, access.ErrNotVisible, false, 0},
		{"no patient", nurse, access.BreakGlassRequest{Reason: "fall"}, access.ErrNotVisible, false, 0},
		{"not for caregivers", auth.Principal{Subject: "gran", Role: string(store.RoleCaregiver), Org: "north"}, access.BreakGlassRequest{Patient: "p3", Reason: "fall"}, access.ErrBreakGlassRole, false, 0},
		{"not for admins", auth.Principal{Subject: "a", Role: string(store.RoleAdmin), Org: "north"}, access.BreakGlassRequest{Patient: "p3", Reason: "fall"}, access.ErrBreakGlassRole, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := access.GrantBreakGlass(ctx, st, tc.who, tc.req, "id-"+tc.name, now)
			var re *access.RequestError
			switch {
			case tc.bad:
				if !errors.As(err, &re) {
					t.Fatalf("err %v, want a RequestError", err)
				}
				return
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if g.User != "nurse" || g.Org != "north" || g.Patient != "p3" || g.Reason == "" || g.Reason[0] == ' ' || !g.Start.Equal(now) || g.Expires.Sub(g.Start) != tc.want {
				t.Errorf("grant %+v", g)
			}
		})
	}
	// The grants opened the patient to the nurse, for the time asked only.
	pol := access.New(st, func() time.Time { return now.Add(59 * time.Minute) })
	if err := pol.CheckPatient(ctx, nurse, "p3"); err != nil {
		t.Errorf("within the grant: %v", err)
	}
	pol = access.New(st, func() time.Time { return now.Add(61 * time.Minute) })
	if err := pol.CheckPatient(ctx, nurse, "p3"); !errors.Is(err, access.ErrNotVisible) {
		t.Errorf("after every grant expired: %v", err)
	}
}
