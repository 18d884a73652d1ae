package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store"
)

// publicRoutes answer without credentials by design; every other route
// the node serves must refuse a caller who has none. Keyed by the route
// pattern as registered (see node.Routes).
var publicRoutes = map[string]string{
	"GET /healthz":                              "liveness probe: says ok and nothing else",
	"GET /readyz":                               "readiness probe for load balancers",
	"GET /metrics":                              "Prometheus scrape: counters without PHI; restrict it to the monitoring network",
	"GET /.well-known/smart-configuration":      "SMART discovery document, public by the SMART App Launch specification",
	"GET /fhir/metadata":                        "the FHIR CapabilityStatement, which clients read before they have a token; no patient data",
	"GET /fhir/.well-known/smart-configuration": "the same document under the FHIR base, where SMART clients look first",
	"POST /auth/token":                          "OAuth token endpoint: the client authenticates in the body with a signed assertion",
	"POST /api/v1/auth/token":                   "password login that issues API tokens",
	"POST /api/v1/auth/logout":                  "deletes the presented token, whatever its state (an expired one too); 401 for an unknown one",
	"GET /signin":                               "the dashboard's sign-in page",
	"POST /signin":                              "the sign-in form",
	"POST /signout":                             "signing out needs no session; without one it only redirects to sign in",
	"GET /assets/":                              "the dashboard's static files (scripts, styles, icons)",
	"GET /favicon.ico":                          "a redirect to an asset",
}

// deviceRoutes take a device secret as their credential.
var deviceRoutes = map[string]string{
	"POST /api/v1/devices/{id}/obs": "device ingest over HTTP: the device secret is the credential",
}

// secFixture is a node with one patient's worth of PHI in every store a
// route can read: patient, device, readings, an alarm, a dead letter, a
// care team, a consent and a break-glass grant.
type secFixture struct {
	t       *testing.T
	n       *node.Node
	st      store.Store
	base    string
	admin   api
	p       enrolled
	obs     string // an observation id of the patient
	alarm   string
	dead    string // a dead letter id
	team    string
	consent string
	markers []string // strings that identify the patient: never in a refusal
	ids     []string // ids of the patient's records: only where the request named them
	logs    *lockedBuffer
}

// lockedBuffer collects the node's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// checkLogs fails if the node logged PHI or a secret: the patient's
// name, identifiers or birth date, the device secret or the admin token.
// Ids are not PHI and may be logged.
func (f *secFixture) checkLogs() {
	f.t.Helper()
	logs := f.logs.String()
	if !strings.Contains(logs, "level=") {
		f.t.Fatal("the node logged nothing: the check would prove nothing")
	}
	for _, s := range append([]string{f.p.secret, testToken}, f.markers...) {
		if i := strings.Index(logs, s); i >= 0 {
			start := strings.LastIndex(logs[:i], "\n") + 1
			end := i + strings.Index(logs[i:], "\n")
			f.t.Errorf("the log carries %q: %s", s, logs[start:max(end, i+len(s))])
		}
	}
}

const (
	secFamily = "Zebulon-Quarrington"
	secGiven  = "Philomena-Xanthe"
	secMRN    = "MRN-SEC-77351"
	secSerial = "SERIAL-SEC-99120"
	secReason = "Sec-teamname-Ovalbumin"
)

