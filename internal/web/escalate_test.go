package web

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
)

const wardTiers = `{"policies":{"ward":{"tiers":[
  {"after":"0s","recipients":["webhook:station"]},
  {"after":"5m","recipients":["email:charge@example.org"]},
  {"after":"10m","recipients":["webhook:oncall"]}]}},
 "priorities":{"high":"ward"}}`

// TestInboxEscalate: the inbox offers "Escalate now" to whoever may
// resolve the alarm, the action tells the next tier and records who and
// why, and a caregiver, a patient or a forged form cannot.
func TestInboxEscalate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	scopedHashOnce.Do(func() { scopedHash = auth.HashPassword(scopedPass) })
	must(f.db.PutDoc(ctx, &alarm.Doc{Scope: alarm.SettingScope(rules.SettingWard), Kind: alarm.DocEscalation, Body: []byte(wardTiers), Author: "t", At: epoch}))
	f.patient(t, "p1", "Pat One")
	f.patient(t, "p2", "Pip Two")
	for _, u := range []store.User{
		{ID: "nina", Role: store.RoleNurse},
		{ID: "olga", Role: store.RoleNurse}, // p2's team only
		{ID: "carl", Role: store.RoleCaregiver},
		{ID: "petra", Role: store.RolePatient, Patient: "p1"},
	} {
		u.Name, u.PasswordHash, u.Created = u.ID, scopedHash, epoch
		must(f.st.CreateUser(ctx, u))
	}
	for team, m := range map[string][2]string{"t1": {"nina", "p1"}, "t2": {"olga", "p2"}} {
		must(f.st.CreateCareTeam(ctx, store.CareTeam{ID: team, Org: store.DefaultOrg, Name: team}))
		must(f.st.SetCareTeamMember(ctx, team, m[0], true))
		must(f.st.SetCareTeamPatient(ctx, team, m[1], true))
	}
	must(f.st.CreateConsent(ctx, store.Consent{ID: "c1", Org: store.DefaultOrg, Patient: "p1", Grantee: "carl", Scope: store.ConsentReadAlarms, Start: epoch.Add(-1e12)}))
	a := f.raise(t, "p1", "spo2-critical", rules.PriorityHigh)
	form := regexp.MustCompile(`<form method="post" action="/alarms/` + a.ID + `/escalate" class="escalate"><input type="hidden" name="csrf" value="[^"]+">`)

	// The button: for roles that may resolve, not for a caregiver.
	for _, tc := range []struct {
		user, pass string
		button     bool
	}{
		{"ann", adminPass, true},
		{"ivan", integPass, true},
		{"nina", scopedPass, true},
		{"carl", scopedPass, false},
	} {
		_, body := f.signedIn(t, tc.user, tc.pass).get("/alarms")
		if !strings.Contains(body, "spo2-critical") {
			t.Fatalf("%s does not see the alarm", tc.user)
		}
		if got := form.MatchString(body); got != tc.button {
			t.Errorf("%s: escalate form shown %v, want %v", tc.user, got, tc.button)
		}
	}

	nina := f.signedIn(t, "nina", scopedPass)
	nina.get("/alarms")
	path := "/alarms/" + a.ID + "/escalate"
	// A fresh form each time: post adds its browser's token to the map.
	why := func() url.Values { return url.Values{"reason": {"needs a doctor"}, "back": {"/alarms"}} }
	tests := []struct {
		name string
		who  *browser
		form url.Values
		want int
		tier int // after the request
	}{
		{"no token", nina, url.Values{"csrf": {""}, "reason": {"x"}}, http.StatusForbidden, 0},
		{"forged token", nina, url.Values{"csrf": {"forged"}, "reason": {"x"}}, http.StatusForbidden, 0},
		{"caregiver", f.signedIn(t, "carl", scopedPass), why(), http.StatusForbidden, 0},
		{"patient", f.signedIn(t, "petra", scopedPass), why(), http.StatusForbidden, 0},
		{"nurse of another team", f.signedIn(t, "olga", scopedPass), why(), http.StatusNotFound, 0},
		{"no reason", nina, url.Values{"reason": {"  "}}, http.StatusBadRequest, 0},
		{"escalate", nina, why(), http.StatusSeeOther, 1},
		{"escalate to the last tier", f.signedIn(t, "ann", adminPass), url.Values{"reason": {"no answer from the charge nurse"}}, http.StatusSeeOther, 2},
		{"past the last tier", nina, why(), http.StatusConflict, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tt.who.post(path, tt.form)
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if tt.want == http.StatusConflict && !strings.Contains(body, "last escalation tier") {
				t.Errorf("conflict page does not say why")
			}
			got, err := f.db.Alarm(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Tier != tt.tier || got.State != alarm.Active {
				t.Errorf("tier %d state %s, want tier %d, active", got.Tier, got.State, tt.tier)
			}
		})
	}
	h, err := f.db.History(ctx, a.ID)
	must(err)
	var by []string
	for _, c := range h {
		if c.Action == "escalated" {
			by = append(by, c.By+": "+c.Reason)
		}
	}
	if got, want := strings.Join(by, "; "), "nina: needs a doctor; ann: no answer from the charge nurse"; got != want {
		t.Errorf("escalations in the history %q, want %q", got, want)
	}
	ds, err := f.db.Deliveries(ctx, a.ID)
	must(err)
	escalated := 0
	for _, d := range ds {
		if d.Event == "alarm.escalated" {
			escalated++
		}
	}
	if escalated != 2 {
		t.Errorf("%d escalation notifications queued, want 2", escalated)
	}
	if _, body := nina.get("/alarms"); !strings.Contains(body, "escalated to tier 3") {
		t.Error("the inbox does not show the tier the alarm reached")
	}
}
