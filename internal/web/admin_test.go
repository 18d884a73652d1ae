package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// orgFixture: organisation north with a user of every role, patients n-a
// (in care team ward, whose members are nina and cleo), n-b (in no team)
// and n-c (consented to carl), and organisation south with its admin sam
// and patient s-a. ann is the default organisation's admin.
func orgFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	ctx := context.Background()
	scopedHashOnce.Do(func() { scopedHash = auth.HashPassword(scopedPass) })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, org := range []string{"north", "south"} {
		must(f.st.CreateOrg(ctx, store.Organisation{ID: org, Name: strings.ToUpper(org[:1]) + org[1:]}))
	}
	for _, p := range []struct{ id, org string }{{"n-a", "north"}, {"n-b", "north"}, {"n-c", "north"}, {"s-a", "south"}} {
		must(f.st.CreatePatient(ctx, &store.Patient{ID: p.id, Org: p.org, Resource: []byte(`{"resourceType":"Patient","name":[{"text":"Name ` + p.id + `"}]}`)}))
	}
	for _, u := range []store.User{
		{ID: "nadia", Role: store.RoleAdmin, Org: "north"},
		{ID: "ines", Role: store.RoleIntegration, Org: "north"},
		{ID: "cleo", Role: store.RoleClinician, Org: "north"},
		{ID: "nina", Role: store.RoleNurse, Org: "north"},
		{ID: "carl", Role: store.RoleCaregiver, Org: "north"},
		{ID: "petra", Role: store.RolePatient, Org: "north", Patient: "n-a"},
		{ID: "otto", Role: store.RoleAuditor, Org: "north"},
		{ID: "sam", Role: store.RoleAdmin, Org: "south"},
		{ID: "sid", Role: store.RoleNurse, Org: "south"},
	} {
		u.Name, u.PasswordHash, u.Created = "Name "+u.ID, scopedHash, epoch
		must(f.st.CreateUser(ctx, u))
	}
	must(f.st.CreateCareTeam(ctx, store.CareTeam{ID: "ward", Org: "north", Name: "Ward"}))
	must(f.st.SetCareTeamMember(ctx, "ward", "nina", true))
	must(f.st.SetCareTeamMember(ctx, "ward", "cleo", true))
	must(f.st.SetCareTeamPatient(ctx, "ward", "n-a", true))
	must(f.st.CreateConsent(ctx, store.Consent{ID: "c1", Org: "north", Patient: "n-c", Grantee: "carl", Scope: store.ConsentRead, Start: epoch.Add(-time.Hour)}))
	return f
}

func (f *fixture) as(t *testing.T, user string) *browser {
	t.Helper()
	if user == "ann" {
		return f.signedIn(t, "ann", adminPass)
	}
	return f.signedIn(t, user, scopedPass)
}