func newSecFixture(t *testing.T) *secFixture {
	t.Helper()
	logs := &lockedBuffer{}
	n, addrs := startNodeLogging(t, t.TempDir(), logs)
	f := &secFixture{t: t, n: n, st: n.Store(), base: "http://" + addrs.HTTP, logs: logs}
	f.admin = api{t: t, base: f.base, token: testToken}
	a := f.admin
	ctx := context.Background()
	p := a.must(201, "POST", "/fhir/Patient", "application/fhir+json", []byte(`{"resourceType":"Patient",
		"identifier":[{"system":"urn:mrn","value":"`+secMRN+`"}],"name":[{"family":"`+secFamily+`","given":["`+secGiven+`"]}],"birthDate":"1931-02-03"}`))
	f.p.patient = p["id"].(string)
	d := a.must(201, "POST", "/fhir/Device", "application/fhir+json", []byte(`{"resourceType":"Device",
		"identifier":[{"system":"urn:serial","value":"`+secSerial+`"}],"manufacturer":"Acme","patient":{"reference":"Patient/`+f.p.patient+`"}}`))
	f.p.device = d["id"].(string)
	f.p.secret = a.must(200, "POST", "/api/v1/devices/"+f.p.device+"/credentials", "", nil)["secret"].(string)
	dev := api{t: t, base: f.base, token: f.p.secret}
	now := float64(time.Now().UnixMilli()) / 1000
	dev.must(202, "POST", "/api/v1/devices/"+f.p.device+"/obs", "application/senml+json",
		[]byte(fmt.Sprintf(`[{"bt":%.3f,"n":"hr","u":"/min","v":71},{"n":"spo2","u":"%%","v":96},{"n":"fall","v":1}]`, now)))
	bad := dev.must(400, "POST", "/api/v1/devices/"+f.p.device+"/obs", "application/senml+json", []byte(`[{"n":"hartrate","v":72}]`))
	f.dead = fmt.Sprint(bad["deadletter"])
	if waitObs(a, f.p.patient, 2) < 2 {
		t.Fatal("the readings were not stored")
	}
	var bundle struct {
		Entry []struct{ Resource struct{ ID string } }
	}
	_, b := a.do("GET", "/fhir/Observation?patient="+f.p.patient, "", nil)
	mustJSON(t, b, &bundle)
	f.obs = bundle.Entry[0].Resource.ID
	// The fall is an event alarm, raised moments after it is durable.
	deadline := time.Now().Add(20 * time.Second)
	for f.alarm == "" {
		var list struct{ Alarms []struct{ ID string } }
		_, b := a.do("GET", "/api/v1/alarms?patient="+f.p.patient, "", nil)
		mustJSON(t, b, &list)
		if len(list.Alarms) > 0 {
			f.alarm = list.Alarms[0].ID
		} else if time.Now().After(deadline) {
			t.Fatal("the fall raised no alarm")
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	f.team = "sec-team"
	a.must(201, "POST", "/api/v1/care-teams", "application/json", []byte(`{"id":"sec-team","name":"`+secReason+`"}`))
	a.must(200, "PUT", "/api/v1/care-teams/sec-team/patients/"+f.p.patient, "", nil)
	if err := f.st.CreateUser(ctx, store.User{ID: "sec-clin", Name: "Sec Clinician", Role: store.RoleClinician, PasswordHash: "x", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.CreateUser(ctx, store.User{ID: "sec-carer", Name: "Sec Carer", Role: store.RoleCaregiver, PasswordHash: "x", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	a.must(200, "PUT", "/api/v1/care-teams/sec-team/members/sec-clin", "", nil)
	c := a.must(201, "POST", "/api/v1/consents", "application/json", []byte(`{"patient":"`+f.p.patient+`","grantee":"sec-carer","scope":"read+alarms"}`))
	f.consent = fmt.Sprint(c["id"])
	f.markers = []string{secFamily, secGiven, secMRN, secSerial, secReason, "1931-02-03"}
	f.ids = []string{f.p.patient, f.p.device, f.obs, f.alarm}
	return f
}

// path fills a route pattern's wildcards with the ids of the fixture's
// records, so that a route that forgot its check would answer with PHI.
func (f *secFixture) path(pattern string) string {
	var out []string
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		if !strings.HasPrefix(s, "{") {
			out = append(out, s)
			continue
		}
		prev := ""
		if i > 0 {
			prev = segs[i-1]
		}
		v := "x"
		switch strings.Trim(s, "{}.") {
		case "$":
			v = ""
		case "member":
			v = "sec-clin"
		case "setting":
			v = "ward"
		case "action":
			v = "ack"
		case "vid":
			v = "1"
		default:
			switch prev {
			case "patients", "Patient":
				v = f.p.patient
			case "devices", "Device":
				v = f.p.device
			case "Observation":
				v = f.obs
			case "alarms":
				v = f.alarm
			case "deadletters":
				v = f.dead
			case "care-teams":
				v = f.team
			case "consents":
				v = f.consent
			}
		}
		out = append(out, v)
	}
	p := strings.Join(out, "/")
	switch p { // subtree patterns: one concrete path below them
	case "/assets/":
		p = "/assets/app.js"
	case "/fhir/":
		p = "/fhir/Patient/" + f.p.patient
	case "/fhir/AuditEvent/":
		p = "/fhir/AuditEvent/1"
	}
	return p
}

// secCred is one way of calling without valid credentials.
type secCred struct {
	name  string
	apply func(*http.Request)
}

func (f *secFixture) creds() []secCred {
	ctx := context.Background()
	const expired = "sec-expired-admin-token-0123456789abcdef"
	if err := f.st.PutToken(ctx, store.Token{Hash: auth.HashSecret(expired), Role: store.RoleAdmin, Subject: "bootstrap",
		Created: time.Now().Add(-2 * time.Hour), Expires: time.Now().Add(-time.Hour)}); err != nil {
		f.t.Fatal(err)
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	return []secCred{
		{"none", func(*http.Request) {}},
		{"garbage", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer garbage.token.value")
			r.AddCookie(&http.Cookie{Name: "tend_session", Value: "garbage"})
		}},
		{"expired", bearer(expired)},
		{"device secret", bearer(f.p.secret)},
	}
}

// secResult is one answer, read whole.
type secResult struct {
	code     int
	location string
	ctype    string
	body     string
}

var noRedirect = &http.Client{Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (f *secFixture) send(t *testing.T, method, path string, cred secCred) (secResult, *http.Request) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		body = strings.NewReader(`{"resourceType":"Patient","name":[{"family":"Injected"}]}`)
	}
	req, err := http.NewRequest(method, f.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	cred.apply(req)
	// Streams would wait forever for events; the status comes first.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := noRedirect.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b []byte
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b = make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		b = b[:n]
	} else {
		b, _ = io.ReadAll(resp.Body)
	}
	return secResult{resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Content-Type"), string(b)}, req
}

// refused reports whether an answer gives a caller without credentials
// nothing: 401, 403, 404, 405 or a redirect to sign in.
func refused(r secResult) bool {
	switch r.code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
		return true
	case http.StatusFound, http.StatusSeeOther:
		return strings.HasPrefix(r.location, "/signin")
	}
	return false
}

// checkNoPHI fails when the answer names the patient beyond what the
// request itself named.
func (f *secFixture) checkNoPHI(t *testing.T, what string, req *http.Request, r secResult) {
	t.Helper()
	for _, m := range f.markers {
		if strings.Contains(r.body, m) {
			t.Errorf("%s: the answer (%d) carries %q of the patient: %.300s", what, r.code, m, r.body)
		}
	}
	for _, id := range f.ids {
		if id != "" && !strings.Contains(req.URL.String(), id) && strings.Contains(r.body, id) {
			t.Errorf("%s: the answer (%d) carries the id %q the request did not name: %.300s", what, r.code, id, r.body)
		}
	}
}

// audited runs do and checks the audit trail grew by exactly the record
// the request calls for: one for a PHI request (audit.Classify), naming
// the patient of its path and the status it was answered with; none for
// anything else.
func (f *secFixture) audited(t *testing.T, what string, do func() (secResult, *http.Request)) secResult {
	t.Helper()
	ctx := context.Background()
	before, err := f.st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, req := do()
	got, err := f.st.AuditEntries(ctx, store.AuditQuery{AfterSeq: before.Seq})
	if err != nil {
		t.Fatal(err)
	}
	class, phi := audit.Classify(req)
	if !phi {
		if len(got) != 0 {
			t.Errorf("%s: %d audit records for a request without PHI: %+v", what, len(got), got)
		}
		return r
	}
	if len(got) != 1 {
		t.Errorf("%s (%d): %d audit records, want exactly one: %+v", what, r.code, len(got), got)
		return r
	}
	rec := got[0]
	status := r.code
	if (r.code == http.StatusSeeOther || r.code == http.StatusFound) && strings.HasPrefix(r.location, "/signin") &&
		class.Action != audit.Login && class.Action != audit.Logout {
		status = http.StatusUnauthorized // the middleware records a redirect to sign in as the denial it is
	}
	if rec.Status != status {
		t.Errorf("%s: audit record has status %d, the answer was %d", what, rec.Status, r.code)
	}
	if status >= 400 && status < 500 && rec.Outcome == 0 {
		t.Errorf("%s: refused (%d) but the audit record has no failure outcome: %+v", what, status, rec)
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		if class.Action != audit.Login && class.Action != audit.Logout && rec.Action != string(audit.Denial) {
			t.Errorf("%s: refused (%d) but recorded as %q", what, status, rec.Action)
		}
	}
	for _, p := range class.Patients {
		if !slices.Contains(rec.Patients, p) {
			t.Errorf("%s: the audit record names patients %v, not %s", what, rec.Patients, p)
		}
	}
	return r
}

// routeMethods splits a pattern into the methods to try and the path.
// A pattern without a method answers any; a GET pattern also answers HEAD.
func routeMethods(pattern string, allowed map[string][]string) (methods []string, wrong, path string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		return []string{"GET", "POST", "PUT", "DELETE", "PATCH"}, "", pattern
	}
	methods = []string{method}
	if method == http.MethodGet {
		methods = append(methods, http.MethodHead)
	}
	for _, m := range []string{"DELETE", "PATCH", "PUT", "POST", "GET"} {
		if !slices.Contains(allowed[path], m) {
			return methods, m, path
		}
	}
	return methods, "", path
}

// TestNoRouteAnswersWithoutCredentials walks every route the node
// registers (API and dashboard) and every FHIR interaction its
// CapabilityStatement lists, with every method, a wrong method, and no,
// garbage, expired and device credentials: each is refused (or is on the
// public list above), no answer carries the seeded patient's data, and
// every PHI request leaves exactly one audit record of its denial.
func TestNoRouteAnswersWithoutCredentials(t *testing.T) {
	f := newSecFixture(t)
	routes := f.n.Routes()
	if len(routes) < 40 {
		t.Fatalf("the node lists %d routes: %v", len(routes), routes)
	}
	allowed := map[string][]string{}
	for _, r := range routes {
		if m, p, ok := strings.Cut(r, " "); ok {
			allowed[p] = append(allowed[p], m)
		}
	}
	creds := f.creds()
	seen := map[string]bool{}
	defer func() {
		t.Logf("%d routes, %d method and path pairs, %d credentials each", len(routes), len(seen), len(creds))
	}()
	for _, pattern := range routes {
		methods, wrong, pathPattern := routeMethods(pattern, allowed)
		path := f.path(pathPattern)
		try := func(method string, wrongMethod bool) {
			key := method + " " + path
			if seen[key] {
				return // the API and the dashboard may both list a path
			}
			seen[key] = true
			public := publicRoutes[pattern] != "" && !wrongMethod
			for _, c := range creds {
				what := fmt.Sprintf("%s %s (route %q, %s credentials)", method, path, pattern, c.name)
				r := f.audited(t, what, func() (secResult, *http.Request) { return f.send(t, method, path, c) })
				f.checkNoPHI(t, what, mustRequest(method, f.base+path), r)
				device := c.name == "device secret" && deviceRoutes[pattern] != "" && !wrongMethod
				if !public && !device && !refused(r) {
					t.Errorf("%s: answered %d without credentials: %.200s", what, r.code, r.body)
				}
			}
		}
		for _, m := range methods {
			try(m, false)
		}
		if wrong != "" {
			try(wrong, true)
		}
	}
	for p := range publicRoutes {
		if !slices.Contains(routes, p) {
			t.Errorf("the public list names %q, which the node does not serve: remove it", p)
		}
	}
	t.Run("FHIR interactions from the CapabilityStatement", func(t *testing.T) { f.walkFHIR(t, creds) })
	t.Run("device secret of one device on another", func(t *testing.T) {
		other := enrol(f.admin.with(t), "sec-other")
		r, _ := f.send(t, "POST", "/api/v1/devices/"+other.device+"/obs", secCred{"device", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+f.p.secret)
			r.Header.Set("Content-Type", "application/senml+json")
		}})
		if r.code != http.StatusUnauthorized {
			t.Errorf("a device's secret posted for another device: %d %s", r.code, r.body)
		}
	})
	// Hundreds of refusals, a dead letter and an alarm later, the log
	// still holds no PHI and no secret.
	f.checkLogs()
}

func mustRequest(method, u string) *http.Request {
	r, _ := http.NewRequest(method, u, nil)
	return r
}

// capabilityStatement is the part of GET /fhir/metadata the walk needs.
type capabilityStatement struct {
	Rest []struct {
		Interaction []struct{ Code string }
		Operation   []struct{ Name string }
		Resource    []struct {
			Type              string
			Interaction       []struct{ Code string }
			SearchParam       []struct{ Name string }
			SearchInclude     []string
			SearchRevInclude  []string
			Operation         []struct{ Name string }
			ConditionalCreate bool
		}
	}
}

// walkFHIR sends every interaction, search parameter, include and
// operation the CapabilityStatement lists with each credential.
func (f *secFixture) walkFHIR(t *testing.T, creds []secCred) {
	var cs capabilityStatement
	_, b := f.admin.with(t).do("GET", "/fhir/metadata", "", nil)
	mustJSON(t, b, &cs)
	if len(cs.Rest) == 0 || len(cs.Rest[0].Resource) == 0 {
		t.Fatalf("CapabilityStatement lists no resources: %s", b)
	}
	ids := map[string]string{"Patient": f.p.patient, "Device": f.p.device, "Observation": f.obs, "AuditEvent": "1"}
	values := map[string]string{"patient": f.p.patient, "subject": "Patient/" + f.p.patient, "identifier": "urn:mrn|" + secMRN,
		"code": "http://loinc.org|8867-4", "category": "vital-signs", "status": "final", "device": f.p.device,
		"date": "ge2000-01-01", "_sort": "-date", "_elements": "code", "_count": "10", "_offset": "0", "_summary": "count"}
	type call struct{ method, path string }
	var calls []call
	for _, rest := range cs.Rest {
		for _, in := range rest.Interaction {
			switch in.Code {
			case "batch", "transaction":
				calls = append(calls, call{"POST", "/fhir"})
			case "history-system":
				calls = append(calls, call{"GET", "/fhir/_history"})
			case "search-system":
				calls = append(calls, call{"GET", "/fhir?_type=Patient"})
			}
		}
		for _, op := range rest.Operation {
			calls = append(calls, call{"GET", "/fhir/$" + op.Name})
		}
		for _, res := range rest.Resource {
			typ := res.Type
			id := ids[typ]
			if id == "" {
				id = "x"
			}
			inst := "/fhir/" + typ + "/" + id
			for _, in := range res.Interaction {
				switch in.Code {
				case "read":
					calls = append(calls, call{"GET", inst})
				case "vread":
					calls = append(calls, call{"GET", inst + "/_history/1"})
				case "update", "patch":
					calls = append(calls, call{map[string]string{"update": "PUT", "patch": "PATCH"}[in.Code], inst})
				case "delete":
					calls = append(calls, call{"DELETE", inst})
				case "history-instance":
					calls = append(calls, call{"GET", inst + "/_history"})
				case "history-type":
					calls = append(calls, call{"GET", "/fhir/" + typ + "/_history"})
				case "create":
					calls = append(calls, call{"POST", "/fhir/" + typ})
				case "search-type":
					calls = append(calls, call{"GET", "/fhir/" + typ}, call{"POST", "/fhir/" + typ + "/_search"})
					for _, sp := range res.SearchParam {
						v := values[sp.Name]
						if v == "" {
							v = "x"
						}
						q := url.Values{sp.Name: {v}}
						if sp.Name != "patient" && typ == "Observation" {
							q.Set("patient", f.p.patient) // Observation searches need one
						}
						calls = append(calls, call{"GET", "/fhir/" + typ + "?" + q.Encode()})
					}
					for _, inc := range res.SearchInclude {
						calls = append(calls, call{"GET", "/fhir/" + typ + "?patient=" + f.p.patient + "&_include=" + url.QueryEscape(inc)})
					}
					for _, inc := range res.SearchRevInclude {
						calls = append(calls, call{"GET", "/fhir/" + typ + "?_id=" + id + "&_revinclude=" + url.QueryEscape(inc)})
					}
				}
			}
			for _, op := range res.Operation {
				calls = append(calls, call{"GET", "/fhir/" + typ + "/$" + op.Name + "?patient=" + f.p.patient}, call{"GET", inst + "/$" + op.Name})
			}
		}
	}
	// Endpoints under /fhir that the CapabilityStatement does not list.
	for _, p := range []string{"/fhir/$export", "/fhir/Patient/$export", "/fhir/$export-poll-status/x", "/fhir/$export-file/x/Patient-0001.ndjson",
		"/fhir/AuditEvent", "/fhir/AuditEvent?patient=" + f.p.patient, "/fhir/AuditEvent/1", "/fhir/Patient/" + f.p.patient + "/_history"} {
		calls = append(calls, call{"GET", p})
	}
	t.Logf("%d FHIR interactions from the CapabilityStatement and beside it, %d credentials each", len(calls), len(creds))
	if len(calls) < 20 {
		t.Fatalf("only %d FHIR calls from the CapabilityStatement", len(calls))
	}
	for _, c := range calls {
		for _, cr := range creds {
			what := fmt.Sprintf("%s %s (%s credentials)", c.method, c.path, cr.name)
			r := f.audited(t, what, func() (secResult, *http.Request) { return f.send(t, c.method, c.path, cr) })
			f.checkNoPHI(t, what, mustRequest(c.method, f.base+c.path), r)
			if !refused(r) {
				t.Errorf("%s: answered %d without credentials: %.200s", what, r.code, r.body)
			}
		}
	}
}
