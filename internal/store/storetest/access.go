package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tendhealth/tend/internal/store"
)

// testAccessOrgFields: every registry record carries its organisation, the
// default one when none was given.
func testAccessOrgFields(t *testing.T, s store.Store) {
	c := ctx(t)
	orgs, err := s.Orgs(c)
	must(t, err, "orgs")
	if len(orgs) != 1 || orgs[0].ID != store.DefaultOrg {
		t.Fatalf("a new store has organisations %+v, want only %q", orgs, store.DefaultOrg)
	}
	must(t, s.CreateOrg(c, store.Organisation{ID: "north", Name: "North Hospital", PrivacyOfficer: "po", Created: t0}), "create org")
	wantErr(t, s.CreateOrg(c, store.Organisation{ID: "north", Name: "again"}), store.ErrConflict, "create org twice")
	o, err := s.Org(c, "north")
	must(t, err, "org")
	if diff := cmp.Diff(store.Organisation{ID: "north", Name: "North Hospital", PrivacyOfficer: "po", Created: t0}, o, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("org (-want +got):\n%s", diff)
	}
	_, err = s.Org(c, "south")
	wantErr(t, err, store.ErrNotFound, "unknown org")

	p := store.Patient{ID: "p-n", Org: "north", Resource: []byte(`{}`)}
	must(t, s.CreatePatient(c, &p), "create patient")
	q := store.Patient{ID: "p-d", Resource: []byte(`{}`)}
	must(t, s.CreatePatient(c, &q), "create patient without org")
	if q.Org != store.DefaultOrg {
		t.Fatalf("create set Org %q, want %q", q.Org, store.DefaultOrg)
	}
	for id, want := range map[string]string{"p-n": "north", "p-d": store.DefaultOrg} {
		got, err := s.Patient(c, id)
		must(t, err, "patient")
		if got.Org != want {
			t.Errorf("patient %s org %q, want %q", id, got.Org, want)
		}
	}
	up := store.Patient{ID: "p-n", Resource: []byte(`{"x":1}`)}
	must(t, s.UpdatePatient(c, &up), "update patient")
	if got, _ := s.Patient(c, "p-n"); got.Org != "north" || up.Org != "north" {
		t.Errorf("update moved the patient to org %q (returned %q); an update never changes the organisation", got.Org, up.Org)
	}

	d := store.Device{ID: "d-n", Org: "north", Patient: "p-n"}
	must(t, s.CreateDevice(c, &d, t0), "create device")
	d2 := store.Device{ID: "d-n", Patient: ""}
	must(t, s.UpdateDevice(c, &d2, t0.Add(time.Hour)), "update device")
	if got, _ := s.Device(c, "d-n"); got.Org != "north" || d2.Org != "north" {
		t.Errorf("device org %q (update returned %q), want north", got.Org, d2.Org)
	}

	must(t, s.PutToken(c, store.Token{Hash: []byte("hash-north-1"), Role: store.RoleClinician, Subject: "u1", Org: "north", Created: t0}), "put token")
	must(t, s.PutToken(c, store.Token{Hash: []byte("hash-default-1"), Role: store.RoleAdmin, Subject: "bootstrap", Created: t0}), "put token")
	for hash, want := range map[string]string{"hash-north-1": "north", "hash-default-1": store.DefaultOrg} {
		tok, err := s.TokenByHash(c, []byte(hash))
		must(t, err, "token")
		if tok.Org != want {
			t.Errorf("token %s org %q, want %q", hash, tok.Org, want)
		}
	}

	must(t, s.CreateUser(c, store.User{ID: "pat", Name: "Pat", Role: store.RolePatient, Org: "north", Patient: "p-n", PasswordHash: "h", Created: t0}), "create user")
	must(t, s.CreateUser(c, store.User{ID: "adm", Name: "Adm", Role: store.RoleAdmin, PasswordHash: "h", Created: t0}), "create user")
	u, err := s.User(c, "pat")
	must(t, err, "user")
	if u.Org != "north" || u.Patient != "p-n" {
		t.Errorf("user org %q patient %q, want north p-n", u.Org, u.Patient)
	}
	users, err := s.OrgUsers(c, "north")
	must(t, err, "org users")
	if len(users) != 1 || users[0].ID != "pat" || users[0].Patient != "p-n" {
		t.Errorf("users of north: %+v, want only pat", users)
	}
	users, err = s.OrgUsers(c, store.DefaultOrg)
	must(t, err, "org users")
	if len(users) != 1 || users[0].ID != "adm" {
		t.Errorf("users of default: %+v, want only adm", users)
	}
}

