package access_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fixture: two organisations; in north, care team icu holds p1 and p2 (doc
// and nurse are members), p3 is outside every team, p4 consented to gran;
// south has s1.
func fixture(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateOrg(ctx, store.Organisation{ID: "north", Name: "North"}))
	must(st.CreateOrg(ctx, store.Organisation{ID: "south", Name: "South"}))
	for _, p := range []store.Patient{{ID: "p1", Org: "north"}, {ID: "p2", Org: "north"}, {ID: "p3", Org: "north"}, {ID: "p4", Org: "north"}, {ID: "s1", Org: "south"}} {
		p.Resource = []byte(`{}`)
		must(st.CreatePatient(ctx, &p))
	}
	must(st.CreateDevice(ctx, &store.Device{ID: "d1", Org: "north", Patient: "p1"}, t0))
	must(st.CreateDevice(ctx, &store.Device{ID: "d3", Org: "north", Patient: "p3"}, t0))
	must(st.CreateDevice(ctx, &store.Device{ID: "ds", Org: "south", Patient: "s1"}, t0))
	must(st.CreateCareTeam(ctx, store.CareTeam{ID: "icu", Org: "north", Name: "ICU"}))
	for _, u := range []string{"doc", "nurse"} {
		must(st.SetCareTeamMember(ctx, "icu", u, true))
	}
	for _, p := range []string{"p1", "p2", "s1"} { // s1 of another organisation: the wall still holds
		must(st.SetCareTeamPatient(ctx, "icu", p, true))
	}
	must(st.CreateConsent(ctx, store.Consent{ID: "c1", Org: "north", Patient: "p4", Grantee: "gran", Scope: store.ConsentRead, Start: t0, End: t0.Add(48 * time.Hour)}))
	must(st.CreateConsent(ctx, store.Consent{ID: "c2", Org: "north", Patient: "p3", Grantee: "gran", Scope: store.ConsentReadAlarms, Start: t0, Revoked: t0.Add(time.Hour)}))
	must(st.CreateConsent(ctx, store.Consent{ID: "c3", Org: "north", Patient: "p2", Grantee: "fam", Scope: store.ConsentReadAlarms, Start: t0}))
	must(st.CreateBreakGlass(ctx, store.BreakGlass{ID: "g1", Org: "north", User: "doc", Patient: "p3", Reason: "arrest", Start: t0, Expires: t0.Add(30 * time.Minute)}))
	return st
}

