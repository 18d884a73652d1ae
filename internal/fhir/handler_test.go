package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

var fixedNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"), sqlite.WithClock(func() time.Time { return fixedNow }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type fixture struct {
	t       *testing.T
	store   store.Store
	srv     *httptest.Server
	commit  *storeCommitter
	mu      sync.Mutex
	changed []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, store: newStore(t)}
	f.commit = &storeCommitter{store: f.store}
	n := 0
	h := NewHandler(Config{
		Store:       f.store,
		Commit:      f.commit,
		VisibleWait: 100 * time.Millisecond,
		Now:         func() time.Time { return fixedNow },
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewID: func() string {
			f.mu.Lock()
			defer f.mu.Unlock()
			n++
			return fmt.Sprintf("id%d", n)
		},
		OnDeviceChanged: func(id string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.changed = append(f.changed, id)
		},
	})
	// Every response of every handler test is validated against the
	// official R4 schema when it is available.
	f.srv = httptest.NewServer(schemaChecking(t, h, nil))
	t.Cleanup(f.srv.Close)
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, r.body)
	}
	return m
}

func (f *fixture) do(method, path, contentType, body string, headers ...string) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (f *fixture) expect(r response, status int) {
	f.t.Helper()
	if r.status != status {
		f.t.Fatalf("status = %d, want %d\n%s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != contentTypeFHIR {
		f.t.Fatalf("Content-Type = %q, want %s", ct, contentTypeFHIR)
	}
}

const patientJSON = `{"resourceType":"Patient","id":"ignored","meta":{"versionId":"99"},
 "identifier":[{"system":"http://hospital.example/mrn","value":"MRN-1"}],
 "name":[{"family":"Doe","given":["Jane"]}],"gender":"female","birthDate":"1950-04-01"}`

func TestPatientCreateReadUpdateSearch(t *testing.T) {
	f := newFixture(t)
	r := f.do("POST", "/fhir/Patient", "application/fhir+json", patientJSON)
	f.expect(r, 201)
	if got := r.header.Get("Location"); got != "/fhir/Patient/id1/_history/1" {
		t.Errorf("Location = %q", got)
	}
	if got := r.header.Get("ETag"); got != `W/"1"` {
		t.Errorf("ETag = %q", got)
	}
	p := r.json(t)
	meta, _ := p["meta"].(map[string]any)
	if p["id"] != "id1" || meta["versionId"] != "1" || meta["lastUpdated"] != "2026-11-23T12:00:00Z" {
		t.Errorf("server-owned members not stamped: id=%v meta=%v", p["id"], meta)
	}
	if p["gender"] != "female" || p["birthDate"] != "1950-04-01" {
		t.Errorf("received members lost: %s", r.body)
	}

	r = f.do("GET", "/fhir/Patient/id1", "", "")
	f.expect(r, 200)
	if !bytes.Contains(r.body, []byte(`"family": "Doe"`)) {
		t.Errorf("read lost name: %s", r.body)
	}
	f.expect(f.do("GET", "/fhir/Patient/id1/_history/1", "", ""), 200)
	f.expect(f.do("GET", "/fhir/Patient/id1/_history/2", "", ""), 404)

	// Update: new identifier, version 2; stale If-Match fails.
	upd := strings.Replace(patientJSON, `"id":"ignored"`, `"id":"id1"`, 1)
	upd = strings.Replace(upd, "MRN-1", "MRN-2", 1)
	r = f.do("PUT", "/fhir/Patient/id1", "application/json", upd, "If-Match", `W/"1"`)
	f.expect(r, 200)
	if r.header.Get("ETag") != `W/"2"` {
		t.Errorf("ETag after update = %q", r.header.Get("ETag"))
	}
	f.expect(f.do("PUT", "/fhir/Patient/id1", "application/json", upd, "If-Match", `W/"1"`), 412)
	f.expect(f.do("PUT", "/fhir/Patient/other", "application/json", strings.Replace(upd, `"id":"id1"`, `"id":"other"`, 1)), 404)
	f.expect(f.do("PUT", "/fhir/Patient/id1", "application/json", strings.Replace(upd, `"id":"id1"`, `"id":"id9"`, 1)), 400)

	// Search by the new identifier finds it; the old one no longer does.
	r = f.do("GET", "/fhir/Patient?identifier=http://hospital.example/mrn|MRN-2", "", "")
	f.expect(r, 200)
	b := r.json(t)
	if b["total"] != float64(1) {
		t.Fatalf("search total = %v\n%s", b["total"], r.body)
	}
	entries := b["entry"].([]any)
	if e := entries[0].(map[string]any); e["fullUrl"] != f.srv.URL+"/fhir/Patient/id1" {
		t.Errorf("fullUrl = %v", e["fullUrl"])
	}
	r = f.do("GET", "/fhir/Patient?identifier=MRN-1&_summary=count", "", "")
	f.expect(r, 200)
	if b := r.json(t); b["total"] != float64(0) || b["entry"] != nil {
		t.Errorf("old identifier still matches: %s", r.body)
	}
}

func TestDeviceBinding(t *testing.T) {
	f := newFixture(t)
	f.expect(f.do("POST", "/fhir/Patient", "application/fhir+json", patientJSON), 201)

	r := f.do("POST", "/fhir/Device", "application/fhir+json",
		`{"resourceType":"Device","patient":{"reference":"Patient/nobody"}}`)
	f.expect(r, 422)
	if len(f.changed) != 0 {
		t.Fatalf("OnDeviceChanged called after a failed write: %v", f.changed)
	}
	f.expect(f.do("POST", "/fhir/Device", "application/fhir+json",
		`{"resourceType":"Device","patient":{"reference":"Organization/x"}}`), 422)
	f.expect(f.do("POST", "/fhir/Device", "application/fhir+json",
		`{"resourceType":"Device","serialNumber":42}`), 400)

	dev := `{"resourceType":"Device","identifier":[{"system":"urn:tend:serial","value":"SN1"}],
	 "manufacturer":"Acme","modelNumber":"OX-1","deviceName":[{"name":"Pulse oximeter","type":"user-friendly-name"}],
	 "serialNumber":"SN1","patient":{"reference":"Patient/id1"},"note":[{"text":"kept"}]}`
	r = f.do("POST", "/fhir/Device", "application/fhir+json", dev)
	f.expect(r, 201)
	d := r.json(t)
	if d["id"] != "id2" || d["modelNumber"] != "OX-1" || d["note"] == nil {
		t.Errorf("device body: %s", r.body)
	}
	ctx := context.Background()
	if got, err := f.store.PatientAt(ctx, "id2", fixedNow); err != nil || got != "id1" {
		t.Errorf("PatientAt = %q, %v; want id1", got, err)
	}

	// Unbind by update.
	r = f.do("PUT", "/fhir/Device/id2", "application/fhir+json", `{"resourceType":"Device","id":"id2"}`)
	f.expect(r, 200)
	sd, err := f.store.Device(ctx, "id2")
	if err != nil || sd.Patient != "" || sd.Version != 2 {
		t.Errorf("stored device after unbind = %+v, %v", sd, err)
	}
	if fmt.Sprint(f.changed) != "[id2 id2]" {
		t.Errorf("OnDeviceChanged calls = %v, want [id2 id2]", f.changed)
	}
	f.expect(f.do("GET", "/fhir/Device/id2", "", ""), 200)
	f.expect(f.do("GET", "/fhir/Device/nope", "", ""), 404)
}

func appendReadings(t *testing.T, st store.Store, rs ...reading.Reading) {
	t.Helper()
	if _, err := st.Append(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
}

func TestObservationSearch(t *testing.T) {
	f := newFixture(t)
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var rs []reading.Reading
	for i := range 5 {
		rs = append(rs, reading.Reading{Patient: "p1", Device: "d1", Code: "8867-4", Value: float64(60 + i), HasValue: true,
			Unit: "/min", Time: base.Add(time.Duration(i) * time.Minute), Received: base.Add(time.Duration(i)*time.Minute + time.Second), Source: "mqtt"})
	}
	rs = append(rs, reading.Reading{Patient: "p1", Device: "d1", Code: "59408-5", Value: 97, HasValue: true, Unit: "%", Time: base.Add(-time.Minute), Received: base, Source: "http"},
		reading.Reading{Patient: "p2", Device: "d2", Code: "8867-4", Value: 99, HasValue: true, Unit: "/min", Time: base, Received: base, Source: "http"})
	appendReadings(t, f.store, rs...)

	values := func(b map[string]any) []float64 {
		var out []float64
		entries, _ := b["entry"].([]any)
		for _, e := range entries {
			res := e.(map[string]any)["resource"].(map[string]any)
			if vq, ok := res["valueQuantity"].(map[string]any); ok {
				out = append(out, vq["value"].(float64))
			}
		}
		return out
	}
	tests := []struct {
		query string
		total int
		vals  []float64
	}{
		{"patient=p1", 6, []float64{64, 63, 62, 61, 60, 97}},
		{"patient=p1&code=http://loinc.org|8867-4", 5, []float64{64, 63, 62, 61, 60}},
		{"patient=p1&code=urn:iso:std:iso:11073:10101|150456", 1, []float64{97}},
		{"subject=Patient/p1&code=8867-4&_sort=date&_count=2", 5, []float64{60, 61}},
		{"patient=p1&code=8867-4&_sort=date&_count=2&_offset=4", 5, []float64{64}},
		{"patient=p1&code=8867-4&date=ge2026-11-23T10:01:00Z&date=lt2026-11-23T10:03Z", 2, []float64{62, 61}},
		{"patient=p1&date=2026-11-22", 0, nil},
		{"patient=p1&code=http://snomed.info/sct|1", 0, nil},
		{"patient=p1&_summary=count", 6, nil},
		{"patient=p2", 1, []float64{99}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := f.do("GET", "/fhir/Observation?"+tt.query, "", "")
			f.expect(r, 200)
			b := r.json(t)
			if b["total"] != float64(tt.total) {
				t.Errorf("total = %v, want %d", b["total"], tt.total)
			}
			if got := values(b); fmt.Sprint(got) != fmt.Sprint(tt.vals) {
				t.Errorf("values = %v, want %v", got, tt.vals)
			}
		})
	}

	// Paging links walk the whole result exactly once.
	next := f.srv.URL + "/fhir/Observation?patient=p1&_count=4"
	var seen []float64
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("paging does not terminate")
		}
		r := f.do("GET", strings.TrimPrefix(next, f.srv.URL), "", "")
		f.expect(r, 200)
		b := r.json(t)
		seen = append(seen, values(b)...)
		next = ""
		for _, l := range b["link"].([]any) {
			l := l.(map[string]any)
			if l["relation"] == "next" {
				next = l["url"].(string)
			}
			if l["relation"] == "previous" && pages == 0 {
				t.Error("first page has a previous link")
			}
		}
	}
	if fmt.Sprint(seen) != "[64 63 62 61 60 97]" {
		t.Errorf("paged values = %v", seen)
	}

	// Read one entry back by id.
	r := f.do("GET", "/fhir/Observation?patient=p1&code=59408-5", "", "")
	id := r.json(t)["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"].(string)
	r = f.do("GET", "/fhir/Observation/"+id, "", "")
	f.expect(r, 200)
	if o := r.json(t); o["id"] != id || o["status"] != "final" {
		t.Errorf("read observation: %s", r.body)
	}
	f.expect(f.do("GET", "/fhir/Observation/zz-zz", "", ""), 404)
	f.expect(f.do("GET", "/fhir/Observation/not_an_id!", "", ""), 404)

	// Lenient: unknown parameter reported in an outcome entry; strict: 400.
	r = f.do("GET", "/fhir/Observation?patient=p2&foo=1", "", "")
	f.expect(r, 200)
	if !bytes.Contains(r.body, []byte(`"mode": "outcome"`)) || !bytes.Contains(r.body, []byte(`\"foo\" is not supported`)) {
		t.Errorf("lenient warning missing: %s", r.body)
	}
	f.expect(f.do("GET", "/fhir/Observation?patient=p2&foo=1", "", "", "Prefer", "handling=strict"), 400)
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	big := `{"resourceType":"Patient","x":"` + strings.Repeat("a", maxBody) + `"}`
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		diagnostics                     string
	}{
		{"xml body", "POST", "/fhir/Patient", "application/fhir+xml", `<Patient/>`, 415, "Content-Type"},
		{"no content type", "POST", "/fhir/Patient", "", `{}`, 415, "Content-Type"},
		{"invalid json", "POST", "/fhir/Patient", "application/fhir+json", `{"resourceType":"Patient",}`, 400, "byte offset 27"},
		{"trailing data", "POST", "/fhir/Patient", "application/fhir+json", `{"resourceType":"Patient"} x`, 400, "invalid JSON"},
		{"not an object", "POST", "/fhir/Patient", "application/fhir+json", `[1]`, 400, "invalid JSON"},
		{"wrong type", "POST", "/fhir/Patient", "application/fhir+json", `{"resourceType":"Device"}`, 400, "does not match"},
		{"missing type", "POST", "/fhir/Patient", "application/fhir+json", `{"id":"x"}`, 400, "resourceType is required"},
		{"identifier type", "POST", "/fhir/Patient", "application/fhir+json", `{"resourceType":"Patient","identifier":{"value":"x"}}`, 400, "identifier"},
		{"too large", "POST", "/fhir/Patient", "application/fhir+json", big, 413, "exceeds"},
		{"unknown patient", "GET", "/fhir/Patient/nope", "", "", 404, "not found"},
		{"unknown endpoint", "GET", "/fhir/Encounter", "", "", 404, "no such"},
		{"method", "DELETE", "/fhir/Patient/x", "", "", 405, "DELETE"},
		{"method on search", "POST", "/fhir/Observation/x", "application/fhir+json", "{}", 405, "POST"},
		{"observation without patient", "GET", "/fhir/Observation?code=8867-4", "", "", 400, "patient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(tt.method, tt.path, tt.ctype, tt.body)
			f.expect(r, tt.status)
			oo := r.json(t)
			if oo["resourceType"] != "OperationOutcome" {
				t.Fatalf("not an OperationOutcome: %s", r.body)
			}
			diag := oo["issue"].([]any)[0].(map[string]any)["diagnostics"].(string)
			if !strings.Contains(diag, tt.diagnostics) {
				t.Errorf("diagnostics %q does not mention %q", diag, tt.diagnostics)
			}
			if strings.Contains(diag, "sqlite") {
				t.Errorf("diagnostics leak internal detail: %q", diag)
			}
		})
	}
	if r := f.do("PUT", "/fhir/Device", "application/fhir+json", "{}"); r.header.Get("Allow") != "POST" {
		t.Errorf("Allow = %q, want POST", r.header.Get("Allow"))
	}
}

