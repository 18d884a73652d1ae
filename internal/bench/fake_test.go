package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeTend is a stand-in for a Tend server that keeps the parts of the
// external contract the load generator uses, strictly enough to catch a
// malformed request: it checks tokens, content types, resource shapes and
// SenML records, and stores each (device, code, time) once.
type fakeTend struct {
	t     *testing.T
	token string
	run   string // device id prefix, unique per test

	mu        sync.Mutex
	patients  map[string]bool
	devices   map[string]string // device → patient
	secrets   map[string]string // device → secret
	seen      map[string]bool   // device|code|time
	stored    map[string]int64  // patient → readings
	dropEvery int64             // acknowledge but do not store every n-th reading (0 = never)
	accepted  int64
	refuseObs bool // answer every reading with 503, as an overloaded server would
	problems  []string
}

func newFakeTend(t *testing.T, token string) (*fakeTend, *httptest.Server) {
	f := &fakeTend{t: t, token: token, run: fmt.Sprintf("%p", t)[2:],
		patients: map[string]bool{}, devices: map[string]string{}, secrets: map[string]string{},
		seen: map[string]bool{}, stored: map[string]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /fhir/Patient", f.admin(f.createPatient))
	mux.HandleFunc("POST /fhir/Device", f.admin(f.createDevice))
	mux.HandleFunc("POST /api/v1/devices/{id}/credentials", f.admin(f.credentials))
	mux.HandleFunc("POST /api/v1/devices/{id}/obs", f.observations)
	mux.HandleFunc("GET /fhir/Observation", f.admin(f.count))
	mux.HandleFunc("GET /metrics", f.metrics)
	srv := httptest.NewServer(mux) // listens on 127.0.0.1, port 0
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, p := range f.problems {
			t.Errorf("fake Tend saw a bad request: %s", p)
		}
	})
	return f, srv
}

func (f *fakeTend) problem(w http.ResponseWriter, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	f.mu.Lock()
	if status != http.StatusUnauthorized {
		f.problems = append(f.problems, msg)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"title": http.StatusText(status), "detail": msg})
}

func (f *fakeTend) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			f.problem(w, http.StatusUnauthorized, "a valid bearer token is required")
			return
		}
		h(w, r)
	}
}

func (f *fakeTend) decodeFHIR(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/fhir+json" {
		f.problem(w, http.StatusUnsupportedMediaType, "content type %q", ct)
		return false
	}
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		f.problem(w, http.StatusBadRequest, "bad JSON: %v", err)
		return false
	}
	return true
}

type fhirIdentifier struct{ System, Value string }

func (f *fakeTend) createPatient(w http.ResponseWriter, r *http.Request) {
	var p struct {
		ResourceType string
		Identifier   []fhirIdentifier
		Name         []struct {
			Family string
			Given  []string
		}
	}
	if !f.decodeFHIR(w, r, &p) {
		return
	}
	if p.ResourceType != "Patient" || len(p.Identifier) != 1 || p.Identifier[0].System != "urn:tend:bench" ||
		!strings.HasPrefix(p.Identifier[0].Value, "bench-") || len(p.Name) != 1 || p.Name[0].Family != "Bench" {
		f.problem(w, http.StatusBadRequest, "patient resource %+v", p)
		return
	}
	f.mu.Lock()
	id := fmt.Sprintf("pat-%s-%d", f.run, len(f.patients))
	f.patients[id] = true
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"resourceType":"Patient","id":%q}`, id)
}

func (f *fakeTend) createDevice(w http.ResponseWriter, r *http.Request) {
	var d struct {
		ResourceType string
		Identifier   []fhirIdentifier
		Patient      struct{ Reference string }
	}
	if !f.decodeFHIR(w, r, &d) {
		return
	}
	pid, ok := strings.CutPrefix(d.Patient.Reference, "Patient/")
	f.mu.Lock()
	ok = ok && f.patients[pid]
	f.mu.Unlock()
	if d.ResourceType != "Device" || len(d.Identifier) != 1 || !strings.Contains(d.Identifier[0].Value, "-dev-") || !ok {
		f.problem(w, http.StatusBadRequest, "device resource %+v", d)
		return
	}
	f.mu.Lock()
	id := fmt.Sprintf("dev-%s-%d", f.run, len(f.devices))
	f.devices[id] = pid
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"resourceType":"Device","id":%q}`, id)
}

