package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
)

var alarmEpoch = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

// alarmFixture is the API over a real SQLite store and a real alarm store,
// with a clock the test moves.
type alarmFixture struct {
	*fixture
	db       *alarmdb.DB
	svc      *alarm.Service
	profiles *alarm.Profiles
	hub      *live.Hub

	mu  sync.Mutex
	now time.Time
}

func (f *alarmFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *alarmFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newAlarmFixture(t *testing.T) *alarmFixture {
	t.Helper()
	return newAlarmFixtureWith(t, func(*httptest.Server) {})
}

// newAlarmFixtureWith lets a test configure the HTTP server before it
// starts (timeouts).
func newAlarmFixtureWith(t *testing.T, configure func(*httptest.Server)) *alarmFixture {
	t.Helper()
	f := &alarmFixture{fixture: newFixture(t), now: alarmEpoch, hub: &live.Hub{}}
	f.srv.Close() // replaced by a server with the alarm API
	db, err := alarmdb.Open(filepath.Join(t.TempDir(), "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	f.profiles = &alarm.Profiles{Store: db, Now: f.clock}
	f.svc = alarm.NewService(alarm.Config{Store: db, Escalation: f.profiles.Escalation, Now: f.clock})
	if err := f.st.CreatePatient(context.Background(), &store.Patient{ID: "p2", Resource: []byte(`{"resourceType":"Patient"}`)}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := New(Config{Store: f.st, Ready: func() error { return nil }, Now: f.clock, Logger: log,
		Alarms: f.svc, AlarmStore: db, Profiles: f.profiles, Live: f.hub})
	f.srv = httptest.NewUnstartedServer(h)
	configure(f.srv)
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

// raise opens an episode through the alarm service, as the rule engine
// would.
func (f *alarmFixture) raise(t *testing.T, patient, rule string, prio rules.Priority) alarm.Alarm {
	t.Helper()
	ctx := context.Background()
	ev := rules.Event{Type: rules.Start, Patient: patient, Rule: rule, Name: rule, Kind: rules.KindThreshold,
		Category: rules.CategoryClinical, Priority: prio, Code: "59408-5", Value: 85, Unit: "%", Time: f.clock(), Message: rule + " test"}
	if err := f.svc.Apply(ctx, alarm.Checkpoint{}, []rules.Event{ev}); err != nil {
		t.Fatal(err)
	}
	as, err := f.db.Alarms(ctx, alarm.Filter{Patient: patient})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Rule == rule && a.Open() {
			f.advance(time.Second) // distinct raise times: a stable newest-first order
			return a
		}
	}
	t.Fatalf("no open %s alarm for %s after raising it", rule, patient)
	return alarm.Alarm{}
}

func TestAlarmAPIPermissions(t *testing.T) {
	f := newAlarmFixture(t)
	a := f.raise(t, "p1", "spo2-low", rules.PriorityMedium)
	tests := []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/api/v1/alarms", "", "", 401},
		{"GET", "/api/v1/alarms", "nonsense", "", 401},
		{"GET", "/api/v1/alarms", integTok, "", 200},
		{"GET", "/api/v1/alarms/" + a.ID, integTok, "", 200},
		{"POST", "/api/v1/alarms/" + a.ID + "/ack", "", "", 401},
		{"GET", "/api/v1/settings/ward/rules", integTok, "", 200},
		{"GET", "/api/v1/settings/ward/rules", "", "", 401},
		{"PUT", "/api/v1/settings/ward/rules", integTok, `{"rules":[]}`, 403},
		{"PUT", "/api/v1/patients/p1/rules", integTok, `{"rules":[]}`, 403},
		{"PUT", "/api/v1/settings/ward/escalation", integTok, `{}`, 403},
		{"PUT", "/api/v1/patients/p1/escalation", integTok, `{}`, 403},
		{"GET", "/api/v1/patients/p1/escalation/history", integTok, "", 200},
		{"POST", "/api/v1/webhooks", integTok, `{"url":"https://example.org/h"}`, 403},
		{"GET", "/api/v1/webhooks", integTok, "", 200},
		{"GET", "/api/v1/webhooks", "", "", 401},
		{"DELETE", "/api/v1/webhooks/wh1", integTok, "", 403},
		{"GET", "/api/v1/patients/p1/news2", "", "", 401},
		{"GET", "/api/v1/patients/p1/news2", integTok, "", 200},
		{"GET", "/api/v1/stream", "", "", 401},
	}
	for _, tc := range tests {
		resp, m := f.do(t, tc.method, tc.path, tc.token, "application/json", tc.body)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s token=%q: %d %v, want %d", tc.method, tc.path, tc.token, resp.StatusCode, m, tc.want)
		}
		if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: error without problem+json: %s", tc.method, tc.path, resp.Header.Get("Content-Type"))
		}
	}
}

func TestAlarmRoutesNeedTheirDependencies(t *testing.T) {
	f := newFixture(t) // no alarm service, store, profiles or hub
	for _, path := range []string{"/api/v1/alarms", "/api/v1/settings/ward/rules", "/api/v1/webhooks", "/api/v1/patients/p1/news2", "/api/v1/stream"} {
		if resp, _ := f.do(t, "GET", path, adminTok, "", ""); resp.StatusCode != 404 {
			t.Errorf("GET %s without the alarm API configured: %d, want 404", path, resp.StatusCode)
		}
	}
}

func alarmIDs(m map[string]any) []string {
	var ids []string
	list, _ := m["alarms"].([]any)
	for _, a := range list {
		ids = append(ids, a.(map[string]any)["id"].(string))
	}
	return ids
}

func TestListAlarms(t *testing.T) {
	f := newAlarmFixture(t)
	a1 := f.raise(t, "p1", "spo2-low", rules.PriorityMedium)
	a2 := f.raise(t, "p1", "hr-high", rules.PriorityHigh)
	a3 := f.raise(t, "p2", "spo2-low", rules.PriorityMedium)
	if r, m := f.do(t, "POST", "/api/v1/alarms/"+a2.ID+"/ack", adminTok, "", ""); r.StatusCode != 200 {
		t.Fatalf("ack: %d %v", r.StatusCode, m)
	}
	if r, m := f.do(t, "POST", "/api/v1/alarms/"+a3.ID+"/resolve", adminTok, "", ""); r.StatusCode != 200 {
		t.Fatalf("resolve: %d %v", r.StatusCode, m)
	}
	tests := []struct {
		query string
		want  []string // newest raised first
	}{
		{"", []string{a3.ID, a2.ID, a1.ID}},
		{"?patient=p1", []string{a2.ID, a1.ID}},
		{"?patient=p2", []string{a3.ID}},
		{"?patient=nobody", nil},
		{"?state=active", []string{a1.ID}},
		{"?state=acknowledged", []string{a2.ID}},
		{"?state=active,acknowledged", []string{a2.ID, a1.ID}},
		{"?state=active&state=resolved", []string{a3.ID, a1.ID}},
		{"?state=resolved&patient=p1", nil},
		{"?limit=2", []string{a3.ID, a2.ID}},
	}
	for _, tc := range tests {
		resp, m := f.do(t, "GET", "/api/v1/alarms"+tc.query, integTok, "", "")
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %v", tc.query, resp.StatusCode, m)
			continue
		}
		if _, ok := m["alarms"].([]any); !ok {
			t.Errorf("%s: alarms is not a list: %v", tc.query, m)
		}
		if got := alarmIDs(m); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: got %v, want %v", tc.query, got, tc.want)
		}
	}
	// The product contract's field names.
	_, m := f.do(t, "GET", "/api/v1/alarms?patient=p1&state=active", integTok, "", "")
	first := m["alarms"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "patient", "state", "priority", "kind", "rule", "raised", "updated"} {
		if _, ok := first[k]; !ok {
			t.Errorf("alarm JSON lacks %q: %v", k, first)
		}
	}
	if first["state"] != "active" || first["priority"] != "medium" || first["kind"] != "clinical" || first["rule"] != "spo2-low" {
		t.Errorf("alarm JSON: %v", first)
	}

	bad := []struct{ query, detail string }{
		{"?state=open", "active, acknowledged, resolved"},
		{"?state=active,", "active, acknowledged, resolved"},
		{"?limit=0", "limit"},
		{"?limit=1001", "limit"},
	}
	for _, tc := range bad {
		resp, m := f.do(t, "GET", "/api/v1/alarms"+tc.query, integTok, "", "")
		if resp.StatusCode != 400 || !strings.Contains(m["detail"].(string), tc.detail) {
			t.Errorf("%s: %d %v, want 400 naming %q", tc.query, resp.StatusCode, m, tc.detail)
		}
	}
}

