package api

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
)

// effectiveRule finds a rule in the "effective" list of a document answer.
func effectiveRule(m map[string]any, id string) map[string]any {
	list, _ := m["effective"].([]any)
	for _, r := range list {
		if r := r.(map[string]any); r["id"] == id {
			return r
		}
	}
	return nil
}

func TestSettingRules(t *testing.T) {
	f := newAlarmFixture(t)
	resp, m := f.do(t, "GET", "/api/v1/settings/ward/rules", integTok, "", "")
	if resp.StatusCode != 200 || m["setting"] != "ward" || m["version"].(float64) != 0 {
		t.Fatalf("defaults: %d %v", resp.StatusCode, m)
	}
	if r := effectiveRule(m, "spo2-low"); r == nil || r["value"].(float64) != 90 {
		t.Fatalf("default spo2-low: %v", r)
	}
	if doc := m["document"].(map[string]any); len(doc["rules"].([]any)) != 0 {
		t.Fatalf("no document stored, yet: %v", doc)
	}

	invalid := []struct {
		name, body string
		want       int
		detail     string
	}{
		{"unknown code", `{"rules":[{"id":"x-high","kind":"threshold","code":"12345-6","op":">","value":1,"priority":"low"}]}`, 422, "unknown code"},
		{"impossible threshold", `{"rules":[{"id":"spo2-low","kind":"threshold","code":"spo2","op":"<","value":150,"priority":"medium"}]}`, 422, "outside what"},
		{"never true", `{"rules":[{"id":"spo2-low","kind":"threshold","code":"spo2","op":">","value":100,"priority":"medium"}]}`, 422, "never be true"},
		{"mandatory rule disabled", `{"rules":[{"id":"glucose-urgent-low","disabled":true}]}`, 422, "mandatory"},
		{"mandatory rule changed", `{"rules":[{"id":"cgm-urgent-low","kind":"threshold","code":"cgm","op":"<=","value":40,"priority":"high"}]}`, 422, "mandatory"},
		{"setting inside a setting", `{"setting":"home","rules":[]}`, 422, "cannot name another setting"},
		{"duplicate id", `{"rules":[{"id":"a","kind":"news2"},{"id":"a","kind":"news2"}]}`, 422, "used twice"},
		{"misspelt member", `{"rules":[{"id":"spo2-low","kind":"threshold","code":"spo2","op":"<","valeu":88,"priority":"medium"}]}`, 400, "valeu"},
		{"malformed JSON", `{"rules":[`, 400, "not valid JSON"},
		{"empty body", ``, 400, "body is required"},
	}
	for _, tc := range invalid {
		resp, m := f.do(t, "PUT", "/api/v1/settings/ward/rules", adminTok, "application/json", tc.body)
		if resp.StatusCode != tc.want || !strings.Contains(m["detail"].(string), tc.detail) {
			t.Errorf("%s: %d %v, want %d with %q", tc.name, resp.StatusCode, m, tc.want, tc.detail)
		}
	}
	_, m = f.do(t, "GET", "/api/v1/settings/ward/rules", integTok, "", "")
	if m["version"].(float64) != 0 || effectiveRule(m, "spo2-low")["value"].(float64) != 90 {
		t.Fatalf("an invalid document changed the rules: %v", m)
	}
	if _, h := f.do(t, "GET", "/api/v1/settings/ward/rules/history", integTok, "", ""); len(h["history"].([]any)) != 0 {
		t.Fatalf("an invalid document was stored: %v", h)
	}

	// A valid document: a code alias is stored as the code itself.
	f.advance(time.Minute)
	body := `{"rules":[{"id":"spo2-low","kind":"threshold","code":"spo2","op":"<","value":88,"clear":90,"for":"2m","priority":"medium"},{"id":"spo2-no-data","disabled":true}]}`
	resp, m = f.do(t, "PUT", "/api/v1/settings/ward/rules?reason="+url.QueryEscape("COPD ward"), adminTok, "application/json", body)
	if resp.StatusCode != 200 || m["version"].(float64) != 1 || m["author"] != "admin" || m["reason"] != "COPD ward" {
		t.Fatalf("valid PUT: %d %v", resp.StatusCode, m)
	}
	r := effectiveRule(m, "spo2-low")
	if r == nil || r["value"].(float64) != 88 || r["code"] != codes.OxygenSaturation || r["for"] != "2m0s" {
		t.Fatalf("effective spo2-low after PUT: %v", r)
	}
	if effectiveRule(m, "spo2-no-data") != nil || effectiveRule(m, "glucose-urgent-low") == nil {
		t.Fatalf("disabled rule still effective or mandatory rule gone: %v", m["effective"])
	}
	stored := m["document"].(map[string]any)["rules"].([]any)[0].(map[string]any)
	if stored["code"] != codes.OxygenSaturation {
		t.Fatalf("stored document keeps the alias: %v", stored)
	}
	// Patients on the ward see the new setting rule at once.
	_, pm := f.do(t, "GET", "/api/v1/patients/p1/rules", integTok, "", "")
	if r := effectiveRule(pm, "spo2-low"); r == nil || r["value"].(float64) != 88 {
		t.Fatalf("patient's effective spo2-low after the setting changed: %v", r)
	}

	f.advance(time.Minute)
	f.do(t, "PUT", "/api/v1/settings/ward/rules", adminTok, "application/json", `{"rules":[]}`)
	_, h := f.do(t, "GET", "/api/v1/settings/ward/rules/history", integTok, "", "")
	hist := h["history"].([]any)
	if len(hist) != 2 {
		t.Fatalf("history: %v", h)
	}
	newest, oldest := hist[0].(map[string]any), hist[1].(map[string]any)
	if newest["version"].(float64) != 2 || oldest["version"].(float64) != 1 || oldest["reason"] != "COPD ward" ||
		oldest["author"] != "admin" || oldest["at"] != alarmEpoch.Add(time.Minute).Format(time.RFC3339) {
		t.Fatalf("history entries: %v", hist)
	}
	_, m = f.do(t, "GET", "/api/v1/settings/ward/rules", integTok, "", "")
	if effectiveRule(m, "spo2-low")["value"].(float64) != 90 {
		t.Fatalf("an empty document should bring the defaults back: %v", effectiveRule(m, "spo2-low"))
	}

	for _, path := range []string{"/api/v1/settings/moon/rules", "/api/v1/settings/moon/rules/history", "/api/v1/settings/moon/escalation"} {
		if resp, m := f.do(t, "GET", path, integTok, "", ""); resp.StatusCode != 404 || !strings.Contains(m["detail"].(string), "ward") {
			t.Errorf("GET %s: %d %v", path, resp.StatusCode, m)
		}
	}
	if resp, _ := f.do(t, "PUT", "/api/v1/settings/moon/rules", adminTok, "application/json", `{"rules":[]}`); resp.StatusCode != 404 {
		t.Errorf("PUT of an unknown setting: %d", resp.StatusCode)
	}
	huge := `{"rules":[],"setting":"` + strings.Repeat("x", 1<<20) + `"}`
	if resp, _ := f.do(t, "PUT", "/api/v1/settings/ward/rules", adminTok, "application/json", huge); resp.StatusCode != 413 {
		t.Errorf("document over 1 MiB: %d", resp.StatusCode)
	}
}

