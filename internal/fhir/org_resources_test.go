package fhir

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// orgFixture: two organisations. In north, care team icu (members doc,
// nurse, dr.jo_x) looks after p1, p2 and s1 (s1 is south's: the wall
// holds); team t_2 (member locum) looks after p3. gran holds consent c1
// to p4 (active), c2 to p3 (revoked) and c_4 to p1 (expired); fam holds c3
// to p2. pat is the patient p2. South has sdoc in team sicu with s1, and
// consent sc1.
type orgFixture struct {
	t   *testing.T
	st  store.Store
	h   http.Handler
	now time.Time
}

// orgSecrets must never appear in any answer.
var orgSecrets = []string{"HASHSECRET", "doc@north.example", "JBSWY3DPEHPK3PXP"}

var orgPrincipals = map[string]auth.Principal{
	"north-admin":  {Subject: "admin", Role: "admin", Org: "north"},
	"north-ehr":    {Subject: "ehr", Role: "integration", Org: "north"},
	"north-doc":    {Subject: "doc", Role: "clinician", Org: "north"},
	"north-locum":  {Subject: "locum", Role: "clinician", Org: "north"},
	"north-gran":   {Subject: "gran", Role: "caregiver", Org: "north"},
	"north-pat":    {Subject: "pat", Role: "patient", Org: "north", Patient: "p2"},
	"north-nobody": {Subject: "nobody", Role: "patient", Org: "north"},
	"south-admin":  {Subject: "sadmin", Role: "admin", Org: "south"},
}

