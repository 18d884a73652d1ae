package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
)

// rulesVersion is the stored version of a patient's rules document (0:
// none).
func rulesVersion(t *testing.T, f *fixture, patient string) int {
	t.Helper()
	d, err := f.db.Doc(context.Background(), alarm.PatientScope(patient), alarm.DocRules)
	if err != nil {
		return 0
	}
	return d.Version
}

// ruleForm is a change to one rule as the page's form sends it.
func ruleForm(f *fixture, t *testing.T, patient, rule string, kv ...string) url.Values {
	form := url.Values{"rule": {rule}, "version": {strconv.Itoa(rulesVersion(t, f, patient))}}
	for i := 0; i+1 < len(kv); i += 2 {
		form.Set(kv[i], kv[i+1])
	}
	return form
}

// TestRulesRoleMatrix opens and posts the rules page of a patient in the
// user's care team (n-a) and one outside it (n-b) as every role:
// clinicians and admins change rules, nurses and integrations read them,
// caregivers, patients and auditors get 403; out of scope is 404.
func TestRulesRoleMatrix(t *testing.T) {
	f := orgFixture(t)
	roles := map[store.Role]string{store.RoleAdmin: "nadia", store.RoleIntegration: "ines", store.RoleClinician: "cleo", store.RoleNurse: "nina",
		store.RoleCaregiver: "carl", store.RolePatient: "petra", store.RoleAuditor: "otto"}
	const ok, no, missing, bad = 200, http.StatusForbidden, http.StatusNotFound, http.StatusBadRequest
	tests := []struct {
		method, path string
		want         map[store.Role]int // roles not named: 403
	}{
		{"GET", "/patients/n-a/rules", map[store.Role]int{store.RoleAdmin: ok, store.RoleIntegration: ok, store.RoleClinician: ok, store.RoleNurse: ok}},
		{"GET", "/patients/n-b/rules", map[store.Role]int{store.RoleAdmin: ok, store.RoleIntegration: ok, store.RoleClinician: missing, store.RoleNurse: missing}},
		{"GET", "/patients/s-a/rules", map[store.Role]int{store.RoleAdmin: missing, store.RoleIntegration: missing, store.RoleClinician: missing, store.RoleNurse: missing}},
		{"GET", "/patients/nobody/rules", map[store.Role]int{store.RoleAdmin: missing, store.RoleIntegration: missing, store.RoleClinician: missing, store.RoleNurse: missing}},
		// No reason: refused before anything is stored, once the role and
		// the patient's scope are checked.
		{"POST", "/patients/n-a/rules", map[store.Role]int{store.RoleAdmin: bad, store.RoleClinician: bad}},
		{"POST", "/patients/n-b/rules", map[store.Role]int{store.RoleAdmin: bad, store.RoleClinician: missing}},
		{"POST", "/patients/s-a/rules", map[store.Role]int{store.RoleAdmin: missing, store.RoleClinician: missing}},
	}
	for role, user := range roles {
		b := f.as(t, user)
		for _, tt := range tests {
			t.Run(string(role)+" "+tt.method+" "+tt.path, func(t *testing.T) {
				b.get("/account") // a fresh CSRF token
				var resp *http.Response
				var body string
				if tt.method == "GET" {
					resp, body = b.get(tt.path)
				} else {
					resp, body = b.post(tt.path, url.Values{"rule": {"hr-low"}, "version": {"0"}, "value": {"50"}, "enabled": {"1"}})
				}
				want, named := tt.want[role]
				if !named {
					want = no
				}
				if resp.StatusCode != want {
					t.Errorf("status %d, want %d", resp.StatusCode, want)
				}
				if want == ok {
					edit := role == store.RoleAdmin || role == store.RoleClinician
					if got := strings.Contains(body, `name="reason"`); got != edit {
						t.Errorf("the page offers the change form: %v, want %v", got, edit)
					}
				}
			})
		}
	}
	for _, p := range []string{"n-a", "n-b", "s-a"} {
		if v := rulesVersion(t, f, p); v != 0 {
			t.Errorf("refused requests stored rules for %s (version %d)", p, v)
		}
	}
}

