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

func TestGrantConsent(t *testing.T) {
	st := fixture(t)
	ctx := context.Background()
	for _, u := range []store.User{{ID: "kin", Role: store.RoleCaregiver, Org: "north"}, {ID: "doc2", Role: store.RoleClinician, Org: "north"},
		{ID: "skin", Role: store.RoleCaregiver, Org: "south"}} {
		u.Created = t0
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(time.Hour)
	for _, tc := range []struct {
		name    string
		org     string
		c       store.Consent
		wantErr error // nil: granted
		bad     bool  // a RequestError
	}{
		{"read by default", "north", store.Consent{Patient: "p3", Grantee: "kin"}, nil, false},
		{"with alarms and an end", "north", store.Consent{Patient: "p3", Grantee: "kin", Scope: store.ConsentReadAlarms, End: now.Add(time.Hour)}, nil, false},
		{"unknown scope", "north", store.Consent{Patient: "p3", Grantee: "kin", Scope: "write"}, nil, true},
		{"end before start", "north", store.Consent{Patient: "p3", Grantee: "kin", End: now.Add(-time.Minute)}, nil, true},
		{"only to caregivers", "north", store.Consent{Patient: "p3", Grantee: "doc2"}, nil, true},
		{"patient of another organisation", "north", store.Consent{Patient: "s1", Grantee: "kin"}, access.ErrNotVisible, false},
		{"unknown patient", "north", store.Consent{Patient: "nope", Grantee: "kin"}, access.ErrNotVisible, false},
		{"caregiver of another organisation", "north", store.Consent{Patient: "p3", Grantee: "skin"}, access.ErrNoSuchUser, false},
		{"unknown caregiver", "north", store.Consent{Patient: "p3", Grantee: "nobody"}, access.ErrNoSuchUser, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := access.GrantConsent(ctx, st, tc.org, tc.c, "id-"+tc.name, now)
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
			stored, err := st.Consent(ctx, got.ID)
			if err != nil || stored.Org != "north" || !stored.Start.Equal(now) || stored.Scope == "" || !stored.End.Equal(tc.c.End) {
				t.Errorf("stored %+v, %v", stored, err)
			}
		})
	}
	// The first grant opened p3 to the caregiver.
	pol := access.New(st, func() time.Time { return now.Add(time.Minute) })
	if err := pol.CheckPatient(ctx, auth.Principal{Subject: "kin", Role: string(store.RoleCaregiver), Org: "north"}, "p3"); err != nil {
		t.Errorf("after the grant: %v", err)
	}
}