func newOrgFixture(t *testing.T, seen *sync.Map) *orgFixture {
	t.Helper()
	f := &orgFixture{t: t, st: newStore(t), now: fixedNow}
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	t0 := fixedNow.Add(-2 * time.Hour)
	must(f.st.CreateOrg(ctx, store.Organisation{ID: "north", Name: "North General", Created: t0}))
	must(f.st.CreateOrg(ctx, store.Organisation{ID: "south", Name: "South Clinic", Created: t0}))
	for _, p := range []store.Patient{{ID: "p1", Org: "north"}, {ID: "p2", Org: "north"}, {ID: "p3", Org: "north"}, {ID: "p4", Org: "north"}, {ID: "s1", Org: "south"}} {
		p.Resource = []byte(`{"resourceType":"Patient","name":[{"family":"Fam-` + p.ID + `"}]}`)
		must(f.st.CreatePatient(ctx, &p))
	}
	must(f.st.CreateDevice(ctx, &store.Device{ID: "d1", Org: "north", Patient: "p1", Resource: []byte(`{"resourceType":"Device","patient":{"reference":"Patient/p1"}}`)}, t0))
	must(f.st.CreateDevice(ctx, &store.Device{ID: "ds", Org: "south", Patient: "s1", Resource: []byte(`{"resourceType":"Device","patient":{"reference":"Patient/s1"}}`)}, t0))
	for _, u := range []store.User{
		{ID: "admin", Name: "Ada Admin", Role: store.RoleAdmin, Org: "north"},
		{ID: "doc", Name: "Dana Doc", Role: store.RoleClinician, Org: "north"},
		{ID: "nurse", Name: "Nora Nurse", Role: store.RoleNurse, Org: "north"},
		{ID: "dr.jo_x", Name: "Jo Xu", Role: store.RoleClinician, Org: "north"},
		{ID: "locum", Name: "Lee Locum", Role: store.RoleClinician, Org: "north"},
		{ID: "gran", Name: "Gran Smith", Role: store.RoleCaregiver, Org: "north"},
		{ID: "pat", Name: "Pat Two", Role: store.RolePatient, Org: "north", Patient: "p2"},
		{ID: "sdoc", Name: "Sam Southdoc", Role: store.RoleClinician, Org: "south"},
	} {
		u.PasswordHash, u.Created = "HASHSECRET", t0
		must(f.st.CreateUser(ctx, u))
	}
	must(f.st.SetUserContact(ctx, "doc", "email:doc@north.example"))
	for _, tm := range []store.CareTeam{{ID: "icu", Org: "north", Name: "ICU ward"}, {ID: "t_2", Org: "north", Name: "Night team"}, {ID: "sicu", Org: "south", Name: "South ICU"}} {
		tm.Created = t0
		must(f.st.CreateCareTeam(ctx, tm))
	}
	for team, members := range map[string][]string{"icu": {"doc", "nurse", "dr.jo_x"}, "t_2": {"locum"}, "sicu": {"sdoc"}} {
		for _, m := range members {
			must(f.st.SetCareTeamMember(ctx, team, m, true))
		}
	}
	for team, patients := range map[string][]string{"icu": {"p1", "p2", "s1"}, "t_2": {"p3"}, "sicu": {"s1"}} {
		for _, p := range patients {
			must(f.st.SetCareTeamPatient(ctx, team, p, true))
		}
	}
	for _, c := range []store.Consent{
		{ID: "c1", Org: "north", Patient: "p4", Grantee: "gran", Scope: store.ConsentRead, Start: t0, End: t0.Add(48 * time.Hour), Created: t0},
		{ID: "c2", Org: "north", Patient: "p3", Grantee: "gran", Scope: store.ConsentReadAlarms, Start: t0, Created: t0.Add(time.Second)},
		{ID: "c3", Org: "north", Patient: "p2", Grantee: "fam", Scope: store.ConsentReadAlarms, Start: t0, Created: t0.Add(2 * time.Second)},
		{ID: "c_4", Org: "north", Patient: "p1", Grantee: "gran", Scope: store.ConsentRead, Start: t0.Add(-72 * time.Hour), End: t0.Add(-24 * time.Hour), Created: t0.Add(3 * time.Second)},
		{ID: "sc1", Org: "south", Patient: "s1", Grantee: "sgran", Scope: store.ConsentRead, Start: t0, Created: t0},
	} {
		must(f.st.CreateConsent(ctx, c))
	}
	must(f.st.RevokeConsent(ctx, "c2", t0.Add(time.Hour)))

	clock := func() time.Time { return f.now }
	h := NewHandler(Config{Store: f.st, Now: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Access: access.New(f.st, clock)})
	checked := schemaChecking(t, h, seen)
	f.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Authentication happens in front of the FHIR handler; here a
		// bearer token names the principal.
		p, ok := orgPrincipals[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		if !ok {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		checked.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
	return f
}

func (f *orgFixture) get(who, target string, headers ...string) (int, []byte) {
	f.t.Helper()
	req := httptest.NewRequest("GET", target, nil)
	req.Header.Set("Authorization", "Bearer "+who)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// searchIDs returns a searchset's total and the ids of its matches, sorted.
func searchIDs(t *testing.T, body []byte) (int, []string) {
	t.Helper()
	var b struct {
		ResourceType string
		Total        int
		Entry        []struct {
			Resource struct{ ResourceType, ID string }
			Search   struct{ Mode string }
		}
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
		t.Fatalf("not a Bundle: %v %.300s", err, body)
	}
	ids := []string{}
	for _, e := range b.Entry {
		if e.Search.Mode == "match" {
			ids = append(ids, e.Resource.ID)
		}
	}
	slices.Sort(ids)
	return b.Total, ids
}

// entriesOf is the body without its links, which echo the query.
func entriesOf(body []byte) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return string(body)
	}
	delete(m, "link")
	b, _ := json.Marshal(m)
	return string(b)
}

// TestOrgResourcesScoping walks every principal over every resource:
// searches return and count exactly what the role may see, every other
// record reads as 404, and nothing of the other organisation, no
// credential and no contact appears.
func TestOrgResourcesScoping(t *testing.T) {
	seen := &sync.Map{}
	f := newOrgFixture(t, seen)
	all := map[string][]string{
		"Organization": {"north", "south"},
		"Practitioner": {"doc", "dr.0jo.1x", "locum", "nurse", "sdoc", "admin", "gran", "pat"},
		"CareTeam":     {"icu", "sicu", "t.12"},
		"Consent":      {"c.14", "c1", "c2", "c3", "sc1"},
	}
	northClinical := []string{"doc", "dr.0jo.1x", "locum", "nurse"}
	for _, tc := range []struct {
		who  string
		want map[string][]string
		// teamPatients: the patients each visible team shows.
		teamPatients map[string][]string
		// foreign strings that must not appear in any answer
		foreign []string
	}{
		{"north-admin", map[string][]string{"Organization": {"north"}, "Practitioner": northClinical, "CareTeam": {"icu", "t.12"}, "Consent": {"c.14", "c1", "c2", "c3"}},
			map[string][]string{"icu": {"p1", "p2"}, "t.12": {"p3"}}, []string{"s1", "sdoc", "South", "sgran"}},
		{"north-ehr", map[string][]string{"Organization": {"north"}, "Practitioner": northClinical, "CareTeam": {"icu", "t.12"}, "Consent": {"c.14", "c1", "c2", "c3"}},
			map[string][]string{"icu": {"p1", "p2"}, "t.12": {"p3"}}, []string{"s1", "sdoc", "South"}},
		{"north-doc", map[string][]string{"Organization": {"north"}, "Practitioner": northClinical, "CareTeam": {"icu"}, "Consent": {"c.14", "c3"}},
			map[string][]string{"icu": {"p1", "p2"}}, []string{"s1", "sdoc", "South", "Night", "p3", "p4"}},
		{"north-locum", map[string][]string{"Organization": {"north"}, "Practitioner": northClinical, "CareTeam": {"t.12"}, "Consent": {"c2"}},
			map[string][]string{"t.12": {"p3"}}, []string{"s1", "ICU", "p1", "p2", "p4"}},
		{"north-gran", map[string][]string{"Organization": {"north"}, "Practitioner": {}, "CareTeam": {}, "Consent": {"c.14", "c1", "c2"}},
			nil, []string{"s1", "fam", "Dana", "Nora"}},
		{"north-pat", map[string][]string{"Organization": {"north"}, "Practitioner": {"doc", "dr.0jo.1x", "nurse"}, "CareTeam": {"icu"}, "Consent": {"c3"}},
			map[string][]string{"icu": {"p2"}}, []string{"s1", "p1", "p3", "p4", "gran", "Lee", "Night"}},
		{"north-nobody", map[string][]string{"Organization": {"north"}, "Practitioner": {}, "CareTeam": {}, "Consent": {}},
			nil, []string{"s1", "p1", "p2", "Dana"}},
		{"south-admin", map[string][]string{"Organization": {"south"}, "Practitioner": {"sdoc"}, "CareTeam": {"sicu"}, "Consent": {"sc1"}},
			map[string][]string{"sicu": {"s1"}}, []string{"north", "North", "p1", "p2", `"doc"`, `"gran"`, `"icu"`}},
	} {
		t.Run(tc.who, func(t *testing.T) {
			clean := func(what string, body []byte) {
				t.Helper()
				s := entriesOf(body)
				for _, bad := range append(append([]string{}, orgSecrets...), tc.foreign...) {
					if strings.Contains(s, bad) {
						t.Errorf("%s: carries %q: %.400s", what, bad, s)
					}
				}
			}
			for typ, want := range tc.want {
				code, body := f.get(tc.who, "/fhir/"+typ)
				if code != 200 {
					t.Fatalf("search %s: %d %s", typ, code, body)
				}
				clean("search "+typ, body)
				total, ids := searchIDs(t, body)
				if !slices.Equal(ids, want) || total != len(want) {
					t.Errorf("search %s: total %d %v, want %v", typ, total, ids, want)
				}
				code, body = f.get(tc.who, "/fhir/"+typ+"?_summary=count")
				if n, _ := searchIDs(t, body); code != 200 || n != len(want) {
					t.Errorf("count %s: %d total %d, want %d", typ, code, n, len(want))
				}
				for _, id := range all[typ] {
					code, body := f.get(tc.who, "/fhir/"+typ+"/"+id)
					clean("read "+typ+"/"+id, body)
					wantCode := http.StatusNotFound
					if slices.Contains(want, id) {
						wantCode = http.StatusOK
					}
					if code != wantCode {
						t.Errorf("read %s/%s: %d, want %d: %.200s", typ, id, code, wantCode, body)
					}
				}
			}
			for team, want := range tc.teamPatients {
				_, body := f.get(tc.who, "/fhir/CareTeam/"+team)
				var ct CareTeam
				json.Unmarshal(body, &ct)
				var got []string
				for _, g := range ct.Contained {
					for _, m := range g.Member {
						got = append(got, strings.TrimPrefix(m.Entity.Reference, "Patient/"))
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("CareTeam/%s shows patients %v, want %v", team, got, want)
				}
			}
		})
	}
	for _, kind := range []string{"Organization", "Practitioner", "CareTeam", "Consent", "Bundle/searchset", "OperationOutcome"} {
		if _, ok := seen.Load(kind); !ok && schemaAvailable() {
			t.Errorf("no %s answer was validated against the R4 schema", kind)
		}
	}
}

func schemaAvailable() bool {
	_, err := fhirSchema()
	return err == nil
}

// TestOrgResourcesSearchParams checks each declared parameter, as the
// admin of north (who sees all of north).
func TestOrgResourcesSearchParams(t *testing.T) {
	f := newOrgFixture(t, nil)
	for _, tc := range []struct {
		query string
		want  []string // ids; nil for an error
		code  int
	}{
		{"Organization?name=north", []string{"north"}, 200},
		{"Organization?name=GEN", []string{"north"}, 200},
		{"Organization?name=south", []string{}, 200},
		{"Organization?_id=south", []string{}, 200},
		{"Organization?_id=north,south", []string{"north"}, 200},
		{"Organization?_id=bad_id", nil, 400},
		{"Practitioner?name=nora", []string{"nurse"}, 200},
		{"Practitioner?name=lee,dana", []string{"doc", "locum"}, 200},
		{"Practitioner?name=dana&name=doc", []string{"doc"}, 200},
		{"Practitioner?name=dana&name=nora", []string{}, 200},
		{"Practitioner?identifier=urn:tend:user|doc", []string{"doc"}, 200},
		{"Practitioner?identifier=doc", []string{"doc"}, 200},
		{"Practitioner?identifier=urn:other|doc", []string{}, 200},
		{"Practitioner?identifier=urn:tend:user|gran", []string{}, 200}, // a caregiver is no Practitioner
		{"Practitioner?identifier=urn:tend:user|sdoc", []string{}, 200},
		{"Practitioner?identifier=urn:tend:user|dr.jo_x", []string{"dr.0jo.1x"}, 200},
		{"Practitioner?_id=dr.0jo.1x", []string{"dr.0jo.1x"}, 200},
		{"Practitioner?_id=dr.jo", nil, 400}, // ".j" is no escape: not an id
		{"Practitioner?identifier=", nil, 400},
		{"CareTeam?patient=p1", []string{"icu"}, 200},
		{"CareTeam?patient=Patient/p3", []string{"t.12"}, 200},
		{"CareTeam?patient=p1,p3", []string{"icu", "t.12"}, 200},
		{"CareTeam?patient=s1", []string{}, 200},
		{"CareTeam?subject=Patient/p2", []string{"icu"}, 200},
		{"CareTeam?participant=Practitioner/locum", []string{"t.12"}, 200},
		{"CareTeam?participant=dr.0jo.1x", []string{"icu"}, 200},
		{"CareTeam?participant=sdoc", []string{}, 200},
		{"CareTeam?participant=doc&patient=p3", []string{}, 200},
		{"CareTeam?status=active", []string{"icu", "t.12"}, 200},
		{"CareTeam?status=http://hl7.org/fhir/care-team-status|inactive", []string{}, 200},
		{"CareTeam?name=night", []string{"t.12"}, 200},
		{"CareTeam?_id=t.12", []string{"t.12"}, 200},
		{"CareTeam?patient=not_an_id", nil, 400},
		{"Consent?patient=p2", []string{"c3"}, 200},
		{"Consent?patient=Patient/p1", []string{"c.14"}, 200},
		{"Consent?patient=s1", []string{}, 200},
		{"Consent?actor=gran", []string{"c.14", "c1", "c2"}, 200},
		{"Consent?actor=RelatedPerson/fam", []string{"c3"}, 200},
		{"Consent?actor=gran&status=active", []string{"c1"}, 200},
		{"Consent?status=inactive", []string{"c.14", "c2"}, 200},
		{"Consent?status=http://hl7.org/fhir/consent-state-codes|active", []string{"c1", "c3"}, 200},
		{"Consent?status=urn:other|active", []string{}, 200},
		{"Consent?status=draft", []string{}, 200},
		{"Consent?_id=c1,c.14,sc1", []string{"c.14", "c1"}, 200},
		{"Consent?actor=Patient/gran", nil, 400},
		{"Consent?_count=1&_offset=1&actor=gran", []string{"c2"}, 200}, // newest first: c_4, c2, c1
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := f.get("north-admin", "/fhir/"+tc.query, "Prefer", "handling=strict")
			if code != tc.code {
				t.Fatalf("%d, want %d: %s", code, tc.code, body)
			}
			if tc.want == nil {
				return
			}
			total, ids := searchIDs(t, body)
			if !slices.Equal(ids, tc.want) {
				t.Errorf("ids %v, want %v", ids, tc.want)
			}
			if !strings.Contains(tc.query, "_count") && total != len(tc.want) {
				t.Errorf("total %d, want %d", total, len(tc.want))
			}
		})
	}
	// Unknown parameters: refused when strict, ignored with an outcome
	// otherwise (and left out of the links).
	if code, _ := f.get("north-admin", "/fhir/Consent?bogus=1", "Prefer", "handling=strict"); code != 400 {
		t.Errorf("strict unknown parameter: %d", code)
	}
	code, body := f.get("north-admin", "/fhir/Consent?bogus=1")
	if code != 200 || !strings.Contains(string(body), `"mode": "outcome"`) || strings.Contains(string(body), "bogus=1") {
		t.Errorf("lenient unknown parameter: %d %s", code, body)
	}
	// Writes are not served.
	for _, typ := range []string{"Organization", "Practitioner", "CareTeam", "Consent"} {
		req := httptest.NewRequest("POST", "/fhir/"+typ, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer north-admin")
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET" {
			t.Errorf("POST %s: %d Allow %q", typ, rec.Code, rec.Header().Get("Allow"))
		}
	}
}

