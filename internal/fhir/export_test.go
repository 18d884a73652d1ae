package fhir

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// exportFixture: organisations north (n1, n2, n3) and south (s1, s2), each
// patient with a bound device and three readings, the first received an
// hour before the others. nurse's care team holds n1 only.
type exportFixture struct {
	t   *testing.T
	st  store.Store
	exp *Exporter
	srv *httptest.Server

	mu  sync.Mutex
	now time.Time
}

var exportPrincipals = map[string]auth.Principal{
	"north-admin":  {Subject: "north-admin", Role: "admin", Org: "north"},
	"north-admin2": {Subject: "north-admin2", Role: "admin", Org: "north"},
	"north-nurse":  {Subject: "north-nurse", Role: "nurse", Org: "north"},
	"south-admin":  {Subject: "south-admin", Role: "admin", Org: "south"},
	// Same subject, other organisation: not the same principal.
	"south-as-north-admin": {Subject: "north-admin", Role: "admin", Org: "south"},
}

func (f *exportFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *exportFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newExportFixture(t *testing.T, fileLines int) *exportFixture {
	t.Helper()
	f := &exportFixture{t: t, st: newStore(t), now: fixedNow}
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for org, ps := range map[string][]string{"north": {"n1", "n2", "n3"}, "south": {"s1", "s2"}} {
		must(f.st.CreateOrg(ctx, store.Organisation{ID: org, Name: org}))
		for i, p := range ps {
			res := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"MRN-%s"}],"name":[{"family":"Fam-%s"}],"gender":"female","birthDate":"1950-01-0%d"}`, p, p, i+1)
			must(f.st.CreatePatient(ctx, &store.Patient{ID: p, Org: org, Identifiers: []store.Identifier{{System: "urn:mrn", Value: "MRN-" + p}}, Resource: []byte(res)}))
			dev := "dev-" + p
			must(f.st.CreateDevice(ctx, &store.Device{ID: dev, Org: org, Patient: p,
				Resource: []byte(`{"resourceType":"Device","manufacturer":"Acme","modelNumber":"OX-1","patient":{"reference":"Patient/` + p + `"}}`)}, fixedNow.Add(-2*time.Hour)))
			var rs []reading.Reading
			for k := range 3 {
				received := fixedNow.Add(-time.Hour)
				if k > 0 {
					received = fixedNow.Add(-time.Minute)
				}
				rs = append(rs, reading.Reading{Patient: p, Device: dev, Code: "59408-5", Value: float64(94 + k), HasValue: true, Unit: "%",
					Time: fixedNow.Add(-time.Duration(90-k) * time.Minute), Received: received, Source: "test"})
			}
			appendReadings(t, f.st, rs...)
		}
	}
	must(f.st.CreateCareTeam(ctx, store.CareTeam{ID: "ward", Org: "north", Name: "Ward"}))
	must(f.st.SetCareTeamMember(ctx, "ward", "north-nurse", true))
	must(f.st.SetCareTeamPatient(ctx, "ward", "n1", true))

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol := access.New(f.st, f.clock)
	n := 0
	f.exp = NewExporter(ExportConfig{Store: f.st, Access: pol, Now: f.clock, Logger: log, FileLines: fileLines, Expiry: time.Hour,
		NewID: func() string { n++; return fmt.Sprintf("job%d", n) }})
	h := NewHandler(Config{Store: f.st, Now: f.clock, Logger: log, Access: pol, Export: f.exp})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Authentication happens in front of the FHIR handler; here a
		// bearer token names the principal.
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		p, ok := exportPrincipals[tok]
		if !ok {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

type exportResponse struct {
	status int
	header http.Header
	body   []byte
}

func (f *exportFixture) do(method, target, who string, async bool) exportResponse {
	f.t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = f.srv.URL + target
	}
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+who)
	req.Header.Set("Accept", "application/fhir+json")
	if async {
		req.Header.Set("Prefer", "respond-async")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return exportResponse{resp.StatusCode, resp.Header, b}
}

// kickOff starts an export and returns its status URL.
func (f *exportFixture) kickOff(path, who string) string {
	f.t.Helper()
	r := f.do("GET", path, who, true)
	if r.status != http.StatusAccepted {
		f.t.Fatalf("kick-off %s: %d %s", path, r.status, r.body)
	}
	loc := r.header.Get("Content-Location")
	if !strings.HasPrefix(loc, f.srv.URL+"/fhir/$export-poll-status/") {
		f.t.Fatalf("Content-Location = %q", loc)
	}
	return loc
}

// runAll runs every queued job.
func (f *exportFixture) runAll() {
	f.t.Helper()
	for {
		ran, err := f.exp.RunOnce(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		if !ran {
			return
		}
	}
}

// manifest polls a finished job.
func (f *exportFixture) manifest(status, who string) Manifest {
	f.t.Helper()
	r := f.do("GET", status, who, false)
	if r.status != http.StatusOK {
		f.t.Fatalf("status: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("manifest Content-Type = %q", ct)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		f.t.Fatalf("manifest: %v\n%s", err, r.body)
	}
	return m
}

// download fetches every file of m and returns its resources per type,
// each line checked against the R4 schema and its file's type and count.
func (f *exportFixture) download(m Manifest, who string) map[string][]map[string]any {
	f.t.Helper()
	sch, err := fhirSchema()
	if err != nil {
		f.t.Fatalf("FHIR schema: %v", err)
	}
	out := map[string][]map[string]any{}
	for _, o := range m.Output {
		r := f.do("GET", o.URL, who, false)
		if r.status != http.StatusOK {
			f.t.Fatalf("download %s: %d %s", o.URL, r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/fhir+ndjson" {
			f.t.Errorf("file Content-Type = %q", ct)
		}
		lines := 0
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines++
			line := sc.Bytes()
			if err := validateFHIR(sch, line); err != nil {
				f.t.Errorf("%s line %d is not a valid R4 resource: %v\n%s", o.URL, lines, err, line)
			}
			var res map[string]any
			if err := json.Unmarshal(line, &res); err != nil {
				f.t.Fatalf("%s line %d: %v", o.URL, lines, err)
			}
			if res["resourceType"] != o.Type {
				f.t.Errorf("%s line %d is a %v in a %s file", o.URL, lines, res["resourceType"], o.Type)
			}
			out[o.Type] = append(out[o.Type], res)
		}
		if lines != o.Count {
			f.t.Errorf("%s has %d lines, the manifest says %d", o.URL, lines, o.Count)
		}
	}
	return out
}

// patientsIn returns, per type, the patients the resources are about.
func patientsIn(res map[string][]map[string]any) map[string][]string {
	out := map[string][]string{}
	for typ, rs := range res {
		for _, r := range rs {
			var p string
			switch typ {
			case "Patient":
				p = r["id"].(string)
			case "Device":
				p = strings.TrimPrefix(r["patient"].(map[string]any)["reference"].(string), "Patient/")
			case "Observation":
				p = strings.TrimPrefix(r["subject"].(map[string]any)["reference"].(string), "Patient/")
			}
			if !slices.Contains(out[typ], p) {
				out[typ] = append(out[typ], p)
			}
		}
		slices.Sort(out[typ])
	}
	return out
}

func TestExportFlow(t *testing.T) {
	f := newExportFixture(t, 0)
	status := f.kickOff("/fhir/$export?_outputFormat="+url.QueryEscape("application/fhir+ndjson"), "north-admin")

	r := f.do("GET", status, "north-admin", false)
	if r.status != http.StatusAccepted || r.header.Get("X-Progress") == "" || r.header.Get("Retry-After") == "" {
		t.Fatalf("poll before the run: %d X-Progress=%q Retry-After=%q", r.status, r.header.Get("X-Progress"), r.header.Get("Retry-After"))
	}
	f.runAll()
	m := f.manifest(status, "north-admin")
	if m.TransactionTime != formatInstant(fixedNow) || !m.RequiresAccessToken || m.Request != f.srv.URL+"/fhir/$export?_outputFormat=application%2Ffhir%2Bndjson" || m.Error == nil {
		t.Errorf("manifest = %+v", m)
	}
	var types []string
	for _, o := range m.Output {
		types = append(types, fmt.Sprintf("%s:%d", o.Type, o.Count))
	}
	if want := []string{"Patient:3", "Device:3", "Observation:9"}; !slices.Equal(types, want) {
		t.Errorf("output = %v, want %v", types, want)
	}
	res := f.download(m, "north-admin")
	got := patientsIn(res)
	want := []string{"n1", "n2", "n3"}
	for _, typ := range ExportTypes {
		if !slices.Equal(got[typ], want) {
			t.Errorf("%s resources are about %v, want %v", typ, got[typ], want)
		}
	}

	// Nobody else sees the job or its files, not even the same subject
	// acting in another organisation.
	for _, who := range []string{"north-admin2", "north-nurse", "south-admin", "south-as-north-admin"} {
		for _, req := range []struct{ method, url string }{{"GET", status}, {"GET", m.Output[0].URL}, {"DELETE", status}} {
			if r := f.do(req.method, req.url, who, false); r.status != http.StatusNotFound {
				t.Errorf("%s %s as %s: %d, want 404", req.method, req.url, who, r.status)
			}
		}
	}

	// DELETE removes the job and its files.
	if r := f.do("DELETE", status, "north-admin", false); r.status != http.StatusAccepted {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	for _, u := range []string{status, m.Output[0].URL} {
		if r := f.do("GET", u, "north-admin", false); r.status != http.StatusNotFound {
			t.Errorf("GET %s after delete: %d, want 404", u, r.status)
		}
	}
}

// TestExportScoping: every principal's export holds its own patients'
// resources and not one line of anyone else's.
func TestExportScoping(t *testing.T) {
	f := newExportFixture(t, 0)
	for _, tc := range []struct {
		who, path string
		want      []string
	}{
		{"south-admin", "/fhir/$export", []string{"s1", "s2"}},
		{"south-admin", "/fhir/Patient/$export", []string{"s1", "s2"}},
		{"north-nurse", "/fhir/Patient/$export", []string{"n1"}},
		{"north-nurse", "/fhir/$export", []string{"n1"}},
	} {
		t.Run(tc.who+tc.path, func(t *testing.T) {
			status := f.kickOff(tc.path, tc.who)
			f.runAll()
			got := patientsIn(f.download(f.manifest(status, tc.who), tc.who))
			for _, typ := range ExportTypes {
				if !slices.Equal(got[typ], tc.want) {
					t.Errorf("%s resources are about %v, want %v", typ, got[typ], tc.want)
				}
			}
		})
	}
}

func TestExportTypeSinceAndFiles(t *testing.T) {
	f := newExportFixture(t, 2)
	since := fixedNow.Add(-30 * time.Minute).Format(time.RFC3339)
	status := f.kickOff("/fhir/$export?_type=Observation&_since="+url.QueryEscape(since), "north-admin")
	f.runAll()
	m := f.manifest(status, "north-admin")
	total := 0
	for _, o := range m.Output {
		if o.Type != "Observation" || o.Count > 2 {
			t.Errorf("output %+v: want Observation files of at most 2 lines", o)
		}
		total += o.Count
	}
	// Two readings of each of n1..n3 were received after _since.
	if total != 6 || len(m.Output) != 3 {
		t.Errorf("%d observations in %d files, want 6 in 3", total, len(m.Output))
	}
	res := f.download(m, "north-admin")
	if len(res["Observation"]) != 6 {
		t.Errorf("downloaded %d observations", len(res["Observation"]))
	}
}

func TestExportExpiry(t *testing.T) {
	f := newExportFixture(t, 0)
	status := f.kickOff("/fhir/$export?_type=Patient", "north-admin")
	f.runAll()
	m := f.manifest(status, "north-admin")
	f.advance(time.Hour)
	for _, u := range []string{status, m.Output[0].URL} {
		if r := f.do("GET", u, "north-admin", false); r.status != http.StatusNotFound {
			t.Errorf("GET %s after expiry: %d, want 404", u, r.status)
		}
	}
	n, err := f.st.DeleteExpiredExportJobs(context.Background(), f.clock())
	if err != nil || n != 1 {
		t.Errorf("DeleteExpiredExportJobs = %d, %v; want 1", n, err)
	}
}

// TestExportRevokedAccess: the scope is computed when the job runs, so a
// patient removed from the care team meanwhile is not exported.
func TestExportRevokedAccess(t *testing.T) {
	f := newExportFixture(t, 0)
	status := f.kickOff("/fhir/$export", "north-nurse")
	if err := f.st.SetCareTeamPatient(context.Background(), "ward", "n1", false); err != nil {
		t.Fatal(err)
	}
	f.runAll()
	if m := f.manifest(status, "north-nurse"); len(m.Output) != 0 {
		t.Errorf("output after revocation = %+v, want none", m.Output)
	}
}

func TestExportKickOffErrors(t *testing.T) {
	f := newExportFixture(t, 0)
	for _, tc := range []struct {
		path   string
		async  bool
		status int
		detail string
	}{
		{"/fhir/$export", false, 400, "Prefer: respond-async"},
		{"/fhir/$export?_outputFormat=text/csv", true, 400, "_outputFormat"},
		{"/fhir/$export?_type=Patient,Medication", true, 400, "Medication"},
		{"/fhir/$export?_since=yesterday", true, 400, "_since"},
		{"/fhir/$export?_since=2026-01-02T03:04:05", true, 400, "_since"},
		{"/fhir/$export?_typeFilter=Observation%3Fcode%3Dx", true, 400, "_typeFilter"},
		{"/fhir/Group/g1/$export", true, 404, ""},
		{"/fhir/$export?_outputFormat=ndjson&_type=Device", true, 202, ""},
		{"/fhir/$export-poll-status/nope", false, 404, "no such export"},
		{"/fhir/$export-file/nope/Patient-0001.ndjson", false, 404, "no such export"},
	} {
		r := f.do("GET", tc.path, "north-admin", tc.async)
		if r.status != tc.status || !strings.Contains(string(r.body), tc.detail) {
			t.Errorf("GET %s: %d %s, want %d mentioning %q", tc.path, r.status, r.body, tc.status, tc.detail)
		}
	}
	if r := f.do("POST", "/fhir/$export", "north-admin", true); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST $export: %d, want 405", r.status)
	}
}

// TestExporterStartClose runs a job through the background workers.
func TestExporterStartClose(t *testing.T) {
	f := newExportFixture(t, 0)
	f.exp.cfg.Poll = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := f.exp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.exp.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	status := f.kickOff("/fhir/$export?_type=Patient", "north-admin")
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := f.do("GET", status, "north-admin", false)
		if r.status == http.StatusOK {
			break
		}
		if r.status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond) // polling a running thing, as a client does
	}
	if err := f.exp.Close(); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseExportRequest(f *testing.F) {
	for _, q := range []string{"", "_type=Patient,Observation", "_since=2026-01-02T03:04:05Z", "_outputFormat=ndjson", "_type=,", "_since=a&_since=b", "x=1"} {
		f.Add(q, true)
	}
	f.Fuzz(func(t *testing.T, query string, async bool) {
		r := httptest.NewRequest("GET", "/fhir/$export", nil)
		r.URL.RawQuery = query
		if async {
			r.Header.Set("Prefer", "respond-async")
		}
		ps, err := parseExportRequest(r, "system")
		if err != nil {
			return
		}
		if !async || len(ps.Types) == 0 {
			t.Fatalf("accepted %q (async %v): %+v", query, async, ps)
		}
		for _, typ := range ps.Types {
			if !slices.Contains(ExportTypes, typ) {
				t.Fatalf("type %q accepted", typ)
			}
		}
	})
}