func TestInternalErrorIsGeneric(t *testing.T) {
	st := newStore(t)
	st.Close() // every store call now fails with an internal error
	var logged bytes.Buffer
	h := NewHandler(Config{Store: st, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/fhir/Patient/p1", nil))
	if rec.Code != 500 {
		t.Fatalf("status = %d, want 500: %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "sqlite") || !strings.Contains(rec.Body.String(), "internal server error") {
		t.Errorf("500 body = %s", rec.Body)
	}
	if !strings.Contains(logged.String(), "sqlite") {
		t.Errorf("internal detail not logged: %s", logged.String())
	}
}

func TestPatientSearchPaging(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		f.expect(f.do("POST", "/fhir/Patient", "application/fhir+json", patientJSON), 201)
	}
	r := f.do("GET", "/fhir/Patient?identifier=MRN-1&_count=2", "", "")
	f.expect(r, 200)
	b := r.json(t)
	links := map[string]string{}
	for _, l := range b["link"].([]any) {
		l := l.(map[string]any)
		links[l["relation"].(string)] = l["url"].(string)
	}
	if b["total"] != float64(3) || len(b["entry"].([]any)) != 2 {
		t.Fatalf("first page: total %v, %d entries", b["total"], len(b["entry"].([]any)))
	}
	if want := f.srv.URL + "/fhir/Patient?_count=2&_offset=2&identifier=MRN-1"; links["next"] != want {
		t.Errorf("next = %q, want %q", links["next"], want)
	}
	r = f.do("GET", strings.TrimPrefix(links["next"], f.srv.URL), "", "")
	f.expect(r, 200)
	if b := r.json(t); len(b["entry"].([]any)) != 1 {
		t.Errorf("second page has %d entries, want 1", len(b["entry"].([]any)))
	}
	f.expect(f.do("GET", "/fhir/Patient?name=Doe", "", "", "Prefer", "handling=strict"), 400)
	r = f.do("GET", "/fhir/Patient?_summary=count", "", "")
	f.expect(r, 200)
	if b := r.json(t); b["total"] != float64(3) || b["entry"] != nil {
		t.Errorf("count only: %s", r.body)
	}
}

func TestMetadata(t *testing.T) {
	f := newFixture(t)
	r := f.do("GET", "/fhir/metadata", "", "")
	f.expect(r, 200)
	if c := r.json(t); c["fhirVersion"] != "4.0.1" || c["resourceType"] != "CapabilityStatement" {
		t.Errorf("metadata: %s", r.body)
	}
}