// TestConsentRendering pins the mapping of a consent's scope, period and
// state onto R4 Consent.
func TestConsentRendering(t *testing.T) {
	f := newOrgFixture(t, nil)
	for _, tc := range []struct {
		id, status, scope, start, end, actor string
	}{
		{"c1", "active", "read", "2026-11-23T10:00:00Z", "2026-11-25T10:00:00Z", "gran"},
		{"c2", "inactive", "read+alarms", "2026-11-23T10:00:00Z", "", "gran"},
		{"c.14", "inactive", "read", "2026-11-20T10:00:00Z", "2026-11-22T10:00:00Z", "gran"},
		{"c3", "active", "read+alarms", "2026-11-23T10:00:00Z", "", "fam"},
	} {
		code, body := f.get("north-admin", "/fhir/Consent/"+tc.id)
		if code != 200 {
			t.Fatalf("Consent/%s: %d %s", tc.id, code, body)
		}
		var c Consent
		if err := json.Unmarshal(body, &c); err != nil {
			t.Fatal(err)
		}
		var scope string
		for _, cd := range c.Provision.Action[0].Coding {
			if cd.System == systemTendConsentScope {
				scope = cd.Code
			}
		}
		got := []string{c.Status, scope, c.Provision.Period.Start, c.Provision.Period.End, c.Provision.Actor[0].Reference.Identifier.Value}
		want := []string{tc.status, tc.scope, tc.start, tc.end, tc.actor}
		if !slices.Equal(got, want) {
			t.Errorf("Consent/%s: %v, want %v", tc.id, got, want)
		}
	}
	// Expiry follows the clock: c1 ends two days after it started.
	f.now = fixedNow.Add(48 * time.Hour)
	_, body := f.get("north-admin", "/fhir/Consent?status=active")
	if _, ids := searchIDs(t, body); !slices.Equal(ids, []string{"c3"}) {
		t.Errorf("active after c1 ended: %v", ids)
	}
}