func testAccessCareTeams(t *testing.T, s store.Store) {
	c := ctx(t)
	must(t, s.CreateCareTeam(c, store.CareTeam{ID: "icu", Org: "north", Name: "ICU", Created: t0}), "create team")
	must(t, s.CreateCareTeam(c, store.CareTeam{ID: "ward", Org: "north", Name: "Ward 3", Created: t0}), "create team")
	must(t, s.CreateCareTeam(c, store.CareTeam{ID: "other", Org: "south", Name: "Other", Created: t0}), "create team")
	wantErr(t, s.CreateCareTeam(c, store.CareTeam{ID: "icu", Org: "north"}), store.ErrConflict, "create team twice")
	for _, step := range []struct {
		team, user, patient string
		in                  bool
	}{
		{"icu", "alice", "", true}, {"icu", "alice", "", true}, {"icu", "", "p1", true}, {"icu", "", "p2", true},
		{"ward", "alice", "", true}, {"ward", "bob", "", true}, {"ward", "", "p2", true}, {"ward", "", "p3", true},
		{"other", "carol", "", true}, {"other", "", "p9", true},
		{"ward", "bob", "", false}, {"icu", "", "p2", false},
	} {
		if step.user != "" {
			must(t, s.SetCareTeamMember(c, step.team, step.user, step.in), "set member")
		} else {
			must(t, s.SetCareTeamPatient(c, step.team, step.patient, step.in), "set patient")
		}
	}
	wantErr(t, s.SetCareTeamMember(c, "nope", "alice", true), store.ErrNotFound, "member of unknown team")
	wantErr(t, s.SetCareTeamPatient(c, "nope", "p1", true), store.ErrNotFound, "patient of unknown team")
	for user, want := range map[string][]string{"alice": {"p1", "p2", "p3"}, "bob": nil, "carol": {"p9"}, "nobody": nil} {
		got, err := s.TeamPatients(c, user)
		must(t, err, "team patients")
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("team patients of %s (-want +got):\n%s", user, diff)
		}
	}
	teams, err := s.CareTeams(c, "north")
	must(t, err, "care teams")
	want := []store.CareTeam{
		{ID: "icu", Org: "north", Name: "ICU", Members: []string{"alice"}, Patients: []string{"p1"}, Created: t0},
		{ID: "ward", Org: "north", Name: "Ward 3", Members: []string{"alice"}, Patients: []string{"p2", "p3"}, Created: t0},
	}
	if diff := cmp.Diff(want, teams, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("care teams (-want +got):\n%s", diff)
	}
	_, err = s.CareTeam(c, "nope")
	wantErr(t, err, store.ErrNotFound, "unknown team")
}

