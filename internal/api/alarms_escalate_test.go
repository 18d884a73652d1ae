package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
)

// fiveTiers lets four escalations succeed before the last tier is reached.
const fiveTiers = `{"policies":{"ward":{"tiers":[
  {"after":"0s","recipients":["webhook:t1"]},{"after":"5m","recipients":["webhook:t2"]},
  {"after":"10m","recipients":["webhook:t3"]},{"after":"15m","recipients":["webhook:t4"]},
  {"after":"20m","recipients":["webhook:t5"]}]}},
 "priorities":{"high":"ward","medium":"ward"}}`

// TestEscalateAlarm: who may escalate an alarm by hand is who may resolve
// it (alarmHandlers), within their scope; an alarm outside it is "no such
// alarm", whatever the body.
func TestEscalateAlarm(t *testing.T) {
	f := newAlarmFixture(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.db.PutDoc(ctx, &alarm.Doc{Scope: alarm.SettingScope(rules.SettingWard), Kind: alarm.DocEscalation, Body: []byte(fiveTiers), Author: "t", At: alarmEpoch}))
	must(f.st.CreateOrg(ctx, store.Organisation{ID: "south", Name: "South"}))
	tok := map[string]string{}
	for _, u := range []store.User{
		{ID: "nina", Role: store.RoleNurse},
		{ID: "olga", Role: store.RoleNurse}, // not in the care team
		{ID: "cleo", Role: store.RoleClinician},
		{ID: "carl", Role: store.RoleCaregiver},
		{ID: "pia", Role: store.RolePatient, Patient: "p1"},
		{ID: "otto", Role: store.RoleAuditor},
		{ID: "sam", Role: store.RoleAdmin, Org: "south"},
	} {
		u.Name, u.PasswordHash = u.ID, "x"
		must(f.st.CreateUser(ctx, u))
		tok[u.ID] = "tok-" + u.ID + "-xxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		must(f.st.PutToken(ctx, store.Token{Hash: auth.HashSecret(tok[u.ID]), Role: u.Role, Subject: u.ID, Org: u.Org}))
	}
	must(f.st.CreateCareTeam(ctx, store.CareTeam{ID: "ward", Org: store.DefaultOrg, Name: "Ward"}))
	for _, m := range []string{"nina", "cleo"} {
		must(f.st.SetCareTeamMember(ctx, "ward", m, true))
	}
	must(f.st.SetCareTeamPatient(ctx, "ward", "p1", true))
	must(f.st.CreateConsent(ctx, store.Consent{ID: "c1", Org: store.DefaultOrg, Patient: "p1", Grantee: "carl", Scope: store.ConsentReadAlarms, Start: alarmEpoch.Add(-time.Hour)}))

	a := f.raise(t, "p1", "spo2-critical", rules.PriorityHigh)
	done := f.raise(t, "p1", "hr-high", rules.PriorityMedium)
	if _, err := f.svc.Resolve(ctx, done.ID, alarm.Action{By: "admin"}); err != nil {
		t.Fatal(err)
	}
	const why = `{"reason":"needs a doctor"}`
	path := "/api/v1/alarms/" + a.ID + "/escalate"
	tests := []struct {
		name, path, token, body string
		want                    int
		detail                  string
	}{
		{"anonymous", path, "", why, 401, ""},
		{"auditor", path, tok["otto"], why, 403, ""},
		{"patient", path, tok["pia"], why, 403, ""},
		{"caregiver acknowledges only", path, tok["carl"], why, 403, ""},
		{"nurse outside the care team", path, tok["olga"], why, 404, "no such alarm"},
		{"outside the care team, no reason", path, tok["olga"], ``, 404, "no such alarm"},
		{"another organisation's admin", path, tok["sam"], why, 404, "no such alarm"},
		{"no body", path, adminTok, ``, 400, "needs"},
		{"empty reason", path, adminTok, `{"reason":" "}`, 400, "needs"},
		{"unknown field", path, adminTok, `{"reason":"x","tier":3}`, 400, "tier"},
		{"reason too long", path, adminTok, `{"reason":"` + strings.Repeat("x", maxReasonBytes+1) + `"}`, 400, "longer"},
		{"unknown alarm", "/api/v1/alarms/nope/escalate", adminTok, why, 404, "no such alarm"},
		{"resolved alarm", "/api/v1/alarms/" + done.ID + "/escalate", adminTok, why, 409, "already resolved"},
		{"nurse in the care team", path, tok["nina"], why, 200, ""},
		{"clinician in the care team", path, tok["cleo"], why, 200, ""},
		{"integration", path, integTok, why, 200, ""},
		{"admin", path, adminTok, why, 200, ""},
		{"past the last tier", path, adminTok, why, 409, "last escalation tier"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, m := f.do(t, "POST", tc.path, tc.token, "application/json", tc.body)
			if resp.StatusCode != tc.want {
				t.Fatalf("%d %v, want %d", resp.StatusCode, m, tc.want)
			}
			if tc.detail != "" {
				if d, _ := m["detail"].(string); !strings.Contains(d, tc.detail) {
					t.Errorf("detail %q, want %q", d, tc.detail)
				}
			}
			if tc.want == 200 {
				if got := m["alarm"].(map[string]any); got["id"] != a.ID || got["state"] != "active" {
					t.Errorf("answer %v", got)
				}
			}
		})
	}

	// Four people escalated, each recorded with their reason; every other
	// request left no trace.
	_, m := f.do(t, "GET", "/api/v1/alarms/"+a.ID, adminTok, "", "")
	var by []string
	for _, c := range m["history"].([]any) {
		c := c.(map[string]any)
		if c["action"] == "escalated" {
			if c["reason"] != "needs a doctor" {
				t.Errorf("escalation recorded without its reason: %v", c)
			}
			by = append(by, c["by"].(string)+" "+c["detail"].(string))
		}
	}
	if got, want := strings.Join(by, ","), "nina tier 2,cleo tier 3,integration tier 4,admin tier 5"; got != want {
		t.Errorf("escalations %q, want %q", got, want)
	}
	var told []string
	for _, d := range m["deliveries"].([]any) {
		d := d.(map[string]any)
		told = append(told, d["event"].(string)+" "+d["recipient"].(string))
	}
	if len(told) != 5 || strings.Count(strings.Join(told, ","), "alarm.escalated") != 4 {
		t.Errorf("outbox %q, want the raise and one notification per escalation", told)
	}
	if got := m["alarm"].(map[string]any)["tier"]; got != float64(4) {
		t.Errorf("tier %v, want 4 (the fifth)", got)
	}
}
