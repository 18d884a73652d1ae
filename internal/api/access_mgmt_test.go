package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/store"
)

const operatorTok = "operator-token-of-the-default-organisation"

func (m *matrix) operator(t *testing.T) string {
	t.Helper()
	err := m.st.PutToken(context.Background(), store.Token{Hash: auth.HashSecret(operatorTok), Role: store.RoleAdmin, Subject: "bootstrap"})
	if err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatal(err)
	}
	return operatorTok
}

func TestManagementAPI(t *testing.T) {
	m := newMatrix(t)
	op := m.operator(t)
	north, south := mToken("north", store.RoleAdmin), mToken("south", store.RoleAdmin)
	pat := mToken("north", store.RolePatient)
	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
		contains                        string
	}{
		{"an organisation's admin creates no organisation", "POST", "/api/v1/orgs", north, `{"id":"east","name":"East"}`, 403, ""},
		{"the operator does", "POST", "/api/v1/orgs", op, `{"id":"east","name":"East","privacy_officer":"east-po"}`, 201, `"privacy_officer":"east-po"`},
		{"not twice", "POST", "/api/v1/orgs", op, `{"id":"east","name":"East"}`, 409, ""},
		{"ids are plain", "POST", "/api/v1/orgs", op, `{"id":"East Side","name":"East"}`, 400, ""},
		{"admins list their own organisation", "GET", "/api/v1/orgs", north, "", 200, `"id":"north"`},
		{"clinicians manage nothing", "GET", "/api/v1/orgs", mToken("north", store.RoleClinician), "", 403, ""},
		{"a user of the own organisation", "POST", "/api/v1/users", north, `{"id":"north-doc2","role":"clinician"}`, 201, `"password"`},
		{"a patient user needs a patient", "POST", "/api/v1/users", north, `{"id":"north-pat2","role":"patient"}`, 400, ""},
		{"of the own organisation", "POST", "/api/v1/users", north, `{"id":"north-pat2","role":"patient","patient":"pt-south-a"}`, 404, ""},
		{"a patient user", "POST", "/api/v1/users", north, `{"id":"north-pat2","role":"patient","patient":"pt-north-a"}`, 201, `"patient":"pt-north-a"`},
		{"no unknown roles", "POST", "/api/v1/users", north, `{"id":"north-x","role":"root"}`, 400, ""},
		{"no other organisation's users", "POST", "/api/v1/users", north, `{"id":"north-y","role":"nurse","org":"south"}`, 403, ""},
		{"the operator creates users anywhere", "POST", "/api/v1/users", op, `{"id":"east-admin","role":"admin","org":"east"}`, 201, `"org":"east"`},
		{"users are listed per organisation", "GET", "/api/v1/users", south, "", 200, `"south-nurse"`},
		{"another organisation's team is not found", "GET", "/api/v1/care-teams/ward-north", south, "", 404, ""},
		{"nor changed", "PUT", "/api/v1/care-teams/ward-north/patients/pt-south-a", south, "", 404, ""},
		{"a team takes patients of its organisation only", "PUT", "/api/v1/care-teams/ward-north/patients/pt-south-a", north, "", 404, ""},
		{"and members of its organisation only", "PUT", "/api/v1/care-teams/ward-north/members/south-nurse", north, "", 404, ""},
		{"who are clinicians or nurses", "PUT", "/api/v1/care-teams/ward-north/members/north-caregiver", north, "", 400, ""},
		{"teams are listed", "GET", "/api/v1/care-teams", north, "", 200, `"members":["north-clinician","north-nurse"]`},
		{"consent goes to a caregiver", "POST", "/api/v1/consents", north, `{"patient":"pt-north-e","grantee":"north-nurse"}`, 400, ""},
		{"of the organisation", "POST", "/api/v1/consents", north, `{"patient":"pt-north-e","grantee":"south-caregiver"}`, 404, ""},
		{"with a known scope", "POST", "/api/v1/consents", north, `{"patient":"pt-north-e","grantee":"north-caregiver","scope":"write"}`, 400, ""},
		{"a patient grants for themself", "POST", "/api/v1/consents", pat, `{"grantee":"north-caregiver","scope":"read"}`, 201, `"patient":"pt-north-b"`},
		{"and only for themself", "POST", "/api/v1/consents", pat, `{"patient":"pt-north-a","grantee":"north-caregiver"}`, 403, ""},
		{"a patient lists their own consents", "GET", "/api/v1/consents", pat, "", 200, `"patient":"pt-north-b"`},
		{"caregivers grant nothing", "POST", "/api/v1/consents", mToken("north", store.RoleCaregiver), `{"patient":"pt-north-c","grantee":"north-caregiver"}`, 403, ""},
		{"break-glass grants are listed for the organisation's admin", "GET", "/api/v1/break-glass", north, "", 200, `"reason":"cardiac arrest on the corridor"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := m.do(t, tc.method, tc.path, tc.token, tc.body)
			if code != tc.want || !strings.Contains(string(b), tc.contains) {
				t.Errorf("%s %s: %d %s, want %d containing %s", tc.method, tc.path, code, b, tc.want, tc.contains)
			}
			if strings.Contains(string(b), "password_hash") || strings.Contains(string(b), "PasswordHash") {
				t.Errorf("a password hash left the server: %s", b)
			}
		})
	}
	// The patient's consent and its revocation take effect at once.
	cg := mToken("north", store.RoleCaregiver)
	m.mustDo(t, "GET", "/fhir/Patient/pt-north-b", cg, "", 200)
	var consents struct{ Consents []consentJSON }
	json.Unmarshal(m.mustDo(t, "GET", "/api/v1/consents", pat, "", 200), &consents)
	if len(consents.Consents) != 1 {
		t.Fatalf("patient consents: %+v", consents)
	}
	m.mustDo(t, "POST", "/api/v1/consents/"+consents.Consents[0].ID+"/revoke", mToken("south", store.RoleAdmin), "", 404)
	m.mustDo(t, "POST", "/api/v1/consents/"+consents.Consents[0].ID+"/revoke", pat, "", 200)
	m.mustDo(t, "GET", "/fhir/Patient/pt-north-b", cg, "", 404)
}

func TestBreakGlass(t *testing.T) {
	m := newMatrix(t)
	clin, nurse := mToken("north", store.RoleClinician), mToken("north", store.RoleNurse)
	for _, tc := range []struct {
		name, token, body string
		want              int
	}{
		{"a reason is required", nurse, `{"patient":"pt-north-e"}`, 400},
		{"a blank reason is none", nurse, `{"patient":"pt-north-e","reason":"  "}`, 400},
		{"at most four hours", nurse, `{"patient":"pt-north-e","reason":"fall","minutes":241}`, 400},
		{"no negative time", nurse, `{"patient":"pt-north-e","reason":"fall","minutes":-1}`, 400},
		{"only within the organisation", nurse, `{"patient":"pt-south-e","reason":"fall"}`, 404},
		{"not for unknown patients", nurse, `{"patient":"nope","reason":"fall"}`, 404},
		{"not for caregivers", mToken("north", store.RoleCaregiver), `{"patient":"pt-north-e","reason":"fall"}`, 403},
		{"not for admins", mToken("north", store.RoleAdmin), `{"patient":"pt-north-e","reason":"fall"}`, 403},
	} {
		if code, b := m.do(t, "POST", "/api/v1/break-glass", tc.token, tc.body); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, b, tc.want)
		}
	}
	m.mustDo(t, "GET", "/fhir/Patient/pt-north-e", nurse, "", 404)
	m.advance(time.Minute)
	var g breakGlassJSON
	json.Unmarshal(m.mustDo(t, "POST", "/api/v1/break-glass", nurse, `{"patient":"pt-north-e","reason":"found collapsed","minutes":30}`, 201), &g)
	if g.User != "north-nurse" || !g.Expires.Equal(m.clock().Add(30*time.Minute)) {
		t.Errorf("grant %+v: want the nurse's, expiring in 30 minutes", g)
	}
	m.mustDo(t, "GET", "/fhir/Patient/pt-north-e", nurse, "", 200)
	m.mustDo(t, "GET", "/api/v1/patients/pt-north-e/latest", nurse, "", 200)
	m.advance(30 * time.Minute)
	m.mustDo(t, "GET", "/fhir/Patient/pt-north-e", nurse, "", 404)
	// The clinician's grant of the fixture ran for the default hour.
	m.mustDo(t, "GET", "/fhir/Patient/pt-north-d", clin, "", 200)
	m.advance(29 * time.Minute)
	m.mustDo(t, "GET", "/fhir/Patient/pt-north-d", clin, "", 404)
	var list struct{ Grants []breakGlassJSON }
	json.Unmarshal(m.mustDo(t, "GET", "/api/v1/break-glass", mToken("north", store.RoleAdmin), "", 200), &list)
	if len(list.Grants) != 2 || list.Grants[0].Reason != "found collapsed" {
		t.Errorf("privacy officer's list: %+v", list.Grants)
	}
	json.Unmarshal(m.mustDo(t, "GET", "/api/v1/break-glass", mToken("south", store.RoleAdmin), "", 200), &list)
	if len(list.Grants) != 1 || list.Grants[0].Patient != "pt-south-d" {
		t.Errorf("another organisation's list: %+v", list.Grants)
	}
}

func TestAlarmActionsByRole(t *testing.T) {
	m := newMatrix(t)
	// A read-only consent does not let a caregiver acknowledge.
	m.mustDo(t, "POST", "/api/v1/consents", mToken("north", store.RoleAdmin), `{"patient":"pt-north-e","grantee":"north-caregiver","scope":"read"}`, 201)
	for _, tc := range []struct {
		role    store.Role
		action  string
		patient string
		want    int
	}{
		{store.RoleCaregiver, "ack", "c", 200},
		{store.RoleCaregiver, "ack", "e", 403},
		{store.RoleCaregiver, "ack", "a", 404},
		{store.RoleCaregiver, "resolve", "c", 403},
		{store.RoleNurse, "ack", "a", 200},
		{store.RoleNurse, "ack", "e", 404},
		{store.RoleClinician, "resolve", "b", 200},
		{store.RoleClinician, "resolve", "d", 200},
		{store.RolePatient, "ack", "b", 403},
		{store.RoleAuditor, "ack", "e", 403},
		{store.RoleAdmin, "resolve", "e", 200},
	} {
		id := m.alarm[mPatient("north", tc.patient)]
		if code, b := m.do(t, "POST", "/api/v1/alarms/"+id+"/"+tc.action, mToken("north", tc.role), ""); code != tc.want {
			t.Errorf("%s %s of %s: %d %s, want %d", tc.role, tc.action, tc.patient, code, b, tc.want)
		}
		// Nothing of the south is reachable from the north.
		south := m.alarm[mPatient("south", tc.patient)]
		if code, _ := m.do(t, "POST", "/api/v1/alarms/"+south+"/"+tc.action, mToken("north", tc.role), ""); code != 404 && code != 403 {
			t.Errorf("%s %s of south's %s: %d, want 404 (or 403 for the role)", tc.role, tc.action, tc.patient, code)
		}
	}
}

func TestFHIRWritesStayInTheCallersOrganisation(t *testing.T) {
	m := newMatrix(t)
	ctx := context.Background()
	// An admin's token acts in the admin's organisation.
	var tok struct{ Token string }
	json.Unmarshal(m.mustDo(t, "POST", "/api/v1/tokens", mToken("south", store.RoleAdmin), `{"role":"integration"}`, 201), &tok)
	fhirPost := func(path, token, body string) (int, []byte) {
		req, _ := http.NewRequest("POST", m.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode, []byte(b.String())
	}
	code, b := fhirPost("/fhir/Patient", tok.Token, `{"resourceType":"Patient","name":[{"family":"Newsouth"}]}`)
	if code != 201 {
		t.Fatalf("create patient: %d %s", code, b)
	}
	var created struct{ ID string }
	json.Unmarshal(b, &created)
	p, err := m.st.Patient(ctx, created.ID)
	if err != nil || p.Org != "south" {
		t.Fatalf("created patient %+v (%v): want it in south", p, err)
	}
	m.mustDo(t, "GET", "/fhir/Patient/"+created.ID, mToken("north", store.RoleIntegration), "", 404)
	m.mustDo(t, "GET", "/fhir/Patient/"+created.ID, tok.Token, "", 200)
	for _, tc := range []struct {
		name, path, token, body string
		want                    int
	}{
		{"a device cannot name another organisation's patient", "/fhir/Device", tok.Token,
			`{"resourceType":"Device","patient":{"reference":"Patient/pt-north-a"}}`, 422},
		{"clinicians do not write FHIR", "/fhir/Patient", mToken("south", store.RoleClinician), `{"resourceType":"Patient"}`, 403},
		{"caregivers neither", "/fhir/Patient", mToken("south", store.RoleCaregiver), `{"resourceType":"Patient"}`, 403},
	} {
		if code, b := fhirPost(tc.path, tc.token, tc.body); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, b, tc.want)
		}
	}
	code, b = fhirPost("/fhir/Device", tok.Token, `{"resourceType":"Device","patient":{"reference":"Patient/`+created.ID+`"}}`)
	if code != 201 {
		t.Fatalf("create device: %d %s", code, b)
	}
	json.Unmarshal(b, &created)
	if d, err := m.st.Device(ctx, created.ID); err != nil || d.Org != "south" {
		t.Fatalf("created device %+v (%v): want it in south", d, err)
	}
	m.mustDo(t, "GET", "/fhir/Device/"+created.ID, mToken("north", store.RoleAdmin), "", 404)
	// Credentials of another organisation's device are not issued.
	m.mustDo(t, "POST", "/api/v1/devices/"+mDevice("south", "a")+"/credentials", mToken("north", store.RoleAdmin), "", 404)
}

func TestStreamScopedPerSubscriber(t *testing.T) {
	m := newMatrix(t)
	open := func(token string) *sseClient {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", m.srv.URL+"/api/v1/stream", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != 200 {
			t.Fatalf("stream: %d", resp.StatusCode)
		}
		c := &sseClient{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
		c.next() // preamble
		return c
	}
	nurse := open(mToken("north", store.RoleNurse))
	admin := open(mToken("north", store.RoleAdmin))
	code, _ := m.do(t, "GET", "/api/v1/stream?patient=pt-south-a", mToken("north", store.RoleAdmin), "")
	if code != 404 {
		t.Errorf("stream of another organisation's patient: %d, want 404", code)
	}
	// A notice about the nurse's own patient (a break-glass alert to the
	// privacy officer) goes to the admin only.
	m.hub.Publish(live.Event{Type: live.TypeAlarm, Patient: "pt-north-a", Notice: true, Data: []byte(`{"notice":"pt-north-a"}`)})
	for _, p := range []string{"pt-south-a", "pt-north-e", "", "pt-north-a", "pt-north-e"} {
		m.hub.Publish(live.Event{Type: live.TypeReading, Patient: p, Data: []byte(`{"patient":"` + p + `"}`)})
	}
	if ev := nurse.nextEvent(); ev.data != `{"patient":"pt-north-a"}` {
		t.Errorf("nurse got %q first, want only the team's patient (and no notice)", ev.data)
	}
	if ev := admin.nextEvent(); ev.data != `{"notice":"pt-north-a"}` {
		t.Errorf("admin got %q first, want the notice", ev.data)
	}
	for _, want := range []string{"pt-north-e", "pt-north-a", "pt-north-e"} {
		if ev := admin.nextEvent(); ev.data != `{"patient":"`+want+`"}` {
			t.Errorf("admin got %q, want %s (and nothing of the south or of no patient)", ev.data, want)
		}
	}
}

func TestDeadLettersAreTheOperators(t *testing.T) {
	m := newMatrix(t)
	m.mustDo(t, "GET", "/api/v1/deadletters", m.operator(t), "", 200)
	m.mustDo(t, "GET", "/api/v1/deadletters", mToken("north", store.RoleAdmin), "", 403)
}

func TestInstallationWideConfigurationIsTheOperators(t *testing.T) {
	m := newMatrix(t)
	north := mToken("north", store.RoleAdmin)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/v1/webhooks", ""},
		{"POST", "/api/v1/webhooks", `{"url":"https://example.org/hook"}`},
		{"PUT", "/api/v1/settings/ward/rules", `{}`},
	} {
		if code, b := m.do(t, tc.method, tc.path, north, tc.body); code != http.StatusForbidden {
			t.Errorf("%s %s by an organisation's admin: %d %s, want 403", tc.method, tc.path, code, b)
		}
	}
	m.mustDo(t, "GET", "/api/v1/webhooks", m.operator(t), "", 200)
	// A patient's own rules stay with the patient's organisation.
	m.mustDo(t, "GET", "/api/v1/patients/pt-south-a/rules", north, "", 404)
	m.mustDo(t, "GET", "/api/v1/patients/pt-north-a/rules", north, "", 200)
}