func TestPatientRules(t *testing.T) {
	f := newAlarmFixture(t)
	resp, m := f.do(t, "GET", "/api/v1/patients/p1/rules", integTok, "", "")
	if resp.StatusCode != 200 || m["patient"] != "p1" || m["setting"] != "ward" || effectiveRule(m, "news2") == nil {
		t.Fatalf("defaults: %d %v", resp.StatusCode, m)
	}
	for _, path := range []string{"/api/v1/patients/nope/rules", "/api/v1/patients/nope/rules/history", "/api/v1/patients/nope/escalation"} {
		if resp, _ := f.do(t, "GET", path, integTok, "", ""); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	if resp, _ := f.do(t, "PUT", "/api/v1/patients/nope/rules", adminTok, "application/json", `{"rules":[]}`); resp.StatusCode != 404 {
		t.Errorf("PUT for an unknown patient: %d", resp.StatusCode)
	}
	invalid := []struct{ name, body, detail string }{
		{"mandatory rule disabled", `{"setting":"home","rules":[{"id":"cgm-urgent-low","disabled":true}]}`, "mandatory"},
		{"unknown setting", `{"setting":"moon","rules":[]}`, "unknown care setting"},
		{"switching off a rule that is not there", `{"rules":[{"id":"weight-gain-3d","disabled":true}]}`, "no default rule"},
	}
	for _, tc := range invalid {
		resp, m := f.do(t, "PUT", "/api/v1/patients/p1/rules", adminTok, "application/json", tc.body)
		if resp.StatusCode != 422 || !strings.Contains(m["detail"].(string), tc.detail) {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, m)
		}
	}
	body := `{"setting":"home","rules":[{"id":"spo2-low","disabled":true},{"id":"hr-very-high","kind":"threshold","code":"hr","op":">","value":150,"priority":"high"}]}`
	resp, m = f.do(t, "PUT", "/api/v1/patients/p1/rules?reason=discharged", adminTok, "application/json", body)
	if resp.StatusCode != 200 || m["setting"] != "home" || m["version"].(float64) != 1 {
		t.Fatalf("valid PUT: %d %v", resp.StatusCode, m)
	}
	if effectiveRule(m, "spo2-low") != nil || effectiveRule(m, "weight-gain-3d") == nil || effectiveRule(m, "hr-very-high") == nil || effectiveRule(m, "news2") != nil {
		t.Fatalf("effective rules after moving p1 home: %v", m["effective"])
	}
	// p2 is untouched.
	_, m = f.do(t, "GET", "/api/v1/patients/p2/rules", integTok, "", "")
	if m["setting"] != "ward" || effectiveRule(m, "spo2-low") == nil {
		t.Fatalf("p2: %v", m)
	}
	_, h := f.do(t, "GET", "/api/v1/patients/p1/rules/history", integTok, "", "")
	if hist := h["history"].([]any); len(hist) != 1 || hist[0].(map[string]any)["reason"] != "discharged" {
		t.Fatalf("history: %v", h)
	}
}