// TestInstanceHistory: the history holds the kept (current) version with
// the interaction that made it, and is scoped like a read.
func TestInstanceHistory(t *testing.T) {
	f := newOrgFixture(t, nil)
	ctx := context.Background()
	p, err := f.st.Patient(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	p.Resource = []byte(`{"resourceType":"Patient","gender":"female"}`)
	if err := f.st.UpdatePatient(ctx, &p); err != nil {
		t.Fatal(err)
	}
	type hist struct {
		Type  string
		Total int
		Link  []BundleLink
		Entry []struct {
			Resource struct {
				ID   string
				Meta Meta
			}
			Request  historyRequest
			Response historyResponse
		}
	}
	get := func(who, target string, headers ...string) (int, hist) {
		t.Helper()
		code, body := f.get(who, target, headers...)
		var h hist
		json.Unmarshal(body, &h)
		return code, h
	}
	code, h := get("north-doc", "/fhir/Patient/p1/_history")
	if code != 200 || h.Type != "history" || h.Total != 1 || len(h.Entry) != 1 {
		t.Fatalf("history: %d %+v", code, h)
	}
	e := h.Entry[0]
	if e.Request != (historyRequest{Method: "PUT", URL: "Patient/p1"}) || e.Response.Status != "200" || e.Response.Etag != `W/"2"` || e.Resource.Meta.VersionID != "2" {
		t.Errorf("updated patient's history entry: %+v", e)
	}
	code, h = get("north-doc", "/fhir/Device/d1/_history")
	if code != 200 || h.Total != 1 || len(h.Entry) != 1 || h.Entry[0].Request != (historyRequest{Method: "POST", URL: "Device"}) || h.Entry[0].Response.Status != "201" {
		t.Errorf("created device's history: %d %+v", code, h)
	}
	// _since after the kept version: nothing kept matches.
	if _, h = get("north-doc", "/fhir/Patient/p1/_history?_since=2026-11-24"); h.Total != 0 || len(h.Entry) != 0 {
		t.Errorf("_since after the kept version: %+v", h)
	}
	if _, h = get("north-doc", "/fhir/Patient/p1/_history?_since=2026-11-01"); h.Total != 1 {
		t.Errorf("_since before the kept version: %+v", h)
	}
	if _, h = get("north-doc", "/fhir/Patient/p1/_history?_count=0"); h.Total != 1 || len(h.Entry) != 0 {
		t.Errorf("_count=0: %+v", h)
	}
	if _, h = get("north-doc", "/fhir/Patient/p1/_history?_at=2026"); len(h.Link) != 1 || strings.Contains(h.Link[0].URL, "_at") {
		t.Errorf("an ignored parameter stays out of the self link: %+v", h.Link)
	}
	for _, tc := range []struct {
		who, target string
		code        int
	}{
		{"north-doc", "/fhir/Patient/p3/_history", 404},   // outside the doctor's teams
		{"north-doc", "/fhir/Patient/s1/_history", 404},   // another organisation
		{"north-doc", "/fhir/Patient/nope/_history", 404}, // does not exist
		{"north-doc", "/fhir/Device/ds/_history", 404},
		{"south-admin", "/fhir/Patient/p1/_history", 404},
		{"north-pat", "/fhir/Patient/p2/_history", 200},
		{"north-doc", "/fhir/Patient/p1/_history?_since=yesterday", 400},
		{"north-doc", "/fhir/Patient/p1/_history/1", 404}, // the first version is not kept
	} {
		if code, body := f.get(tc.who, tc.target); code != tc.code {
			t.Errorf("%s %s: %d, want %d: %.200s", tc.who, tc.target, code, tc.code, body)
		}
	}
	if code, _ := f.get("north-doc", "/fhir/Patient/p1/_history?_at=2026", "Prefer", "handling=strict"); code != 400 {
		t.Errorf("strict unknown history parameter: %d", code)
	}
}

// TestOrgResourcesAccessClassified: SMART scopes of the new paths.
func TestOrgResourcesAccessClassified(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/Consent", "Consent:s"},
		{"/Consent/c1", "Consent:r"},
		{"/CareTeam", "CareTeam:s"},
		{"/Practitioner/doc", "Practitioner:r"},
		{"/Organization", "Organization:s"},
		{"/Patient/p1/_history", "Patient:r"},
		{"/Device/d1/_history", "Device:r"},
	} {
		acc, err := RequiredAccess("GET", tc.path, url.Values{}, "", nil)
		if err != nil || len(acc) != 1 || acc[0].Type+":"+acc[0].AnyString() != tc.want {
			t.Errorf("%s: %+v %v, want %s", tc.path, acc, err, tc.want)
		}
	}
}

