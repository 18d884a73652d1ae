package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
)

const scopedPass = "scoped-password-1"

var (
	scopedHashOnce sync.Once
	scopedHash     string
)

// TestPagesShowOnlyTheUsersPatients: in organisation north, the nurse's
// care team holds n-a; n-e consented (read only) to the caregiver; south
// has s-a. Every page shows each user their own patients and nothing of
// the others.
func TestPagesShowOnlyTheUsersPatients(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	scopedHashOnce.Do(func() { scopedHash = auth.HashPassword(scopedPass) })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	alarms := map[string]alarm.Alarm{}
	for _, org := range []string{"north", "south"} {
		must(f.st.CreateOrg(ctx, store.Organisation{ID: org, Name: org}))
	}
	for _, p := range []struct{ id, org, name string }{{"n-a", "north", "Alba Northward"}, {"n-e", "north", "Eric Elsewhere"}, {"s-a", "south", "Sven Southward"}} {
		res, _ := json.Marshal(map[string]any{"resourceType": "Patient", "name": []map[string]string{{"text": p.name}}})
		must(f.st.CreatePatient(ctx, &store.Patient{ID: p.id, Org: p.org, Resource: res, Identifiers: []store.Identifier{{System: "urn:mrn", Value: "MRN-" + p.id}}}))
		must(f.st.CreateDevice(ctx, &store.Device{ID: "dev-" + p.id, Org: p.org, Patient: p.id}, epoch.Add(-1e12)))
		f.readings(t, vitalReading(p.id, codes.HeartRate, 71, epoch.Add(-60e9)))
		alarms[p.id] = f.raise(t, p.id, "spo2-low", rules.PriorityMedium)
	}
	for _, u := range []store.User{
		{ID: "nina", Name: "Nina Nurse", Role: store.RoleNurse, Org: "north"},
		{ID: "carl", Name: "Carl Carer", Role: store.RoleCaregiver, Org: "north"},
		{ID: "petra", Name: "Petra Patient", Role: store.RolePatient, Org: "north", Patient: "n-e"},
		{ID: "sam", Name: "Sam South", Role: store.RoleAdmin, Org: "south"},
		{ID: "otto", Name: "Otto Auditor", Role: store.RoleAuditor, Org: "north"},
	} {
		u.PasswordHash, u.Created = scopedHash, epoch
		must(f.st.CreateUser(ctx, u))
	}
	must(f.st.CreateCareTeam(ctx, store.CareTeam{ID: "ward", Org: "north", Name: "Ward"}))
	must(f.st.SetCareTeamMember(ctx, "ward", "nina", true))
	must(f.st.SetCareTeamPatient(ctx, "ward", "n-a", true))
	must(f.st.CreateConsent(ctx, store.Consent{ID: "c1", Org: "north", Patient: "n-e", Grantee: "carl", Scope: store.ConsentRead, Start: epoch.Add(-1e12)}))

	names := map[string]string{"n-a": "Alba Northward", "n-e": "Eric Elsewhere", "s-a": "Sven Southward"}
	for _, tc := range []struct {
		user    string
		sees    []string
		devices bool
	}{
		{"nina", []string{"n-a"}, true},
		{"carl", []string{"n-e"}, false},
		{"petra", []string{"n-e"}, false},
		{"sam", []string{"s-a"}, true},
		{"ann", nil, true}, // the default organisation's admin: neither north's nor south's
	} {
		t.Run(tc.user, func(t *testing.T) {
			b := f.signedIn(t, tc.user, map[bool]string{true: adminPass, false: scopedPass}[tc.user == "ann"])
			pages := []string{"/", "/alarms"}
			if tc.devices {
				pages = append(pages, "/devices")
			}
			for _, page := range pages {
				resp, body := b.get(page)
				if resp.StatusCode != 200 {
					t.Fatalf("%s: %d", page, resp.StatusCode)
				}
				for id, name := range names {
					want := strings.Contains(strings.Join(tc.sees, " "), id)
					if page == "/devices" && !want && strings.Contains(body, "dev-"+id) {
						t.Errorf("%s lists device dev-%s of a patient %s may not see", page, id, tc.user)
					}
					if got := strings.Contains(body, name) || strings.Contains(body, "MRN-"+id); page != "/devices" && got != want {
						t.Errorf("%s shows %s: %v, want %v", page, name, got, want)
					}
				}
			}
			for id := range names {
				want := http.StatusNotFound
				if strings.Contains(strings.Join(tc.sees, " "), id) {
					want = 200
				}
				if resp, _ := b.get("/patients/" + id); resp.StatusCode != want {
					t.Errorf("/patients/%s: %d, want %d", id, resp.StatusCode, want)
				}
				if resp, _ := b.get("/patients/" + id + "/series?code=8867-4&range=1h"); resp.StatusCode != want {
					t.Errorf("series of %s: %d, want %d", id, resp.StatusCode, want)
				}
			}
		})
	}
	// Acting on alarms: only within scope, caregivers only with a consent covering alarms.
	for _, tc := range []struct {
		user, patient, action string
		want                  int
	}{
		{"nina", "n-e", "ack", http.StatusNotFound},
		{"nina", "s-a", "ack", http.StatusNotFound},
		{"carl", "n-e", "ack", http.StatusForbidden},
		{"carl", "n-e", "resolve", http.StatusForbidden},
		{"petra", "n-e", "ack", http.StatusForbidden},
		{"sam", "n-a", "resolve", http.StatusNotFound},
		{"nina", "n-a", "ack", http.StatusSeeOther},
	} {
		b := f.signedIn(t, tc.user, scopedPass)
		if resp, _ := b.post("/alarms/"+alarms[tc.patient].ID+"/"+tc.action, url.Values{"back": {"/alarms"}}); resp.StatusCode != tc.want {
			t.Errorf("%s %s of %s: %d, want %d", tc.user, tc.action, tc.patient, resp.StatusCode, tc.want)
		}
	}
	sam := f.signedIn(t, "sam", scopedPass)
	if resp, _ := sam.post("/devices/dev-n-a/credentials", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("south's admin rotating north's device: %d, want 404", resp.StatusCode)
	}
	if resp, _ := sam.post("/patients/s-a/devices", url.Values{"device": {"dev-n-a"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("south's admin binding north's device: %d, want 404", resp.StatusCode)
	}
	// An auditor sees no ward: "/" sends them to the audit trail.
	if resp, _ := f.signedIn(t, "otto", scopedPass).get("/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/audit" {
		t.Errorf("auditor on the ward: %d to %q, want 303 to /audit", resp.StatusCode, resp.Header.Get("Location"))
	}
}