func TestEscalation(t *testing.T) {
	f := newAlarmFixture(t)
	resp, m := f.do(t, "GET", "/api/v1/settings/ward/escalation", integTok, "", "")
	if resp.StatusCode != 200 || m["version"].(float64) != 0 {
		t.Fatalf("no escalation stored: %d %v", resp.StatusCode, m)
	}
	_, hook := f.do(t, "POST", "/api/v1/webhooks", adminTok, "application/json", `{"url":"https://example.org/nurses"}`)
	station := hook["recipient"].(string)
	invalid := []struct{ name, body, detail string }{
		{"cycle", `{"policies":{"a":{"tiers":[{"after":"0s","recipients":["policy:b"]}]},"b":{"tiers":[{"after":"0s","recipients":["policy:a"]}]}},"priorities":{"high":"a"}}`, "cycle"},
		{"unknown policy", `{"priorities":{"high":"nurses"}}`, "no policy named"},
		{"tiers out of order", `{"policies":{"a":{"tiers":[{"after":"0s","recipients":["email:a@example.org"]},{"after":"0s","recipients":["email:b@example.org"]}]}}}`, "increase"},
		{"unregistered webhook", `{"policies":{"a":{"tiers":[{"after":"0s","recipients":["webhook:nobody"]}]}}}`, "no webhook"},
		{"bad priority", `{"policies":{"a":{"tiers":[{"after":"0s","recipients":["email:a@example.org"]}]}},"priorities":{"urgent":"a"}}`, "not high, medium or low"},
	}
	for _, tc := range invalid {
		resp, m := f.do(t, "PUT", "/api/v1/settings/ward/escalation", adminTok, "application/json", tc.body)
		if resp.StatusCode != 422 || !strings.Contains(m["detail"].(string), tc.detail) {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, m)
		}
	}
	if _, m := f.do(t, "GET", "/api/v1/settings/ward/escalation/history", integTok, "", ""); len(m["history"].([]any)) != 0 {
		t.Fatalf("an invalid escalation was stored: %v", m)
	}

	ward := `{"policies":{"nurses":{"tiers":[{"after":"0s","recipients":["` + station + `"]},{"after":"2m","recipients":["email:charge@example.org"]}],"repeat":"5m"}},
		"priorities":{"high":"nurses","medium":"nurses"}}`
	resp, m = f.do(t, "PUT", "/api/v1/settings/ward/escalation?reason=go-live", adminTok, "application/json", ward)
	if resp.StatusCode != 200 || m["version"].(float64) != 1 {
		t.Fatalf("valid setting escalation: %d %v", resp.StatusCode, m)
	}
	if pr := m["effective"].(map[string]any)["priorities"].(map[string]any); pr["high"] != "nurses" {
		t.Fatalf("effective escalation: %v", m["effective"])
	}
	// A patient's document may use the setting's policies…
	resp, m = f.do(t, "PUT", "/api/v1/patients/p1/escalation", adminTok, "application/json",
		`{"policies":{"family":{"tiers":[{"after":"0s","recipients":["email:daughter@example.org","policy:nurses"]}]}},"priorities":{"low":"family"}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("patient escalation: %d %v", resp.StatusCode, m)
	}
	eff := m["effective"].(map[string]any)
	if pr := eff["priorities"].(map[string]any); pr["low"] != "family" || pr["high"] != "nurses" || eff["policies"].(map[string]any)["nurses"] == nil {
		t.Fatalf("patient's effective escalation does not merge the setting's: %v", eff)
	}
	// …but a cycle through them is still refused.
	resp, m = f.do(t, "PUT", "/api/v1/patients/p1/escalation", adminTok, "application/json",
		`{"policies":{"nurses":{"tiers":[{"after":"0s","recipients":["policy:family"]}]},"family":{"tiers":[{"after":"0s","recipients":["policy:nurses"]}]}}}`)
	if resp.StatusCode != 422 || !strings.Contains(m["detail"].(string), "cycle") {
		t.Fatalf("patient cycle: %d %v", resp.StatusCode, m)
	}
	_, h := f.do(t, "GET", "/api/v1/patients/p1/escalation/history", integTok, "", "")
	if hist := h["history"].([]any); len(hist) != 1 {
		t.Fatalf("patient escalation history: %v", h)
	}
	// The alarm service sees the stored policy (the cache was invalidated).
	e, err := f.profiles.Escalation(context.Background(), "p1")
	if err != nil || e.Priorities["low"] != "family" {
		t.Fatalf("profiles after PUT: %+v %v", e, err)
	}
}

func TestNEWS2(t *testing.T) {
	f := newAlarmFixture(t)
	now := f.clock()
	rd := func(code string, v float64, age time.Duration) reading.Reading {
		return reading.Reading{Patient: "p1", Device: "d1", Code: code, Value: v, HasValue: true, Unit: "1", Time: now.Add(-age), Received: now, Source: "test"}
	}
	bp := reading.Reading{Patient: "p1", Device: "d1", Code: codes.BloodPressurePanel, Unit: "mm[Hg]", Time: now.Add(-5 * time.Minute), Received: now, Source: "test",
		Components: []reading.Component{{Code: codes.SystolicBP, Value: 105, Unit: "mm[Hg]"}, {Code: codes.DiastolicBP, Value: 70, Unit: "mm[Hg]"}}}
	rs := []reading.Reading{
		rd(codes.RespiratoryRate, 22, time.Minute),   // 2 points
		rd(codes.OxygenSaturation, 90, time.Minute),  // 3 on scale 1, 0 on scale 2 (air)
		rd(codes.HeartRate, 115, 20*time.Minute),     // stale: older than 15 min
		rd(codes.PulseRate, 95, 2*time.Minute),       // 1 point; newer than the heart rate
		rd(codes.BodyTemperature, 38.5, 3*time.Hour), // stale
		rd(codes.InhaledO2Flow, 0, time.Hour),        // on air: 0
		bp,                                           // systolic 105 from the panel: 1 point
	}
	if _, err := f.st.Append(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	resp, m := f.do(t, "GET", "/api/v1/patients/p1/news2", integTok, "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("news2: %d %v", resp.StatusCode, m)
	}
	parts := m["parts"].(map[string]any)
	checks := []struct {
		what      string
		got, want any
	}{
		{"patient", m["patient"], "p1"},
		{"time", m["time"], now.Format(time.RFC3339)},
		{"scale", m["scale"], 1.0},
		{"total", m["total"], 7.0},
		{"band", m["band"], "high"},
		{"priority", m["priority"], "high"},
		{"complete", m["complete"], false},
		{"respiration_rate", parts["respiration_rate"], 2.0},
		{"spo2", parts["spo2"], 3.0},
		{"pulse", parts["pulse"], 1.0},
		{"systolic_bp", parts["systolic_bp"], 1.0},
		{"missing", strings.Join(strs(m["missing"]), ","), "consciousness"},
		{"stale", strings.Join(strs(m["stale"]), ","), "temperature"},
		{"scored", strings.Join(strs(m["scored"]), ","), "respiration_rate,spo2,supplemental_oxygen,systolic_bp,pulse"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}

	// Scale 2 when the patient's NEWS2 rule says so.
	if resp, m := f.do(t, "PUT", "/api/v1/patients/p1/rules", adminTok, "application/json", `{"rules":[{"id":"news2","kind":"news2","scale":2}]}`); resp.StatusCode != 200 {
		t.Fatalf("scale 2 rule: %d %v", resp.StatusCode, m)
	}
	_, m = f.do(t, "GET", "/api/v1/patients/p1/news2", integTok, "", "")
	if m["scale"] != 2.0 || m["parts"].(map[string]any)["spo2"] != 0.0 || m["total"] != 4.0 {
		t.Fatalf("scale 2: %v", m)
	}

	// A patient with no readings: everything missing, total 0.
	_, m = f.do(t, "GET", "/api/v1/patients/p2/news2", integTok, "", "")
	if len(strs(m["missing"])) != 7 || m["total"] != 0.0 || m["complete"] != false {
		t.Fatalf("no readings: %v", m)
	}
	if resp, _ := f.do(t, "GET", "/api/v1/patients/nope/news2", integTok, "", ""); resp.StatusCode != 404 {
		t.Fatalf("unknown patient: %d", resp.StatusCode)
	}
}

func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, s := range list {
		out = append(out, s.(string))
	}
	return out
}