func testAccessConsents(t *testing.T, s store.Store) {
	c := ctx(t)
	consents := []store.Consent{
		{ID: "c1", Org: "north", Patient: "p1", Grantee: "gran", Scope: store.ConsentRead, Start: t0, End: t0.Add(24 * time.Hour), Created: t0},
		{ID: "c2", Org: "north", Patient: "p2", Grantee: "gran", Scope: store.ConsentReadAlarms, Start: t0.Add(time.Hour), Created: t0.Add(time.Second)},
		{ID: "c3", Org: "north", Patient: "p3", Grantee: "other", Scope: store.ConsentRead, Start: t0, Created: t0.Add(2 * time.Second)},
	}
	for _, co := range consents {
		must(t, s.CreateConsent(c, co), "create consent")
	}
	wantErr(t, s.CreateConsent(c, consents[0]), store.ErrConflict, "create consent twice")
	must(t, s.RevokeConsent(c, "c2", t0.Add(3*time.Hour)), "revoke")
	must(t, s.RevokeConsent(c, "c2", t0.Add(5*time.Hour)), "revoke again")
	wantErr(t, s.RevokeConsent(c, "nope", t0), store.ErrNotFound, "revoke unknown")
	got, err := s.Consent(c, "c2")
	must(t, err, "consent")
	if !got.Revoked.Equal(t0.Add(3*time.Hour)) || got.Scope != store.ConsentReadAlarms || !got.End.IsZero() {
		t.Errorf("consent c2 = %+v; want the first revocation kept, no end", got)
	}
	for _, tc := range []struct {
		name string
		at   time.Time
		want []string
	}{
		{"before any", t0.Add(-time.Nanosecond), nil},
		{"at start", t0, []string{"c1"}},
		{"both", t0.Add(2 * time.Hour), []string{"c1", "c2"}},
		{"revoked", t0.Add(3 * time.Hour), []string{"c1"}},
		{"expired", t0.Add(24 * time.Hour), nil},
	} {
		active, err := s.ActiveConsents(c, "gran", tc.at)
		must(t, err, "active consents")
		var ids []string
		for _, a := range active {
			ids = append(ids, a.ID)
			if !a.ActiveAt(tc.at) {
				t.Errorf("%s: store says %s is active, Consent.ActiveAt disagrees", tc.name, a.ID)
			}
		}
		if diff := cmp.Diff(tc.want, ids, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: active consents (-want +got):\n%s", tc.name, diff)
		}
	}
	list, err := s.Consents(c, "north", "")
	must(t, err, "consents")
	if len(list) != 3 || list[0].ID != "c3" {
		t.Errorf("consents of north: %+v, want 3 newest first", list)
	}
	list, err = s.Consents(c, "north", "p1")
	must(t, err, "consents of p1")
	if len(list) != 1 || list[0].ID != "c1" {
		t.Errorf("consents of p1: %+v", list)
	}
	if list, _ := s.Consents(c, "south", ""); len(list) != 0 {
		t.Errorf("another organisation sees consents %+v", list)
	}
}

func testAccessBreakGlass(t *testing.T, s store.Store) {
	c := ctx(t)
	grants := []store.BreakGlass{
		{ID: "g1", Org: "north", User: "doc", Patient: "p1", Reason: "arrest", Start: t0, Expires: t0.Add(time.Hour)},
		{ID: "g2", Org: "north", User: "doc", Patient: "p2", Reason: "fall", Start: t0.Add(30 * time.Minute), Expires: t0.Add(90 * time.Minute)},
		{ID: "g3", Org: "south", User: "doc2", Patient: "p9", Reason: "x", Start: t0, Expires: t0.Add(time.Hour)},
	}
	for _, g := range grants {
		must(t, s.CreateBreakGlass(c, g), "create grant")
	}
	wantErr(t, s.CreateBreakGlass(c, grants[0]), store.ErrConflict, "create grant twice")
	if err := s.CreateBreakGlass(c, store.BreakGlass{ID: "g4", Org: "north", User: "doc", Patient: "p1", Start: t0, Expires: t0.Add(time.Hour)}); err == nil {
		t.Error("a grant without a reason was stored")
	}
	for _, tc := range []struct {
		at   time.Time
		want []string
	}{
		{t0.Add(-time.Second), nil},
		{t0, []string{"g1"}},
		{t0.Add(45 * time.Minute), []string{"g1", "g2"}},
		{t0.Add(time.Hour), []string{"g2"}},
		{t0.Add(90 * time.Minute), nil},
	} {
		active, err := s.ActiveBreakGlass(c, "doc", tc.at)
		must(t, err, "active grants")
		var ids []string
		for _, a := range active {
			ids = append(ids, a.ID)
		}
		if diff := cmp.Diff(tc.want, ids, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("at %s: active grants (-want +got):\n%s", tc.at.Sub(t0), diff)
		}
	}
	list, err := s.BreakGlassGrants(c, "north", 0)
	must(t, err, "grants")
	if diff := cmp.Diff([]store.BreakGlass{grants[1], grants[0]}, list, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("grants of north (-want +got):\n%s", diff)
	}
	if list, _ := s.BreakGlassGrants(c, "north", 1); len(list) != 1 || list[0].ID != "g2" {
		t.Errorf("limit 1: %+v", list)
	}
}