func TestAlarmActions(t *testing.T) {
	f := newAlarmFixture(t)
	a := f.raise(t, "p1", "spo2-low", rules.PriorityMedium)
	f.advance(time.Minute)

	resp, m := f.do(t, "POST", "/api/v1/alarms/"+a.ID+"/ack", adminTok, "application/json", `{"reason":"at the bedside"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("ack: %d %v", resp.StatusCode, m)
	}
	got := m["alarm"].(map[string]any)
	if got["state"] != "acknowledged" || got["acknowledged_by"] != "admin" || got["acknowledged_at"] != f.clock().Format(time.RFC3339) {
		t.Fatalf("acknowledged alarm: %v", got)
	}
	// Acknowledging again changes nothing and is not an error.
	if resp, m := f.do(t, "POST", "/api/v1/alarms/"+a.ID+"/ack", adminTok, "", ""); resp.StatusCode != 200 {
		t.Fatalf("second ack: %d %v", resp.StatusCode, m)
	}
	resp, m = f.do(t, "POST", "/api/v1/alarms/"+a.ID+"/resolve", integTok, "application/json", `{"reason":"probe moved"}`)
	if resp.StatusCode != 200 || m["alarm"].(map[string]any)["state"] != "resolved" || m["alarm"].(map[string]any)["resolved_by"] != "integration" {
		t.Fatalf("resolve: %d %v", resp.StatusCode, m)
	}
	resp, m = f.do(t, "POST", "/api/v1/alarms/"+a.ID+"/ack", adminTok, "", "")
	if resp.StatusCode != 409 || !strings.Contains(m["detail"].(string), "already resolved") {
		t.Fatalf("ack of a resolved alarm: %d %v", resp.StatusCode, m)
	}
	resp, m = f.do(t, "POST", "/api/v1/alarms/"+a.ID+"/resolve", adminTok, "", "")
	if resp.StatusCode != 409 {
		t.Fatalf("resolve of a resolved alarm: %d %v", resp.StatusCode, m)
	}

	resp, m = f.do(t, "GET", "/api/v1/alarms/"+a.ID, integTok, "", "")
	if resp.StatusCode != 200 || m["alarm"].(map[string]any)["id"] != a.ID {
		t.Fatalf("get alarm: %d %v", resp.StatusCode, m)
	}
	var actions []string
	for _, c := range m["history"].([]any) {
		c := c.(map[string]any)
		reason, _ := c["reason"].(string) // omitted when empty
		actions = append(actions, c["action"].(string)+"/"+c["by"].(string)+"/"+reason)
	}
	want := "raised/system/,acknowledged/admin/at the bedside,resolved/integration/probe moved (condition still active)"
	if strings.Join(actions, ",") != want {
		t.Fatalf("history: %v\nwant %s", actions, want)
	}
	if _, ok := m["deliveries"].([]any); !ok {
		t.Fatalf("deliveries is not a list: %v", m)
	}

	for _, p := range []string{"/ack", "/resolve", "/snooze", ""} {
		method := "POST"
		if p == "" {
			method = "GET"
		}
		resp, m := f.do(t, method, "/api/v1/alarms/nope"+p, adminTok, "application/json", `{"for":"5m","reason":"x"}`)
		if resp.StatusCode != 404 {
			t.Errorf("%s unknown alarm%s: %d %v", method, p, resp.StatusCode, m)
		}
	}
}

func TestSnooze(t *testing.T) {
	f := newAlarmFixture(t)
	high := f.raise(t, "p1", "spo2-critical", rules.PriorityHigh)
	tests := []struct {
		name, body string
		want       int
		detail     string
	}{
		{"too long for high priority", `{"for":"1h","reason":"turning the patient"}`, 409, "at most 10m0s"},
		{"no reason", `{"for":"5m"}`, 409, "needs a reason"},
		{"no length", `{"reason":"turning the patient"}`, 400, `needs "for"`},
		{"no body", ``, 400, "body is required"},
		{"bad duration", `{"for":"ten minutes","reason":"x"}`, 400, "duration"},
		{"unknown field", `{"for":"5m","reason":"x","until":"later"}`, 400, "until"},
		{"not JSON", `{"for":`, 400, "not valid JSON"},
		{"trailing data", `{"for":"5m","reason":"x"} {}`, 400, "after the JSON"},
	}
	for _, tc := range tests {
		resp, m := f.do(t, "POST", "/api/v1/alarms/"+high.ID+"/snooze", adminTok, "application/json", tc.body)
		if resp.StatusCode != tc.want || !strings.Contains(m["detail"].(string), tc.detail) {
			t.Errorf("%s: %d %v, want %d with %q", tc.name, resp.StatusCode, m, tc.want, tc.detail)
		}
	}
	resp, m := f.do(t, "POST", "/api/v1/alarms/"+high.ID+"/snooze", adminTok, "application/json", `{"for":"10m","reason":"turning the patient"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("snooze: %d %v", resp.StatusCode, m)
	}
	got := m["alarm"].(map[string]any)
	if got["snoozed_until"] != f.clock().Add(10*time.Minute).Format(time.RFC3339) || got["snooze_reason"] != "turning the patient" || got["state"] != "active" {
		t.Fatalf("snoozed alarm: %v", got)
	}
	f.do(t, "POST", "/api/v1/alarms/"+high.ID+"/ack", adminTok, "", "")
	resp, m = f.do(t, "POST", "/api/v1/alarms/"+high.ID+"/snooze", adminTok, "application/json", `{"for":"5m","reason":"x"}`)
	if resp.StatusCode != 409 || !strings.Contains(m["detail"].(string), "only an active alarm") {
		t.Fatalf("snooze of an acknowledged alarm: %d %v", resp.StatusCode, m)
	}
}

// FuzzDecodeBody: any body gives a decoded document or a 400/413 problem,
// never a panic or another error; an accepted rules document validates or
// is refused with a message (the 422 path of PUT .../rules).
func FuzzDecodeBody(f *testing.F) {
	f.Add([]byte(`{"rules":[{"id":"spo2-low","kind":"threshold","code":"spo2","op":"<","value":88,"priority":"medium"}]}`))
	f.Add([]byte(`{"setting":"home","rules":[{"id":"glucose-urgent-low","disabled":true}]}`))
	f.Add([]byte(`{"rules":[{"id":"x","kind":"news2","for":"1h"}]} `))
	f.Add([]byte(`{"rules":null}{}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("PUT", "/api/v1/settings/ward/rules", bytes.NewReader(body))
		var p rules.Profile
		err := decodeBody(httptest.NewRecorder(), req, &p, 1<<10, false)
		var e *Error
		var tooBig *http.MaxBytesError
		switch {
		case err == nil:
			if verr := p.Validate(); verr != nil && verr.Error() == "" {
				t.Fatalf("validation error without a message for %q", body)
			}
		case errors.As(err, &e):
			if e.Status != http.StatusBadRequest || e.Detail == "" {
				t.Fatalf("%q: %d %q", body, e.Status, e.Detail)
			}
		case errors.As(err, &tooBig):
			if len(body) <= 1<<10 {
				t.Fatalf("%d bytes refused as too big", len(body))
			}
		default:
			t.Fatalf("%q: unexpected error %v", body, err)
		}
	})
}