func (f *fakeTend) credentials(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	_, ok := f.devices[id]
	secret := "s3cret-" + id
	f.secrets[id] = secret
	f.mu.Unlock()
	if !ok {
		f.problem(w, http.StatusNotFound, "no device %q", id)
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"device": id, "username": id, "secret": secret})
}

// ingest stores SenML records of device; it is shared by the HTTP handler
// and the MQTT subscriber.
func (f *fakeTend) ingest(device string, payload []byte) error {
	var recs []struct {
		N string   `json:"n"`
		U string   `json:"u"`
		V *float64 `json:"v"`
		T *float64 `json:"t"`
	}
	if err := json.Unmarshal(payload, &recs); err != nil {
		return fmt.Errorf("SenML: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	patient, ok := f.devices[device]
	if !ok {
		return fmt.Errorf("unknown device %q", device)
	}
	for _, rec := range recs {
		if rec.N == "" || rec.U == "" || rec.V == nil || rec.T == nil || *rec.T < 1e9 {
			return fmt.Errorf("record %+v incomplete or not absolute time", rec)
		}
		key := fmt.Sprintf("%s|%s|%.3f", device, rec.N, *rec.T)
		if f.seen[key] {
			f.problems = append(f.problems, "duplicate reading "+key)
			continue
		}
		f.seen[key] = true
		f.accepted++
		if f.dropEvery > 0 && f.accepted%f.dropEvery == 0 {
			continue
		}
		f.stored[patient]++
	}
	return nil
}

func (f *fakeTend) observations(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	secret, refuse := f.secrets[id], f.refuseObs
	f.mu.Unlock()
	if refuse {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"title":"Service Unavailable","detail":"stream not ready"}`)
		return
	}
	if secret == "" || r.Header.Get("Authorization") != "Bearer "+secret {
		f.problem(w, http.StatusUnauthorized, "device credentials")
		return
	}
	if r.Header.Get("Content-Type") != "application/senml+json" {
		f.problem(w, http.StatusUnsupportedMediaType, "content type %q", r.Header.Get("Content-Type"))
		return
	}
	body, _ := io.ReadAll(r.Body)
	if err := f.ingest(id, body); err != nil {
		f.problem(w, http.StatusBadRequest, "%v", err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakeTend) count(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("_summary") != "count" {
		f.problem(w, http.StatusBadRequest, "expected _summary=count, got %q", r.URL.RawQuery)
		return
	}
	f.mu.Lock()
	n, ok := f.stored[q.Get("patient")]
	known := f.patients[q.Get("patient")]
	f.mu.Unlock()
	if !known {
		f.problem(w, http.StatusBadRequest, "unknown patient %q (stored %v)", q.Get("patient"), ok)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","total":%d}`, n)
}

// metrics exposes every stored reading as observed between 5 and 10 ms.
func (f *fakeTend) metrics(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	var n int64
	for _, c := range f.stored {
		n += c
	}
	f.mu.Unlock()
	fmt.Fprintf(w, "# TYPE tend_publish_to_stored_seconds histogram\n")
	for _, le := range []string{"0.001", "0.005"} {
		fmt.Fprintf(w, "tend_publish_to_stored_seconds_bucket{le=%q} 0\n", le)
	}
	for _, le := range []string{"0.01", "0.1", "+Inf"} {
		fmt.Fprintf(w, "tend_publish_to_stored_seconds_bucket{le=%q} %d\n", le, n)
	}
	fmt.Fprintf(w, "tend_publish_to_stored_seconds_count %d\n", n)
}

func (f *fakeTend) storedTotal() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, c := range f.stored {
		n += c
	}
	return n
}