// TestPatientPageLinksRules: the patient page links the rules to those
// who may read them.
func TestPatientPageLinksRules(t *testing.T) {
	f := orgFixture(t)
	for user, want := range map[string]bool{"cleo": true, "nina": true, "petra": false} {
		_, body := f.as(t, user).get("/patients/n-a")
		if got := strings.Contains(body, `href="/patients/n-a/rules"`); got != want {
			t.Errorf("%s: link to the rules %v, want %v", user, got, want)
		}
	}
}

// TestChangeRule: a clinician lowers a heart-rate limit with a reason.
// The override is stored through the same code as the API's PUT (history
// with author and reason), a separate Profiles over the same store (as the
// evaluator holds) returns it, and an engine fed by it alarms where the
// default would not. Switching a rule off, resetting it, a stale form,
// a forged form and a mandatory rule are covered too.
func TestChangeRule(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	cleo := f.as(t, "cleo")
	cleo.get("/patients/n-a/rules")

	resp, body := cleo.post("/patients/n-a/rules", ruleForm(f, t, "n-a", "hr-low", "value", "50", "clear", "55", "priority", "high", "enabled", "1",
		"reason", "beta-blocker started; bradycardia expected"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/patients/n-a/rules#rule-hr-low" {
		t.Fatalf("change: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	d, err := f.db.Doc(ctx, alarm.PatientScope("n-a"), alarm.DocRules)
	if err != nil || d.Version != 1 || d.Author != "cleo" || d.Reason != "beta-blocker started; bradycardia expected" {
		t.Fatalf("stored document %+v, %v", d, err)
	}
	evaluator := &alarm.Profiles{Store: f.db, Now: f.clock} // another cache, same store
	eff, err := evaluator.Rules(ctx, "n-a")
	if err != nil {
		t.Fatal(err)
	}
	if r := findRule(eff, "hr-low"); r == nil || r.Value != 50 || r.Clear == nil || *r.Clear != 55 || r.Priority != rules.PriorityHigh || r.Op != "<" {
		t.Fatalf("effective hr-low %+v", r)
	}
	if other, _ := evaluator.Rules(ctx, "n-b"); findRule(other, "hr-low").Value != 40 {
		t.Error("another patient's rule changed")
	}
	// The engine alarms at 45/min held 30 s for n-a, not for n-b.
	eng := rules.NewEngine(func(p string) []rules.Rule { rs, _ := evaluator.Rules(ctx, p); return rs })
	var out rules.Output
	for i, p := range []string{"n-a", "n-b", "n-a", "n-b"} {
		at := epoch.Add(time.Duration(i/2) * 40 * time.Second)
		eng.Observe(reading.Reading{Patient: p, Device: "dev-" + p, Code: codes.HeartRate, Value: 45, HasValue: true, Unit: "/min", Time: at, Received: at}, uint64(i+1), &out)
	}
	var started []string
	for _, ev := range out.Events {
		if ev.Rule == "hr-low" && ev.Type == rules.Start {
			started = append(started, ev.Patient)
		}
	}
	if strings.Join(started, ",") != "n-a" {
		t.Errorf("hr-low started for %v, want n-a only", started)
	}

	// The page shows the override beside the default, and the history.
	_, body = cleo.get("/patients/n-a/rules")
	for _, want := range []string{"changed for this patient", "default &lt; 40", "&lt; 50", "beta-blocker started; bradycardia expected", "Reset to the setting's default"} {
		if !strings.Contains(body, want) {
			t.Errorf("the rules page lacks %q", want)
		}
	}

	// A stale form (version 0) is refused and stores nothing.
	resp, _ = cleo.post("/patients/n-a/rules", url.Values{"rule": {"hr-high"}, "version": {"0"}, "value": {"140"}, "enabled": {"1"}, "reason": {"x"}})
	if resp.StatusCode != http.StatusConflict || rulesVersion(t, f, "n-a") != 1 {
		t.Errorf("stale form: %d, version %d", resp.StatusCode, rulesVersion(t, f, "n-a"))
	}
	// A forged form (no or another token) is refused.
	for _, token := range []string{"", "forged"} {
		form := ruleForm(f, t, "n-a", "hr-high", "value", "150", "enabled", "1", "reason", "x", "csrf", token)
		if resp, _ := cleo.post("/patients/n-a/rules", form); resp.StatusCode != http.StatusForbidden {
			t.Errorf("csrf %q: %d, want 403", token, resp.StatusCode)
		}
	}
	// A mandatory rule: the page offers no form, and the engine's
	// validation refuses a posted change.
	if !strings.Contains(body, "Cannot be changed or switched off.") || strings.Contains(body, `name="rule" value="glucose-urgent-low"`) {
		t.Error("the page offers to change the mandatory urgent-low glucose rule")
	}
	for _, form := range []url.Values{
		ruleForm(f, t, "n-a", "glucose-urgent-low", "value", "40", "enabled", "1", "reason", "fewer alarms"),
		ruleForm(f, t, "n-a", "glucose-urgent-low", "reason", "switch it off"),
	} {
		resp, body := cleo.post("/patients/n-a/rules", form)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "mandatory") {
			t.Errorf("mandatory rule: %d", resp.StatusCode)
		}
	}
	if rulesVersion(t, f, "n-a") != 1 {
		t.Error("a refused change was stored")
	}
	// Bad values.
	for _, kv := range [][]string{{"value", "NaN"}, {"value", "fifty"}, {"priority", "urgent"}, {"clear", "1e999"}} {
		form := ruleForm(f, t, "n-a", "hr-high", kv[0], kv[1], "enabled", "1", "reason", "x")
		if resp, _ := cleo.post("/patients/n-a/rules", form); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s=%s: %d, want 400", kv[0], kv[1], resp.StatusCode)
		}
	}
	// A clear value on the wrong side of the limit: the rule's own
	// validation answers.
	if resp, _ := cleo.post("/patients/n-a/rules", ruleForm(f, t, "n-a", "hr-high", "value", "130", "clear", "140", "enabled", "1", "reason", "x")); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("clear beyond the limit: %d, want 422", resp.StatusCode)
	}

	// Switching a rule off stores only that; resetting removes the override.
	if resp, _ := cleo.post("/patients/n-a/rules", ruleForm(f, t, "n-a", "spo2-no-data", "priority", "low", "reason", "on room air, no oximeter")); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("switch off: %d", resp.StatusCode)
	}
	// The evaluator's cache looks for changed documents once a second.
	tick := func() { f.set(f.clock().Add(2 * time.Second)) }
	tick()
	pr, _ := evaluator.PatientRules(ctx, "n-a")
	if off := findRule(pr.Rules, "spo2-no-data"); off == nil || off.Kind != "" || !off.Disabled {
		t.Errorf("stored %+v, want {id, disabled}", off)
	}
	if eff, _ := evaluator.Rules(ctx, "n-a"); findRule(eff, "spo2-no-data") != nil {
		t.Error("the switched-off rule is still in force")
	}
	if resp, _ := cleo.post("/patients/n-a/rules", ruleForm(f, t, "n-a", "hr-low", "action", "reset", "reason", "beta-blocker stopped")); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("reset: %d", resp.StatusCode)
	}
	tick()
	if eff, _ := evaluator.Rules(ctx, "n-a"); findRule(eff, "hr-low").Value != 40 {
		t.Error("reset did not bring back the default")
	}
	if resp, _ := cleo.post("/patients/n-a/rules", ruleForm(f, t, "n-a", "hr-low", "action", "reset", "reason", "again")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("resetting a default rule: %d, want 400", resp.StatusCode)
	}
	if resp, _ := cleo.post("/patients/n-a/rules", ruleForm(f, t, "n-a", "no-such-rule", "enabled", "1", "reason", "x")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown rule: %d, want 404", resp.StatusCode)
	}
	hist, _ := f.db.DocHistory(ctx, alarm.PatientScope("n-a"), alarm.DocRules)
	if len(hist) != 3 || hist[0].Reason != "beta-blocker stopped" || hist[0].Author != "cleo" {
		t.Errorf("history %+v", hist)
	}
}

