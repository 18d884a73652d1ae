package fhir

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/notify"
)

func subscriptionJSON(endpoint, filter, content string, heartbeat int) string {
	s := map[string]any{
		"resourceType": "Subscription",
		"status":       "requested",
		"reason":       "vitals to the EHR",
		"criteria":     TopicVitalSign,
		"channel": map[string]any{
			"type":      "rest-hook",
			"endpoint":  endpoint,
			"payload":   "application/fhir+json",
			"_payload":  map[string]any{"extension": []any{map[string]any{"url": extPayloadContent, "valueCode": content}}},
			"header":    []string{"Authorization: Bearer ehr-secret"},
			"extension": []any{map[string]any{"url": extHeartbeatPeriod, "valueUnsignedInt": heartbeat}},
		},
	}
	if filter != "" {
		s["_criteria"] = map[string]any{"extension": []any{map[string]any{"url": extFilterCriteria, "valueString": filter}}}
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func TestSubscriptionParse(t *testing.T) {
	valid := subscriptionJSON("https://ehr.example/hook", "Observation?patient=Patient/p1", ContentFullResource, 60)
	s, err := ParseSubscription([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if s.Patient != "p1" || s.Content != ContentFullResource || s.Heart != time.Minute || s.Endpoint != "https://ehr.example/hook" || len(s.Headers) != 1 {
		t.Fatalf("parsed %+v", s)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"not JSON", `{`, "not a valid Subscription"},
		{"wrong type", `{"resourceType":"Patient"}`, "resourceType"},
		{"unknown topic", strings.Replace(valid, TopicVitalSign, "http://x/topic", 1), "criteria must be a topic"},
		{"websocket", strings.Replace(valid, `"rest-hook"`, `"websocket"`, 1), "rest-hook"},
		{"ftp endpoint", strings.Replace(valid, "https://ehr.example/hook", "ftp://ehr.example/hook", 1), "endpoint"},
		{"credentials in URL", strings.Replace(valid, "https://ehr.example/hook", "https://u:p@ehr.example/hook", 1), "endpoint"},
		{"bad content", strings.Replace(valid, ContentFullResource, "everything", 1), "payload content"},
		{"header injection", strings.Replace(valid, "Bearer ehr-secret", `x\r\nHost: evil`, 1), "header"},
		{"host header", strings.Replace(valid, "Authorization: Bearer", "Host: ", 1), "header"},
		{"heartbeat too fast", strings.Replace(valid, `"valueUnsignedInt":60`, `"valueUnsignedInt":1`, 1), "heartbeat"},
		{"filter on code", strings.Replace(valid, "patient=Patient/p1", "code=1234", 1), "only name patient"},
		{"bad patient id", strings.Replace(valid, "Patient/p1", "Patient/a%20b", 1), "no valid patient"},
		{"off on create", strings.Replace(valid, `"requested"`, `"off"`, 1), "status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSubscription([]byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParseSubscription(f *testing.F) {
	f.Add([]byte(subscriptionJSON("https://ehr.example/hook", "Observation?patient=Patient/p1", ContentIDOnly, 60)))
	f.Add([]byte(`{"resourceType":"Subscription","criteria":"` + TopicAlarm + `","channel":{"type":"rest-hook","endpoint":"http://a"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSubscription(b)
		if err != nil {
			return
		}
		// Whatever is accepted renders to a valid Subscription again.
		s.ID = "x"
		out, err := json.Marshal(s.Resource("active"))
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSubscription(out)
		if err != nil {
			t.Fatalf("rendered subscription does not parse: %v\n%s", err, out)
		}
		if again.Patient != s.Patient || again.Topic != s.Topic || again.Content != s.Content || again.Heart != s.Heart {
			t.Fatalf("round trip changed it: %+v -> %+v", s, again)
		}
	})
}

// receiver is a rest-hook endpoint that records what it gets and fails
// while fail is set.
type receiver struct {
	mu     sync.Mutex
	got    []map[string]any
	auth   []string
	fail   bool
	server *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Content-Type") != contentTypeFHIR {
			http.Error(w, "bad content type", http.StatusUnsupportedMediaType)
			return
		}
		var b map[string]any
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &b); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		if sch, err := fhirSchema(); err == nil {
			if err := validateFHIR(sch, body); err != nil {
				t.Errorf("notification is not valid FHIR R4: %v\n%s", err, body)
			}
		}
		rc.got = append(rc.got, b)
		rc.auth = append(rc.auth, r.Header.Get("Authorization"))
	}))
	t.Cleanup(rc.server.Close)
	return rc
}

func (rc *receiver) setFail(v bool) { rc.mu.Lock(); rc.fail = v; rc.mu.Unlock() }

func (rc *receiver) take() []map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.got
	rc.got = nil
	return out
}

// statusOf returns the SubscriptionStatus parameters of a notification or
// $status Bundle by name.
func statusOf(t *testing.T, bundle map[string]any) map[string]any {
	t.Helper()
	entries, _ := bundle["entry"].([]any)
	if len(entries) == 0 {
		t.Fatalf("bundle has no entries: %v", bundle)
	}
	res := entries[0].(map[string]any)["resource"].(map[string]any)
	if res["resourceType"] != "Parameters" {
		t.Fatalf("first entry is %v, want Parameters", res["resourceType"])
	}
	out := map[string]any{}
	for _, p := range res["parameter"].([]any) {
		pm := p.(map[string]any)
		for k, v := range pm {
			if k != "name" {
				out[pm["name"].(string)] = v
			}
		}
	}
	return out
}

type subFixture struct {
	t     *testing.T
	clock time.Time
	mu    sync.Mutex
	path  string
	db    *alarmdb.DB
	subs  *Subscriptions
	disp  *alarm.Dispatcher
	api   *httptest.Server
}

func (f *subFixture) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.clock }
func (f *subFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.clock = f.clock.Add(d)
	f.mu.Unlock()
}

// open (re)opens the outbox and builds the subscription layer and the
// dispatcher over it, as a node does at start.
func (f *subFixture) open() {
	db, err := alarmdb.Open(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	f.db = db
	f.subs = &Subscriptions{Outbox: db, Base: "https://tend.example/fhir", Now: f.now}
	f.disp = &alarm.Dispatcher{Store: db, Sender: notify.Mux{RecipientKindRestHook: f.subs}, Resolve: f.subs.Resolve, Now: f.now}
	h := NewHandler(Config{Store: newStore(f.t), Now: f.now, Subscriptions: f.subs, Logger: slog.New(slog.DiscardHandler)})
	// The caller is named by a test header; the auth middleware does this
	// in a node.
	withCaller := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sub := r.Header.Get("X-Test-Caller"); sub != "" {
			r = r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{Subject: sub, Role: "integration", Org: "org1"}))
		}
		h.ServeHTTP(w, r)
	})
	f.api = httptest.NewServer(schemaChecking(f.t, withCaller, nil))
}

func (f *subFixture) close() {
	f.api.Close()
	f.db.Close()
}

func (f *subFixture) do(method, path, caller, body string) (int, map[string]any) {
	f.t.Helper()
	req, _ := http.NewRequest(method, f.api.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentTypeFHIR)
	req.Header.Set("X-Test-Caller", caller)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			f.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, out
}

func (f *subFixture) dispatch() int {
	f.t.Helper()
	n, err := f.disp.RunOnce(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *subFixture) status(id string) map[string]any {
	f.t.Helper()
	code, b := f.do("GET", "/fhir/Subscription/"+id+"/$status", "ehr", "")
	if code != 200 {
		f.t.Fatalf("$status: %d %v", code, b)
	}
	return statusOf(f.t, b)
}

func obsEvent(patient, org, id string, at time.Time) SubscriptionEvent {
	res, _ := json.Marshal(map[string]any{"resourceType": "Observation", "id": id, "status": "final",
		"code":    map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8867-4"}}},
		"subject": map[string]any{"reference": "Patient/" + patient}, "valueQuantity": map[string]any{"value": 72, "unit": "/min"}})
	return SubscriptionEvent{Topic: TopicVitalSign, Patient: patient, Org: org, Key: id, Focus: "Observation/" + id, Resource: res, At: at}
}

func TestSubscriptionRestHook(t *testing.T) {
	ctx := context.Background()
	rc := newReceiver(t)
	f := &subFixture{t: t, clock: fixedNow, path: filepath.Join(t.TempDir(), "alarms.db")}
	f.open()
	defer func() { f.close() }()

	code, created := f.do("POST", "/fhir/Subscription", "ehr",
		subscriptionJSON(rc.server.URL+"/hook", "Observation?patient=Patient/p1", ContentFullResource, 60))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	if st := f.status(id); st["status"] != "requested" {
		t.Fatalf("before the handshake: %v", st)
	}

	// Handshake on activation, with the channel header.
	if n := f.dispatch(); n != 1 {
		t.Fatalf("dispatched %d, want the handshake", n)
	}
	got := rc.take()
	if len(got) != 1 || statusOf(t, got[0])["type"] != NotifyHandshake {
		t.Fatalf("got %v, want a handshake", got)
	}
	if rc.auth[0] != "Bearer ehr-secret" {
		t.Fatalf("channel header not sent: %q", rc.auth[0])
	}
	if st := f.status(id); st["status"] != "active" || st["events-since-subscription-start"] != "0" {
		t.Fatalf("after the handshake: %v", st)
	}

	// A reading of p1 is delivered; of another patient or organisation not.
	for _, ev := range []SubscriptionEvent{obsEvent("p1", "", "o1", f.now()), obsEvent("p2", "", "o2", f.now()), obsEvent("p1", "org2", "o3", f.now())} {
		if _, err := f.subs.Match(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	// A replay of the same reading is enqueued once.
	if _, err := f.subs.Match(ctx, obsEvent("p1", "", "o1", f.now())); err != nil {
		t.Fatal(err)
	}
	f.dispatch()
	got = rc.take()
	if len(got) != 1 {
		t.Fatalf("got %d notifications, want 1 (p1 only): %v", len(got), got)
	}
	st := statusOf(t, got[0])
	if st["type"] != NotifyEvent || st["events-since-subscription-start"] != "1" {
		t.Fatalf("notification status %v", st)
	}
	entries := got[0]["entry"].([]any)
	if got[0]["type"] != "history" || len(entries) != 2 {
		t.Fatalf("notification bundle %v", got[0])
	}
	focus := entries[1].(map[string]any)
	if focus["fullUrl"] != "https://tend.example/fhir/Observation/o1" || focus["resource"].(map[string]any)["id"] != "o1" {
		t.Fatalf("focus entry %v", focus)
	}

	// The endpoint fails: the event is retried with backoff and the
	// subscription shows error until it recovers.
	rc.setFail(true)
	if _, err := f.subs.Match(ctx, obsEvent("p1", "", "o4", f.now())); err != nil {
		t.Fatal(err)
	}
	f.dispatch()
	if st := f.status(id); st["status"] != "error" {
		t.Fatalf("while failing: %v", st)
	}
	if n := f.dispatch(); n != 0 {
		t.Fatalf("retried %d before the backoff", n)
	}
	// Restart between attempts: the pending delivery is in the outbox.
	f.close()
	f.open()
	rc.setFail(false)
	f.advance(notify.MaxBackoff)
	if n := f.dispatch(); n != 1 {
		t.Fatalf("retried %d after the backoff, want 1", n)
	}
	got = rc.take()
	if len(got) != 1 || statusOf(t, got[0])["events-since-subscription-start"] != "2" {
		t.Fatalf("retry delivered %v", got)
	}
	if st := f.status(id); st["status"] != "active" || st["events-since-subscription-start"] != "2" {
		t.Fatalf("after recovery: %v", st)
	}

	// Heartbeats on the virtual clock: one per period, once.
	f.advance(time.Minute)
	for range 2 {
		if _, err := f.subs.Heartbeats(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f.dispatch()
	got = rc.take()
	if len(got) != 1 || statusOf(t, got[0])["type"] != NotifyHeartbeat || statusOf(t, got[0])["events-since-subscription-start"] != "2" {
		t.Fatalf("heartbeat: %v", got)
	}

	// Another principal sees no such subscription.
	if code, _ := f.do("GET", "/fhir/Subscription/"+id, "other", ""); code != http.StatusNotFound {
		t.Fatalf("other caller read: %d", code)
	}
	if code, _ := f.do("DELETE", "/fhir/Subscription/"+id, "other", ""); code != http.StatusNotFound {
		t.Fatalf("other caller delete: %d", code)
	}
	code, read := f.do("GET", "/fhir/Subscription/"+id, "ehr", "")
	if code != 200 || read["status"] != "active" || read["channel"].(map[string]any)["header"] != nil {
		t.Fatalf("read: %d %v", code, read)
	}

	// Delete: gone, and nothing more is sent.
	if code, _ := f.do("DELETE", "/fhir/Subscription/"+id, "ehr", ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := f.do("GET", "/fhir/Subscription/"+id, "ehr", ""); code != http.StatusGone {
		t.Fatalf("read after delete: %d", code)
	}
	if n, err := f.subs.Match(ctx, obsEvent("p1", "", "o5", f.now())); err != nil || n != 0 {
		t.Fatalf("matched %d after delete (%v)", n, err)
	}
}

func TestSubscriptionCreateErrors(t *testing.T) {
	f := &subFixture{t: t, clock: fixedNow, path: filepath.Join(t.TempDir(), "alarms.db")}
	f.open()
	defer f.close()
	code, oo := f.do("POST", "/fhir/Subscription", "ehr", `{"resourceType":"Subscription","criteria":"x"}`)
	if code != http.StatusBadRequest || oo["resourceType"] != "OperationOutcome" {
		t.Fatalf("bad subscription: %d %v", code, oo)
	}
	if code, _ := f.do("GET", "/fhir/Subscription/nope/$status", "ehr", ""); code != http.StatusNotFound {
		t.Fatalf("$status of nothing: %d", code)
	}
}

func TestSubscriptionRequiredAccess(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{"POST", "/Subscription", "Subscription:c"},
		{"GET", "/Subscription/s1", "Subscription:r"},
		{"DELETE", "/Subscription/s1", "Subscription:d"},
		{"GET", "/Subscription/s1/$status", "Subscription:r"},
	} {
		acc, err := RequiredAccess(tc.method, tc.path, nil, "", nil)
		if err != nil || len(acc) != 1 || acc[0].Type+":"+acc[0].AnyString() != tc.want {
			t.Errorf("%s %s: %v %v, want %s", tc.method, tc.path, acc, err, tc.want)
		}
	}
	if _, err := RequiredAccess("GET", "/Subscription/$status", nil, "", nil); err == nil {
		t.Error("type-level $status was classified")
	}
}