// TestNewPagesRoleMatrix opens every administration, audit, notes and
// emergency access page and action as every role: allowed, 403, or (for
// patients outside the user's scope) 404.
func TestNewPagesRoleMatrix(t *testing.T) {
	f := orgFixture(t)
	roles := map[store.Role]string{store.RoleAdmin: "nadia", store.RoleIntegration: "ines", store.RoleClinician: "cleo", store.RoleNurse: "nina",
		store.RoleCaregiver: "carl", store.RolePatient: "petra", store.RoleAuditor: "otto"}
	const ok, no = 200, http.StatusForbidden
	type want map[store.Role]int
	tests := []struct {
		method, path string
		form         url.Values
		want         want // role -> status; roles not named get 403
	}{
		{"GET", "/admin/users", nil, want{store.RoleAdmin: ok}},
		{"GET", "/admin/teams", nil, want{store.RoleAdmin: ok}},
		{"GET", "/admin/consents", nil, want{store.RoleAdmin: ok}},
		{"GET", "/admin/org", nil, want{store.RoleAdmin: ok}},
		{"GET", "/admin/break-glass", nil, want{store.RoleAdmin: ok}},
		{"GET", "/audit", nil, want{store.RoleAdmin: ok, store.RoleAuditor: ok}},
		{"POST", "/audit/verify", nil, want{store.RoleAdmin: ok, store.RoleAuditor: ok}},
		{"GET", "/break-glass", nil, want{store.RoleClinician: ok, store.RoleNurse: ok}},
		{"POST", "/break-glass", url.Values{"patient": {"n-b"}}, want{store.RoleClinician: http.StatusBadRequest, store.RoleNurse: http.StatusBadRequest}},
		{"POST", "/admin/teams", url.Values{"name": {""}}, want{store.RoleAdmin: http.StatusBadRequest}},
		{"POST", "/admin/teams/ward/members", url.Values{"user": {"nobody"}}, want{store.RoleAdmin: http.StatusNotFound}},
		{"POST", "/admin/consents", url.Values{"scope": {"all"}}, want{store.RoleAdmin: http.StatusBadRequest}},
		{"POST", "/admin/consents/nope/revoke", nil, want{store.RoleAdmin: http.StatusNotFound}},
		{"POST", "/admin/org", url.Values{"name": {""}}, want{store.RoleAdmin: http.StatusBadRequest}},
		{"POST", "/admin/users", url.Values{"username": {"x y"}}, want{store.RoleAdmin: http.StatusBadRequest}},
		// Notes: n-a is in the care team of the nurse and the clinician
		// and is the patient user's own record; the caregiver sees n-c only.
		{"POST", "/patients/n-a/notes", url.Values{"text": {""}}, want{store.RoleClinician: http.StatusBadRequest, store.RoleNurse: http.StatusBadRequest, store.RoleCaregiver: http.StatusNotFound}},
		{"POST", "/patients/n-c/notes", url.Values{"text": {""}}, want{store.RoleClinician: http.StatusNotFound, store.RoleNurse: http.StatusNotFound, store.RoleCaregiver: http.StatusBadRequest}},
		// The patient page of someone out of scope: 404, with the emergency
		// access form for clinicians and nurses.
		{"GET", "/patients/n-b", nil, want{store.RoleAdmin: ok, store.RoleIntegration: ok, store.RoleClinician: http.StatusNotFound, store.RoleNurse: http.StatusNotFound,
			store.RoleCaregiver: http.StatusNotFound, store.RolePatient: http.StatusNotFound}},
	}
	browsers := map[store.Role]*browser{}
	for role, user := range roles {
		browsers[role] = f.as(t, user)
	}
	for _, tt := range tests {
		for _, role := range store.Roles {
			t.Run(string(role)+" "+tt.method+" "+tt.path, func(t *testing.T) {
				b := browsers[role]
				b.get("/account") // a fresh CSRF token
				var resp *http.Response
				var body string
				if tt.method == "GET" {
					resp, body = b.get(tt.path)
				} else {
					form := url.Values{} // post adds the token: not to the shared table
					for k, v := range tt.form {
						form[k] = v
					}
					resp, body = b.post(tt.path, form)
				}
				w, named := tt.want[role]
				if !named {
					w = no
				}
				if resp.StatusCode != w {
					t.Errorf("status %d, want %d", resp.StatusCode, w)
				}
				if tt.path == "/patients/n-b" && w == http.StatusNotFound {
					form := strings.Contains(body, `action="/break-glass"`)
					if form != (role == store.RoleClinician || role == store.RoleNurse) {
						t.Errorf("emergency access form shown: %v", form)
					}
				}
			})
		}
	}
	anon := f.browser(t)
	for _, p := range []string{"/admin/teams", "/admin/consents", "/admin/org", "/admin/break-glass", "/audit", "/break-glass"} {
		if resp, _ := anon.get(p); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
			t.Errorf("anonymous GET %s: %d to %q, want a redirect to sign in", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestNewFormsNeedCSRF posts every new form without the session's token,
// and from another site with it: all refused, nothing changed.
func TestNewFormsNeedCSRF(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	posts := []struct {
		user, path string
		form       url.Values
	}{
		{"nadia", "/admin/users", url.Values{"username": {"eve"}, "role": {"admin"}}},
		{"nadia", "/admin/teams", url.Values{"name": {"Evil"}, "id": {"evil"}}},
		{"nadia", "/admin/teams/ward/members", url.Values{"user": {"nina"}, "remove": {"1"}}},
		{"nadia", "/admin/teams/ward/patients", url.Values{"patient": {"n-b"}}},
		{"nadia", "/admin/consents", url.Values{"patient": {"n-b"}, "grantee": {"carl"}, "scope": {"read"}}},
		{"nadia", "/admin/consents/c1/revoke", nil},
		{"nadia", "/admin/org", url.Values{"name": {"Evil"}}},
		{"otto", "/audit/verify", nil},
		{"nina", "/break-glass", url.Values{"patient": {"n-b"}, "reason": {"forged"}}},
		{"nina", "/patients/n-a/notes", url.Values{"text": {"forged"}}},
	}
	for _, p := range posts {
		b := f.as(t, p.user)
		for _, bad := range []struct {
			name, token string
			header      map[string]string
		}{
			{"no token", "", nil},
			{"wrong token", "forged", nil},
			{"cross-site", b.csrf, map[string]string{"Origin": "https://evil.example"}},
		} {
			t.Run(p.path+" "+bad.name, func(t *testing.T) {
				form := url.Values{}
				for k, v := range p.form {
					form[k] = v
				}
				form.Set("csrf", bad.token)
				req, _ := http.NewRequest("POST", f.srv.URL+p.path, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				for k, v := range bad.header {
					req.Header.Set(k, v)
				}
				resp, err := b.c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("status %d, want 403", resp.StatusCode)
				}
			})
		}
	}
	if _, err := f.st.User(ctx, "eve"); err == nil {
		t.Error("a forged form created a user")
	}
	if ts, _ := f.st.CareTeams(ctx, "north"); len(ts) != 1 {
		t.Errorf("care teams after forged forms: %d", len(ts))
	}
	if team, _ := f.st.CareTeam(ctx, "ward"); len(team.Members) != 2 || len(team.Patients) != 1 {
		t.Errorf("care team after forged forms: %+v", team)
	}
	if c, _ := f.st.Consent(ctx, "c1"); !c.Revoked.IsZero() {
		t.Error("a forged form revoked a consent")
	}
	if cs, _ := f.st.Consents(ctx, "north", ""); len(cs) != 1 {
		t.Errorf("consents after forged forms: %d", len(cs))
	}
	if o, _ := f.st.Org(ctx, "north"); o.Name != "North" {
		t.Errorf("a forged form renamed the organisation to %q", o.Name)
	}
	if gs, _ := f.st.BreakGlassGrants(ctx, "north", 10); len(gs) != 0 {
		t.Errorf("a forged form granted break-glass access: %+v", gs)
	}
	if ns, _ := f.st.Notes(ctx, "n-a", 0); len(ns) != 0 {
		t.Errorf("a forged form added a note: %+v", ns)
	}
}

func TestAdminUsers(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	nadia := f.as(t, "nadia")
	resp, body := nadia.get("/admin/users")
	if resp.StatusCode != 200 {
		t.Fatalf("users page: %d", resp.StatusCode)
	}
	for _, u := range []string{"nadia", "nina", "petra", "otto"} {
		if !strings.Contains(body, "<td>"+u+"</td>") {
			t.Errorf("north's user %s is not listed", u)
		}
	}
	for _, u := range []string{"sam", "sid", "ann", "ivan"} {
		if strings.Contains(body, "<td>"+u+"</td>") {
			t.Errorf("user %s of another organisation is listed", u)
		}
	}
	for _, role := range store.Roles {
		if !strings.Contains(body, "<option>"+string(role)+"</option>") {
			t.Errorf("role %s cannot be chosen", role)
		}
	}
	for _, tc := range []struct {
		name string
		form url.Values
		want int
	}{
		{"a patient user needs a patient", url.Values{"username": {"pia"}, "role": {"patient"}}, http.StatusBadRequest},
		{"only a patient user has one", url.Values{"username": {"pia"}, "role": {"nurse"}, "patient": {"n-b"}}, http.StatusBadRequest},
		{"not another organisation's patient", url.Values{"username": {"pia"}, "role": {"patient"}, "patient": {"s-a"}}, http.StatusNotFound},
		{"not an unknown patient", url.Values{"username": {"pia"}, "role": {"patient"}, "patient": {"nope"}}, http.StatusNotFound},
		{"not an unknown role", url.Values{"username": {"pia"}, "role": {"root"}}, http.StatusBadRequest},
		{"not a taken name", url.Values{"username": {"sam"}, "role": {"nurse"}}, http.StatusConflict},
		{"a patient user", url.Values{"username": {"pia"}, "role": {"patient"}, "patient": {"n-b"}}, 200},
		{"an auditor", url.Values{"username": {"aud2"}, "role": {"auditor"}}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nadia.get("/admin/users")
			resp, body := nadia.post("/admin/users", tc.form)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 200 && !strings.Contains(body, `class="secret"`) {
				t.Error("the password is not shown")
			}
		})
	}
	u, err := f.st.User(ctx, "pia")
	if err != nil || u.Org != "north" || u.Patient != "n-b" || u.Role != store.RolePatient {
		t.Fatalf("created patient user %+v, %v", u, err)
	}
}

func TestAdminCareTeams(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	nadia := f.as(t, "nadia")
	_, body := nadia.get("/admin/teams")
	if !strings.Contains(body, `id="team-ward"`) || !strings.Contains(body, `<option value="cleo">`) || strings.Contains(body, `<option value="carl">`) {
		t.Errorf("teams page lacks the ward team, or offers a caregiver as a member")
	}
	for _, tc := range []struct {
		name, path string
		form       url.Values
		want       int
	}{
		{"create", "/admin/teams", url.Values{"name": {"Night shift"}, "id": {"night"}}, http.StatusSeeOther},
		{"create twice", "/admin/teams", url.Values{"name": {"Night shift"}, "id": {"night"}}, http.StatusConflict},
		{"bad id", "/admin/teams", url.Values{"name": {"X"}, "id": {"Bad Id"}}, http.StatusBadRequest},
		{"add a nurse", "/admin/teams/night/members", url.Values{"user": {"nina"}}, http.StatusSeeOther},
		{"not a caregiver", "/admin/teams/night/members", url.Values{"user": {"carl"}}, http.StatusBadRequest},
		{"not another organisation's nurse", "/admin/teams/night/members", url.Values{"user": {"sid"}}, http.StatusNotFound},
		{"add a patient", "/admin/teams/night/patients", url.Values{"patient": {"n-b"}}, http.StatusSeeOther},
		{"not another organisation's patient", "/admin/teams/night/patients", url.Values{"patient": {"s-a"}}, http.StatusNotFound},
		{"remove a member", "/admin/teams/ward/members", url.Values{"user": {"cleo"}, "remove": {"1"}}, http.StatusSeeOther},
		{"no such kind", "/admin/teams/ward/owners", url.Values{"user": {"cleo"}}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nadia.get("/admin/teams")
			if resp, _ := nadia.post(tc.path, tc.form); resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	night, err := f.st.CareTeam(ctx, "night")
	if err != nil || night.Org != "north" || strings.Join(night.Members, ",") != "nina" || strings.Join(night.Patients, ",") != "n-b" {
		t.Errorf("night team %+v, %v", night, err)
	}
	if ward, _ := f.st.CareTeam(ctx, "ward"); strings.Join(ward.Members, ",") != "nina" {
		t.Errorf("ward members %v after removing cleo", ward.Members)
	}
	// South's admin cannot touch north's teams.
	sam := f.as(t, "sam")
	sam.get("/admin/teams")
	if resp, _ := sam.post("/admin/teams/ward/patients", url.Values{"patient": {"s-a"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another organisation's admin changed a team: %d", resp.StatusCode)
	}
	if _, body := sam.get("/admin/teams"); strings.Contains(body, "team-ward") {
		t.Error("another organisation's team is listed")
	}
	// The nurse now sees n-b through the night team.
	if resp, _ := f.as(t, "nina").get("/patients/n-b"); resp.StatusCode != 200 {
		t.Errorf("nurse of the night team opens n-b: %d", resp.StatusCode)
	}
}

func TestAdminConsents(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	nadia := f.as(t, "nadia")
	_, body := nadia.get("/admin/consents")
	if !strings.Contains(body, "n-c") || !strings.Contains(body, "in force") || !strings.Contains(body, "/admin/consents/c1/revoke") {
		t.Errorf("consents page does not list c1 in force")
	}
	tomorrow := epoch.Add(48 * time.Hour).Format(time.DateOnly)
	for _, tc := range []struct {
		name string
		form url.Values
		want int
	}{
		{"grant", url.Values{"patient": {"n-b"}, "grantee": {"carl"}, "scope": {"read+alarms"}, "end": {tomorrow}}, http.StatusSeeOther},
		{"only to caregivers", url.Values{"patient": {"n-b"}, "grantee": {"nina"}, "scope": {"read"}}, http.StatusBadRequest},
		{"end in the past", url.Values{"patient": {"n-b"}, "grantee": {"carl"}, "scope": {"read"}, "end": {"2020-01-01"}}, http.StatusBadRequest},
		{"not another organisation's patient", url.Values{"patient": {"s-a"}, "grantee": {"carl"}, "scope": {"read"}}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nadia.get("/admin/consents")
			if resp, _ := nadia.post("/admin/consents", tc.form); resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	carl := f.as(t, "carl")
	if resp, _ := carl.get("/patients/n-b"); resp.StatusCode != 200 {
		t.Errorf("caregiver with the new consent opens n-b: %d", resp.StatusCode)
	}
	nadia.get("/admin/consents")
	if resp, _ := nadia.post("/admin/consents/c1/revoke", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if resp, _ := carl.get("/patients/n-c"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("caregiver after revocation opens n-c: %d", resp.StatusCode)
	}
	sam := f.as(t, "sam")
	if _, body := sam.get("/admin/consents"); strings.Contains(body, "n-c") {
		t.Error("another organisation's consents are listed")
	}
	cs, _ := f.st.Consents(ctx, "north", "n-b")
	if len(cs) != 1 || cs[0].Scope != store.ConsentReadAlarms || cs[0].End.Format(time.DateOnly) != tomorrow {
		t.Errorf("granted consent %+v", cs)
	}
}

func TestAdminOrgSettings(t *testing.T) {
	f := orgFixture(t)
	nadia := f.as(t, "nadia")
	if _, body := nadia.get("/admin/org"); !strings.Contains(body, `value="North"`) {
		t.Error("the organisation's name is not shown")
	}
	if resp, _ := nadia.post("/admin/org", url.Values{"name": {"North Hospital"}, "privacy_officer": {"sid"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another organisation's user as privacy officer: %d", resp.StatusCode)
	}
	nadia.get("/admin/org")
	if resp, _ := nadia.post("/admin/org", url.Values{"name": {"North Hospital"}, "privacy_officer": {"otto"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %d", resp.StatusCode)
	}
	o, _ := f.st.Org(context.Background(), "north")
	if o.Name != "North Hospital" || o.PrivacyOfficer != "otto" {
		t.Errorf("organisation %+v", o)
	}
	if s, _ := f.st.Org(context.Background(), "south"); s.Name != "South" {
		t.Errorf("another organisation changed: %+v", s)
	}
}

// TestBreakGlassFromPatientPage: a nurse opens a patient outside her care
// team, is offered emergency access, gives a reason, sees the patient
// until the grant expires, and the privacy officer sees the grant.
func TestBreakGlassFromPatientPage(t *testing.T) {
	f := orgFixture(t)
	var mu sync.Mutex // the hook runs on a server goroutine
	var alerted []store.BreakGlass
	f.h.cfg.OnBreakGlass = func(_ context.Context, g store.BreakGlass) { mu.Lock(); alerted = append(alerted, g); mu.Unlock() }
	f.srv.Close() // a new server: its goroutines start after the hook is set
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(f.srv.Close)
	nina := f.as(t, "nina")
	resp, body := nina.get("/patients/n-b")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `name="reason"`) || !strings.Contains(body, `value="n-b"`) {
		t.Fatalf("out-of-scope patient page: %d, want 404 with the form for n-b", resp.StatusCode)
	}
	// The same answer for a patient that does not exist.
	if resp, body := nina.get("/patients/nope"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `name="reason"`) {
		t.Errorf("unknown patient: %d", resp.StatusCode)
	}
	for _, tc := range []struct {
		name string
		form url.Values
		want int
	}{
		{"no reason", url.Values{"patient": {"n-b"}, "reason": {"  "}}, http.StatusBadRequest},
		{"too long", url.Values{"patient": {"n-b"}, "reason": {"fall"}, "minutes": {"241"}}, http.StatusBadRequest},
		{"not a number", url.Values{"patient": {"n-b"}, "reason": {"fall"}, "minutes": {"soon"}}, http.StatusBadRequest},
		{"another organisation", url.Values{"patient": {"s-a"}, "reason": {"fall"}}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nina.get("/break-glass")
			if resp, body := nina.post("/break-glass", tc.form); resp.StatusCode != tc.want || !strings.Contains(body, `class="problem"`) {
				t.Errorf("status %d, want %d with the problem shown", resp.StatusCode, tc.want)
			}
		})
	}
	nina.get("/patients/n-b")
	resp, _ = nina.post("/break-glass", url.Values{"patient": {"n-b"}, "reason": {"found collapsed"}, "minutes": {"30"}})
	mu.Lock()
	defer mu.Unlock()
	if len(alerted) != 1 || alerted[0].Patient != "n-b" || alerted[0].User != "nina" || alerted[0].Reason != "found collapsed" {
		t.Errorf("the privacy officer's alert was given %+v, want the one grant", alerted)
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/patients/n-b" {
		t.Fatalf("grant: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	until := epoch.Add(30 * time.Minute)
	resp, body = nina.get("/patients/n-b")
	if resp.StatusCode != 200 || !strings.Contains(body, "Emergency access") || !strings.Contains(body, clockOf(until)) {
		t.Errorf("patient page after the grant: %d, want 200 naming the expiry %s", resp.StatusCode, clockOf(until))
	}
	if _, body := nina.get("/patients/n-a"); strings.Contains(body, "Emergency access: you see") {
		t.Error("a care team patient shows an emergency access banner")
	}
	_, body = f.as(t, "nadia").get("/admin/break-glass")
	if !strings.Contains(body, "found collapsed") || !strings.Contains(body, "<td>nina</td>") || !strings.Contains(body, "active") {
		t.Error("the privacy officer's list lacks the grant")
	}
	if _, body := f.as(t, "sam").get("/admin/break-glass"); strings.Contains(body, "found collapsed") {
		t.Error("another organisation's admin sees the grant")
	}
	f.set(epoch.Add(31 * time.Minute))
	if resp, _ := f.as(t, "nina").get("/patients/n-b"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after expiry: %d", resp.StatusCode)
	}
}

func clockOf(t time.Time) string { return t.UTC().Format(clockLayout) }

func TestPatientNotes(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	nina := f.as(t, "nina")
	nina.get("/patients/n-a")
	hostile := `<script>alert(1)</script> "quoted" & more`
	resp, _ := nina.post("/patients/n-a/notes", url.Values{"text": {"  Slept well.\r\nAte little.  "}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("add note: %d", resp.StatusCode)
	}
	f.set(epoch.Add(time.Minute))
	nina.get("/patients/n-a")
	nina.post("/patients/n-a/notes", url.Values{"text": {hostile}})
	nina.get("/patients/n-a")
	if resp, _ := nina.post("/patients/n-a/notes", url.Values{"text": {strings.Repeat("x", maxNote+1)}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an over-long note: %d", resp.StatusCode)
	}
	ns, err := f.st.Notes(ctx, "n-a", 0)
	if err != nil || len(ns) != 2 || ns[1].Text != "Slept well.\nAte little." || ns[1].Author != "nina" || ns[1].Role != store.RoleNurse || ns[1].Org != "north" {
		t.Fatalf("notes %+v, %v", ns, err)
	}
	for _, tc := range []struct {
		user       string
		reads      bool
		form       bool
		statusPage int
	}{
		{"nina", true, true, 200},
		{"cleo", true, true, 200},
		{"nadia", true, false, 200},
		{"ines", false, false, 200},
		{"petra", false, false, 200},
		{"carl", false, false, 404},
		{"sam", false, false, 404},
	} {
		t.Run(tc.user, func(t *testing.T) {
			resp, body := f.as(t, tc.user).get("/patients/n-a")
			if resp.StatusCode != tc.statusPage {
				t.Fatalf("patient page: %d, want %d", resp.StatusCode, tc.statusPage)
			}
			if got := strings.Contains(body, "Slept well."); got != tc.reads {
				t.Errorf("reads the notes: %v, want %v", got, tc.reads)
			}
			if got := strings.Contains(body, `action="/patients/n-a/notes"`); got != tc.form {
				t.Errorf("note form: %v, want %v", got, tc.form)
			}
			if strings.Contains(body, "<script>alert") {
				t.Error("a note's text is not escaped")
			}
			if tc.reads && !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
				t.Error("the hostile note is not shown escaped")
			}
		})
	}
	// Admins read, but do not write.
	nadia := f.as(t, "nadia")
	nadia.get("/patients/n-a")
	if resp, _ := nadia.post("/patients/n-a/notes", url.Values{"text": {"admin note"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("admin adds a note: %d", resp.StatusCode)
	}
}

var auditRowRe = regexp.MustCompile(`<tr(?: class="failed")?>\s*<td>(\d+)</td>`)

// TestAuditViewer serves the dashboard behind the audit middleware, as
// the node does: pages leave records, the auditor reads them (and that is
// recorded too), filters narrow them, each organisation sees its own, and
// verification reports an intact chain, then the first altered record.
func TestAuditViewer(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	log := audit.New(f.st, f.clock)
	f.srv.Close()
	f.srv = httptest.NewServer(audit.Wrap(log, audit.Classify, f.h))
	t.Cleanup(f.srv.Close)

	nina := f.as(t, "nina")
	nina.get("/patients/n-a")
	nina.get("/patients/n-b") // refused: 404
	sid := f.as(t, "sid")     // south
	sid.get("/")              // south's ward
	otto := f.as(t, "otto")   // north's auditor
	resp, body := otto.get("/audit")
	if resp.StatusCode != 200 {
		t.Fatalf("audit page: %d", resp.StatusCode)
	}
	if !strings.Contains(body, "/patients/n-a") || !strings.Contains(body, "<td>nina</td>") {
		t.Error("the nurse's patient read is not listed")
	}
	if strings.Contains(body, "<td>sid</td>") {
		t.Error("another organisation's records are listed")
	}
	rows := func(body string) int { return len(auditRowRe.FindAllStringSubmatch(body, -1)) }
	for _, tc := range []struct {
		query string
		want  func(n int) bool
		has   string
	}{
		{"?patient=n-b&from=", func(n int) bool { return n == 1 }, "failure (404)"},
		{"?user=nina&action=read&from=", func(n int) bool { return n == 1 }, "/patients/n-a"},
		{"?outcome=failure&from=", func(n int) bool { return n >= 1 }, "failure (404)"},
		{"?action=login&from=", func(n int) bool { return n >= 2 }, "login"},
		{"?from=2030-01-01", func(n int) bool { return n == 0 }, "No records match"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp, body := otto.get("/audit" + tc.query)
			if resp.StatusCode != 200 || !tc.want(rows(body)) || !strings.Contains(body, tc.has) {
				t.Errorf("status %d, %d rows, want %q in the page", resp.StatusCode, rows(body), tc.has)
			}
		})
	}
	for _, bad := range []string{"?from=yesterday", "?action=explode", "?outcome=maybe", "?after=-3"} {
		if resp, _ := otto.get("/audit" + bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, resp.StatusCode)
		}
	}
	// Viewing was recorded.
	es, err := f.st.AuditEntries(ctx, store.AuditQuery{Subject: "otto"})
	recorded := false
	for _, e := range es {
		recorded = recorded || (e.Entity == "/audit" && e.Action == string(audit.Search) && e.Org == "north")
	}
	if err != nil || !recorded {
		t.Errorf("the auditor's reading is not recorded: %v", err)
	}
	// The default organisation's admin sees every organisation's records.
	if _, body := f.as(t, "ann").get("/audit?from="); !strings.Contains(body, "<td>sid</td>") || !strings.Contains(body, "<td>nina</td>") {
		t.Error("the installation's admin does not see every organisation")
	}
	// Paging: 50 a page, the next link continues after the last shown.
	for i := 0; i < 60; i++ {
		nina.get("/patients/n-a")
	}
	_, body = otto.get("/audit?user=nina&from=")
	next := regexp.MustCompile(`href="(/audit\?[^"]+)">Next page`).FindStringSubmatch(body)
	if rows(body) != auditPageSize || next == nil {
		t.Fatalf("first page: %d rows, next link %v", rows(body), next)
	}
	_, body2 := otto.get(strings.ReplaceAll(next[1], "&amp;", "&"))
	first, second := auditRowRe.FindAllStringSubmatch(body, -1), auditRowRe.FindAllStringSubmatch(body2, -1)
	seq := func(s string) int { n, _ := strconv.Atoi(s); return n }
	if len(second) == 0 || seq(second[0][1]) <= seq(first[len(first)-1][1]) {
		t.Errorf("the second page does not continue the first")
	}

	otto.get("/audit")
	resp, body = otto.post("/audit/verify", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "<b>OK</b>") {
		t.Fatalf("verify: %d, want OK", resp.StatusCode)
	}
	// A record appended outside the chain's rules: verification names it.
	bad, err := f.st.AppendAudit(ctx, func(head store.AuditHead) (store.AuditEntry, error) {
		return store.AuditEntry{Seq: head.Seq + 1, Time: epoch, Action: "read", PrevHash: head.Hash, Hash: make([]byte, audit.HashSize)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	otto.get("/audit")
	_, body = otto.post("/audit/verify", nil)
	if !strings.Contains(body, "<b>Broken</b>") || !strings.Contains(body, "record "+strconv.FormatInt(bad.Seq, 10)+" was altered") {
		t.Errorf("verify after tampering does not name record %d", bad.Seq)
	}
}

// TestNewRoutesAreAudited: every new page and action is recorded by the
// audit middleware, with the patient it names where the path or query does.
func TestNewRoutesAreAudited(t *testing.T) {
	for _, tc := range []struct {
		method, path, patient string
	}{
		{"GET", "/admin/users", ""},
		{"POST", "/admin/users", ""},
		{"GET", "/admin/teams", ""},
		{"POST", "/admin/teams/ward/patients", ""},
		{"GET", "/admin/consents", ""},
		{"POST", "/admin/consents/c1/revoke", ""},
		{"GET", "/admin/org", ""},
		{"POST", "/admin/org", ""},
		{"GET", "/admin/break-glass", ""},
		{"GET", "/audit?patient=p1", "p1"},
		{"POST", "/audit/verify", ""},
		{"GET", "/break-glass?patient=p1", "p1"},
		{"POST", "/break-glass", ""},
		{"POST", "/patients/p1/notes", "p1"},
	} {
		c, ok := audit.Classify(httptest.NewRequest(tc.method, tc.path, nil))
		if !ok || (tc.patient != "" && !slices.Contains(c.Patients, tc.patient)) {
			t.Errorf("%s %s: %+v, %v; want it recorded naming %q", tc.method, tc.path, c, ok, tc.patient)
		}
	}
}