func findRule(rs []rules.Rule, id string) *rules.Rule {
	for i := range rs {
		if rs[i].ID == id {
			return &rs[i]
		}
	}
	return nil
}

// TestRuleChangeIsAudited serves the dashboard behind the audit
// middleware: a change is recorded as an update of the patient.
func TestRuleChangeIsAudited(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	f.srv.Close()
	f.srv = httptest.NewServer(audit.Wrap(audit.New(f.st, f.clock), audit.Classify, f.h))
	t.Cleanup(f.srv.Close)
	nadia := f.as(t, "nadia")
	nadia.get("/patients/n-b/rules")
	if resp, _ := nadia.post("/patients/n-b/rules", ruleForm(f, t, "n-b", "hr-high", "value", "120", "enabled", "1", "priority", "medium", "reason", "tachycardia expected")); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("change: %d", resp.StatusCode)
	}
	es, err := f.st.AuditEntries(ctx, store.AuditQuery{Subject: "nadia"})
	if err != nil {
		t.Fatal(err)
	}
	var read, update bool
	for _, e := range es {
		named := len(e.Patients) == 1 && e.Patients[0] == "n-b" && e.Entity == "/patients/n-b/rules"
		read = read || (named && e.Action == string(audit.Read) && e.Subtype == "rules-read")
		update = update || (named && e.Action == string(audit.Update) && e.Subtype == "rules-update")
	}
	if !read || !update {
		t.Errorf("audit records: read %v, update %v; entries %+v", read, update, es)
	}
}