func TestGoldenOrgResources(t *testing.T) {
	f := newOrgFixture(t, nil)
	for name, target := range map[string]string{
		"organization.json":    "/fhir/Organization/north",
		"practitioner.json":    "/fhir/Practitioner/dr.0jo.1x",
		"careteam.json":        "/fhir/CareTeam/icu",
		"consent.json":         "/fhir/Consent/c2",
		"consent_search.json":  "/fhir/Consent?actor=gran&_count=2",
		"patient_history.json": "/fhir/Patient/p1/_history",
	} {
		t.Run(name, func(t *testing.T) {
			code, body := f.get("north-admin", target)
			if code != 200 {
				t.Fatalf("%s: %d %s", target, code, body)
			}
			checkGolden(t, name, body)
		})
	}
}

func TestFHIRIDCodec(t *testing.T) {
	for _, tc := range []struct {
		id, fid string
		ok      bool
	}{
		{"north", "north", true},
		{"dr.jo_x", "dr.0jo.1x", true},
		{"a_B-c", "a.1B-c", true},
		{"._", ".0.1", true},
		{"", "", false},
		{"has space", "", false},
		{"é", "", false},
		{strings.Repeat("_", 33), "", false}, // 66 once escaped
		{strings.Repeat("_", 32), strings.Repeat(".1", 32), true},
	} {
		fid, ok := encodeID(tc.id)
		if ok != tc.ok || (ok && fid != tc.fid) {
			t.Errorf("encodeID(%q) = %q %v, want %q %v", tc.id, fid, ok, tc.fid, tc.ok)
		}
		if ok {
			if back, ok := decodeID(fid); !ok || back != tc.id {
				t.Errorf("decodeID(%q) = %q %v", fid, back, ok)
			}
		}
	}
	for _, bad := range []string{"a.", "a.2", "a..0", "a_b", ""} {
		if id, ok := decodeID(bad); ok {
			t.Errorf("decodeID(%q) = %q, want refused", bad, id)
		}
	}
}

// FuzzDecodeID: every FHIR id decodes to at most one record id, which
// encodes back to it.
func FuzzDecodeID(f *testing.F) {
	for _, s := range []string{"north", "dr.0jo.1x", ".", ".0", "a.1", "x.9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, fid string) {
		id, ok := decodeID(fid)
		if !ok {
			return
		}
		back, ok := encodeID(id)
		if !ok || back != fid {
			t.Fatalf("decodeID(%q) = %q, which encodes to %q %v", fid, id, back, ok)
		}
	})
}