func testAccessSearch(t *testing.T, s store.Store) {
	c := ctx(t)
	for _, p := range []store.Patient{
		{ID: "a1", Org: "north", Identifiers: []store.Identifier{{System: "mrn", Value: "100"}}},
		{ID: "a2", Org: "north", Identifiers: []store.Identifier{{System: "mrn", Value: "200"}}},
		{ID: "a3", Org: "north", Identifiers: []store.Identifier{{System: "mrn", Value: "100"}}},
		{ID: "b1", Org: "south", Identifiers: []store.Identifier{{System: "mrn", Value: "100"}}},
	} {
		p.Resource = []byte(`{}`)
		must(t, s.CreatePatient(c, &p), "create patient")
	}
	for _, d := range []store.Device{{ID: "da1", Org: "north", Patient: "a1"}, {ID: "da2", Org: "north", Patient: "a2"}, {ID: "dx", Org: "north"}, {ID: "db1", Org: "south", Patient: "b1"}} {
		must(t, s.CreateDevice(c, &d, t0), "create device")
	}
	ids := func(ps []store.Patient) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	mrn100 := &store.Identifier{Value: "100"}
	for _, tc := range []struct {
		name      string
		f         store.PatientFilter
		want      []string
		wantTotal int
	}{
		{"org", store.PatientFilter{Org: "north"}, []string{"a1", "a2", "a3"}, 3},
		{"other org", store.PatientFilter{Org: "south"}, []string{"b1"}, 1},
		{"empty org", store.PatientFilter{Org: "east"}, nil, 0},
		{"identifier", store.PatientFilter{Org: "north", Identifier: mrn100}, []string{"a1", "a3"}, 2},
		{"identifier with system", store.PatientFilter{Org: "north", Identifier: &store.Identifier{System: "mrn", Value: "200"}}, []string{"a2"}, 1},
		{"restricted", store.PatientFilter{Org: "north", Restrict: true, IDs: []string{"a3", "a2", "b1"}}, []string{"a2", "a3"}, 2},
		{"restricted to none", store.PatientFilter{Org: "north", Restrict: true}, nil, 0},
		{"restricted and identifier", store.PatientFilter{Org: "north", Restrict: true, IDs: []string{"a3", "b1"}, Identifier: mrn100}, []string{"a3"}, 1},
		{"page", store.PatientFilter{Org: "north", Limit: 1, Offset: 1}, []string{"a2"}, 3},
	} {
		got, total, err := s.SearchPatients(c, tc.f)
		must(t, err, tc.name)
		if diff := cmp.Diff(tc.want, ids(got), cmpopts.EquateEmpty()); diff != "" || total != tc.wantTotal {
			t.Errorf("%s: total %d (want %d), ids (-want +got):\n%s", tc.name, total, tc.wantTotal, diff)
		}
		for _, p := range got {
			if p.Org != tc.f.Org || len(p.Identifiers) == 0 {
				t.Errorf("%s: patient %+v is incomplete or of another organisation", tc.name, p)
			}
		}
	}
	if _, _, err := s.SearchPatients(c, store.PatientFilter{}); err == nil {
		t.Error("a search without an organisation was answered")
	}
	for _, tc := range []struct {
		name      string
		f         store.DeviceFilter
		want      []string
		wantTotal int
	}{
		{"org", store.DeviceFilter{Org: "north"}, []string{"da1", "da2", "dx"}, 3},
		{"bound to", store.DeviceFilter{Org: "north", Restrict: true, IDs: []string{"a2", "b1"}}, []string{"da2"}, 1},
		{"restricted to none", store.DeviceFilter{Org: "north", Restrict: true}, nil, 0},
		{"page", store.DeviceFilter{Org: "north", Limit: 2}, []string{"da1", "da2"}, 3},
	} {
		got, total, err := s.SearchDevices(c, tc.f)
		must(t, err, tc.name)
		var gotIDs []string
		for _, d := range got {
			gotIDs = append(gotIDs, d.ID)
		}
		if diff := cmp.Diff(tc.want, gotIDs, cmpopts.EquateEmpty()); diff != "" || total != tc.wantTotal {
			t.Errorf("devices %s: total %d (want %d), ids (-want +got):\n%s", tc.name, total, tc.wantTotal, diff)
		}
	}
}