// TestRulesPageEscapes: names and reasons that came from the API or a
// user are text.
func TestRulesPageEscapes(t *testing.T) {
	f := orgFixture(t)
	ctx := context.Background()
	const evil = `<img src=x onerror=alert(1)>`
	doc, _ := json.Marshal(rules.Profile{Rules: []rules.Rule{{ID: "own-spo2", Name: evil, Kind: rules.KindThreshold, Code: codes.OxygenSaturation,
		Op: "<", Value: 80, Priority: rules.PriorityHigh}}})
	if err := f.db.PutDoc(ctx, &alarm.Doc{Scope: alarm.PatientScope("n-a"), Kind: alarm.DocRules, Body: doc, Author: evil, Reason: evil, At: epoch}); err != nil {
		t.Fatal(err)
	}
	_, body := f.as(t, "cleo").get("/patients/n-a/rules")
	if strings.Contains(body, evil) || !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Error("a hostile rule name, author or reason is not escaped")
	}
	if !strings.Contains(body, "this patient only") {
		t.Error("the patient's own rule is not marked")
	}
}

// TestAuditorLandsOnAuditTrail: signing in goes to "/", which sends an
// auditor (who sees no patients) to the audit trail.
func TestAuditorLandsOnAuditTrail(t *testing.T) {
	f := orgFixture(t)
	b := f.browser(t)
	b.get("/signin")
	resp, _ := b.post("/signin", url.Values{"username": {"otto"}, "password": {scopedPass}, "next": {"/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = b.get("/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/audit" {
		t.Fatalf("/ for an auditor: %d to %q, want 303 to /audit", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := b.get("/audit"); resp.StatusCode != 200 {
		t.Errorf("/audit: %d", resp.StatusCode)
	}
	if resp, _ := f.as(t, "nina").get("/"); resp.StatusCode != 200 {
		t.Errorf("a nurse's ward: %d", resp.StatusCode)
	}
}