func TestScopeEveryRole(t *testing.T) {
	st := fixture(t)
	northAll := access.Scope{Org: "north", All: true}
	for _, tc := range []struct {
		name string
		p    auth.Principal
		at   time.Time
		want access.Scope
	}{
		{"admin", auth.Principal{Subject: "a", Role: "admin", Org: "north"}, t0, northAll},
		{"integration", auth.Principal{Subject: "ehr", Role: "integration", Org: "north"}, t0, northAll},
		{"admin without org is the default organisation", auth.Principal{Subject: "a", Role: "admin"}, t0, access.Scope{Org: store.DefaultOrg, All: true}},
		{"clinician with break-glass", auth.Principal{Subject: "doc", Role: "clinician", Org: "north"}, t0.Add(10 * time.Minute), access.Scope{Org: "north", Patients: []string{"p1", "p2", "p3", "s1"}}},
		{"clinician after break-glass expired", auth.Principal{Subject: "doc", Role: "clinician", Org: "north"}, t0.Add(30 * time.Minute), access.Scope{Org: "north", Patients: []string{"p1", "p2", "s1"}}},
		{"nurse", auth.Principal{Subject: "nurse", Role: "nurse", Org: "north"}, t0, access.Scope{Org: "north", Patients: []string{"p1", "p2", "s1"}}},
		{"clinician in no team", auth.Principal{Subject: "locum", Role: "clinician", Org: "north"}, t0, access.Scope{Org: "north"}},
		{"caregiver", auth.Principal{Subject: "gran", Role: "caregiver", Org: "north"}, t0.Add(time.Minute), access.Scope{Org: "north", Patients: []string{"p3", "p4"}}},
		{"caregiver after revocation", auth.Principal{Subject: "gran", Role: "caregiver", Org: "north"}, t0.Add(time.Hour), access.Scope{Org: "north", Patients: []string{"p4"}}},
		{"caregiver after expiry", auth.Principal{Subject: "gran", Role: "caregiver", Org: "north"}, t0.Add(48 * time.Hour), access.Scope{Org: "north"}},
		{"caregiver in another org", auth.Principal{Subject: "gran", Role: "caregiver", Org: "south"}, t0.Add(time.Minute), access.Scope{Org: "south"}},
		{"patient", auth.Principal{Subject: "pat", Role: "patient", Org: "north", Patient: "p2"}, t0, access.Scope{Org: "north", Patients: []string{"p2"}}},
		{"patient without a link", auth.Principal{Subject: "pat", Role: "patient", Org: "north"}, t0, access.Scope{Org: "north"}},
		{"auditor", auth.Principal{Subject: "aud", Role: "auditor", Org: "north"}, t0, access.Scope{Org: "north"}},
		{"unknown role", auth.Principal{Subject: "x", Role: "root", Org: "north"}, t0, access.Scope{Org: "north"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := access.New(st, func() time.Time { return tc.at })
			got, err := pol.Scope(context.Background(), tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("scope (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckPatientAndDevice(t *testing.T) {
	st := fixture(t)
	pol := access.New(st, func() time.Time { return t0.Add(time.Minute) })
	ctx := context.Background()
	// visible lists, per principal, the patients (of p1 p2 p3 p4 s1 nope)
	// and devices (of d1 d3 ds) it may see.
	for _, tc := range []struct {
		p        auth.Principal
		patients []string
		devices  []string
	}{
		{auth.Principal{Subject: "a", Role: "admin", Org: "north"}, []string{"p1", "p2", "p3", "p4"}, []string{"d1", "d3"}},
		{auth.Principal{Subject: "a", Role: "admin", Org: "south"}, []string{"s1"}, []string{"ds"}},
		{auth.Principal{Subject: "ehr", Role: "integration", Org: "north"}, []string{"p1", "p2", "p3", "p4"}, []string{"d1", "d3"}},
		{auth.Principal{Subject: "doc", Role: "clinician", Org: "north"}, []string{"p1", "p2", "p3"}, []string{"d1", "d3"}},
		{auth.Principal{Subject: "nurse", Role: "nurse", Org: "north"}, []string{"p1", "p2"}, []string{"d1"}},
		{auth.Principal{Subject: "gran", Role: "caregiver", Org: "north"}, []string{"p3", "p4"}, []string{"d3"}},
		{auth.Principal{Subject: "pat", Role: "patient", Org: "north", Patient: "p1"}, []string{"p1"}, []string{"d1"}},
		{auth.Principal{Subject: "pat", Role: "patient", Org: "north", Patient: "s1"}, nil, nil},
		{auth.Principal{Subject: "aud", Role: "auditor", Org: "north"}, nil, nil},
	} {
		t.Run(tc.p.Role+"/"+tc.p.Subject+"/"+tc.p.Org, func(t *testing.T) {
			sc, err := pol.Scope(ctx, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			var seen, seenDev []string
			for _, id := range []string{"p1", "p2", "p3", "p4", "s1", "nope"} {
				err := pol.CheckPatient(ctx, tc.p, id)
				switch {
				case err == nil:
					seen = append(seen, id)
				case errors.Is(err, access.ErrNotVisible) && errors.Is(err, store.ErrNotFound):
				default:
					t.Fatalf("CheckPatient(%s): %v, want nil or ErrNotVisible", id, err)
				}
			}
			for _, id := range []string{"d1", "d3", "ds", "nope"} {
				if err := pol.CheckDevice(ctx, sc, id); err == nil {
					seenDev = append(seenDev, id)
				} else if !errors.Is(err, access.ErrNotVisible) {
					t.Fatalf("CheckDevice(%s): %v", id, err)
				}
			}
			if diff := cmp.Diff(tc.patients, seen, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("visible patients (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.devices, seenDev, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("visible devices (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCanAckAlarms(t *testing.T) {
	st := fixture(t)
	pol := access.New(st, func() time.Time { return t0.Add(time.Minute) })
	for _, tc := range []struct {
		p       auth.Principal
		patient string
		want    error
	}{
		{auth.Principal{Subject: "nurse", Role: "nurse", Org: "north"}, "p1", nil},
		{auth.Principal{Subject: "nurse", Role: "nurse", Org: "north"}, "p3", access.ErrNotVisible},
		{auth.Principal{Subject: "fam", Role: "caregiver", Org: "north"}, "p2", nil},
		{auth.Principal{Subject: "gran", Role: "caregiver", Org: "north"}, "p4", access.ErrNoAlarmConsent},
		{auth.Principal{Subject: "gran", Role: "caregiver", Org: "north"}, "p1", access.ErrNotVisible},
	} {
		err := pol.CanAckAlarms(context.Background(), tc.p, tc.patient)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s acking %s: %v, want %v", tc.p.Subject, tc.patient, err, tc.want)
		}
	}
}

func TestScopeHas(t *testing.T) {
	sc := access.Scope{Org: "north", Patients: []string{"a", "c"}}
	for _, tc := range []struct {
		org, patient string
		want         bool
	}{{"north", "a", true}, {"north", "b", false}, {"south", "a", false}, {"north", "", false}, {"", "a", false}} {
		if got := sc.Has(tc.org, tc.patient); got != tc.want {
			t.Errorf("Has(%q, %q) = %v", tc.org, tc.patient, got)
		}
	}
	all := access.Scope{Org: store.DefaultOrg, All: true}
	if !all.Has("", "x") || all.Has("north", "x") {
		t.Error("an org-wide scope of the default organisation must take an empty org as default and refuse others")
	}
}
