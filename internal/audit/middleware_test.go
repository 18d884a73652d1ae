package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/sse"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var fixed = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

// app stands in for Tend's handlers: it authenticates like the API does
// (telling the audit trail who the caller is) and answers per path.
func app() http.Handler {
	mux := http.NewServeMux()
	json := func(w http.ResponseWriter, status int, body string) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	mux.HandleFunc("GET /fhir/Patient/{id}", func(w http.ResponseWriter, r *http.Request) {
		json(w, 200, `{"resourceType":"Patient","id":"`+r.PathValue("id")+`"}`)
	})
	mux.HandleFunc("GET /fhir/Observation", func(w http.ResponseWriter, r *http.Request) {
		json(w, 200, `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p7"}}},{"resource":{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/p8"}}}]}`)
	})
	mux.HandleFunc("GET /fhir/Observation/{id}", func(w http.ResponseWriter, r *http.Request) {
		json(w, 404, `{"resourceType":"OperationOutcome"}`)
	})
	mux.HandleFunc("POST /api/v1/alarms/{id}/ack", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"alarm":{"id":"a1","patient":"p3","state":"acknowledged"}}`)
	})
	mux.HandleFunc("POST /api/v1/alarms/{id}/resolve", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "forbidden", http.StatusForbidden)
	})
	mux.HandleFunc("GET /api/v1/patients/{id}/latest", func(w http.ResponseWriter, r *http.Request) {
		panicIfNoAgent(r)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"patient":"`+r.PathValue("id")+`","latest":[]}`)
	})
	mux.HandleFunc("POST /api/v1/auth/token", func(w http.ResponseWriter, r *http.Request) {
		audit.SetAgent(r.Context(), auth.Principal{Subject: "nurse1"})
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
	})
	mux.HandleFunc("POST /signout", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /patients/{id}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/signin?next=/patients/"+r.PathValue("id"), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.Header.Get("Authorization"); tok != "" {
			audit.SetAgent(r.Context(), auth.Principal{Subject: strings.TrimPrefix(tok, "Bearer "), Role: "nurse", Org: "north"})
		}
		mux.ServeHTTP(w, r)
	})
}

func panicIfNoAgent(*http.Request) {}

func TestWrapRecordsEachRequestOnce(t *testing.T) {
	s := openSQLite(t)
	log := audit.New(s, func() time.Time { return fixed })
	mw := &audit.Middleware{Log: log, Classify: audit.Classify,
		AlarmPatient: func(_ context.Context, id string) (string, error) { return "patient-of-" + id, nil }}
	srv := httptest.NewServer(mw.Wrap(app()))
	defer srv.Close()

	cases := []struct {
		method, path, token string
		status              int
		want                *audit.Record // nil: not audited
	}{
		{"GET", "/fhir/Patient/p1", "nurse1", 200, &audit.Record{Action: "read", Subtype: "read", Status: 200, Subject: "nurse1", Role: "nurse", Org: "north", Patients: []string{"p1"}, Entity: "Patient/p1"}},
		{"GET", "/fhir/Observation?code=8867-4", "nurse1", 200, &audit.Record{Action: "search", Subtype: "search-type", Status: 200, Subject: "nurse1", Role: "nurse", Org: "north", Patients: []string{"p7", "p8"}, Entity: "Observation", Query: "code=8867-4"}},
		{"GET", "/fhir/Observation/zz?patient=Patient/p2", "nurse1", 404, &audit.Record{Action: "failure", Subtype: "read", Outcome: 4, Status: 404, Subject: "nurse1", Role: "nurse", Org: "north", Patients: []string{"p2"}, Entity: "Observation/zz", Query: "patient=Patient/p2"}},
		{"POST", "/api/v1/alarms/a1/ack", "nurse1", 200, &audit.Record{Action: "update", Subtype: "ack", Status: 200, Subject: "nurse1", Role: "nurse", Org: "north", Patients: []string{"p3"}, Entity: "/api/v1/alarms/a1/ack"}},
		{"POST", "/api/v1/alarms/a2/resolve", "cg", 403, &audit.Record{Action: "denial", Subtype: "resolve", Outcome: 4, Status: 403, Subject: "cg", Role: "nurse", Org: "north", Patients: []string{"patient-of-a2"}, Entity: "/api/v1/alarms/a2/resolve"}},
		{"GET", "/api/v1/patients/p4/latest", "", 200, &audit.Record{Action: "read", Subtype: "read", Status: 200, Patients: []string{"p4"}, Entity: "/api/v1/patients/p4/latest"}},
		{"POST", "/api/v1/auth/token", "", 401, &audit.Record{Action: "login", Subtype: "login", Outcome: 4, Status: 401, Subject: "nurse1", Entity: "/api/v1/auth/token"}},
		{"GET", "/patients/p5", "", 303, &audit.Record{Action: "denial", Subtype: "read", Outcome: 4, Status: 401, Patients: []string{"p5"}, Entity: "/patients/p5"}},
		{"POST", "/signout", "nurse1", 303, &audit.Record{Action: "logout", Subtype: "logout", Status: 303, Subject: "nurse1", Role: "nurse", Org: "north", Entity: "/signout"}},
		{"GET", "/healthz", "", 200, nil},
		{"GET", "/fhir/metadata", "", 404, nil},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			before, _ := s.AuditHead(t.Context())
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := noRedirects.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			got, err := s.AuditEntries(t.Context(), store.AuditQuery{AfterSeq: before.Seq})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if len(got) != 0 {
					t.Fatalf("recorded %d, want none: %+v", len(got), got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("recorded %d, want exactly 1", len(got))
			}
			want := *tc.want
			want.Seq, want.Time, want.Source = before.Seq+1, fixed, "127.0.0.1"
			if diff := cmp.Diff(want, got[0], ignoreHashes); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
		})
	}
	if res, err := audit.Verify(t.Context(), s); err != nil || res.Problem != nil {
		t.Errorf("verify: %+v, %v", res, err)
	}
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

var ignoreHashes = cmp.FilterPath(func(p cmp.Path) bool {
	n := p.Last().String()
	return n == ".Hash" || n == ".PrevHash"
}, cmp.Ignore())

// failingStore refuses every append, as a full disk or a lost database would.
type failingStore struct{ store.AuditStore }

func (failingStore) AppendAudit(context.Context, func(store.AuditHead) (store.AuditEntry, error)) (store.AuditEntry, error) {
	return store.AuditEntry{}, errors.New("disk full")
}

func TestWrapFailsClosed(t *testing.T) {
	closed := openSQLite(t)
	closed.Close()
	for _, tc := range []struct {
		name string
		s    store.AuditStore
	}{{"closed store", closed}, {"refusing store", failingStore{}}} {
		t.Run(tc.name, func(t *testing.T) {
			ran := false
			h := audit.Wrap(audit.New(tc.s, nil), audit.Classify, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ran = true
				w.Header().Set("Location", "/fhir/Patient/secret-id")
				w.Header().Set("Content-Type", "application/fhir+json")
				w.WriteHeader(http.StatusOK)
				io.WriteString(w, `{"resourceType":"Patient","id":"secret-id","name":[{"family":"Doe"}]}`)
			}))
			for _, path := range []string{"/fhir/Patient/secret-id", "/api/v1/patients/secret-id/latest", "/patients/secret-id"} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				if !ran {
					t.Fatal("handler did not run")
				}
				if rec.Code != http.StatusInternalServerError {
					t.Errorf("%s: status %d, want 500", path, rec.Code)
				}
				if b := rec.Body.String(); strings.Contains(b, "Doe") || strings.Contains(b, "secret-id") || rec.Header().Get("Location") != "" {
					t.Errorf("%s: withheld answer leaked: %q %v", path, b, rec.Header())
				}
			}
		})
	}
}

func TestWrapStream(t *testing.T) {
	streamer := func(wrote chan<- error) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			out, err := sse.Start(w, "test", time.Second)
			if err == nil {
				out.Event("reading", 1, []byte(`{"patient":"p1","v":97}`))
				err = out.Flush()
			}
			wrote <- err
		})
	}
	t.Run("recorded before it starts", func(t *testing.T) {
		s := openSQLite(t)
		wrote := make(chan error, 1)
		srv := httptest.NewServer(audit.Wrap(audit.New(s, nil), audit.Classify, streamer(wrote)))
		defer srv.Close()
		resp, err := http.Get(srv.URL + "/api/v1/stream?patient=p1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := <-wrote; err != nil {
			t.Fatalf("stream write: %v", err)
		}
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"v":97`) {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		es, _ := s.AuditEntries(t.Context(), store.AuditQuery{})
		if len(es) != 1 || es[0].Subtype != "stream" || !slices.Equal(es[0].Patients, []string{"p1"}) {
			t.Errorf("records = %+v", es)
		}
	})
	t.Run("refused when the record fails", func(t *testing.T) {
		wrote := make(chan error, 1)
		srv := httptest.NewServer(audit.Wrap(audit.New(failingStore{}, nil), audit.Classify, streamer(wrote)))
		defer srv.Close()
		resp, err := http.Get(srv.URL + "/events/ward")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError || strings.Contains(string(body), "97") {
			t.Errorf("status %d body %q", resp.StatusCode, body)
		}
		if err := <-wrote; err == nil {
			t.Error("the stream's writes succeeded after its record failed")
		}
	})
}

func TestOutcomeCodes(t *testing.T) {
	s := openSQLite(t)
	for _, tc := range []struct {
		status  int
		action  string
		outcome int
	}{{200, "read", 0}, {201, "read", 0}, {304, "read", 0}, {400, "failure", 4}, {401, "denial", 4}, {403, "denial", 4}, {404, "failure", 4}, {500, "failure", 8}, {503, "failure", 8}} {
		h := audit.Wrap(audit.New(s, nil), audit.Classify, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
		}))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/fhir/Patient/p1", nil))
		head, _ := s.AuditHead(t.Context())
		e, err := s.AuditEntry(t.Context(), head.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if e.Status != tc.status || e.Action != tc.action || e.Outcome != tc.outcome {
			t.Errorf("status %d: recorded %s outcome %d, want %s %d", tc.status, e.Action, e.Outcome, tc.action, tc.outcome)
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		method, target string
		want           string // action/subtype/entity/patients, or "-" when not audited
	}{
		{"GET", "/fhir/metadata", "-"},
		{"GET", "/fhir/Patient/p1", "read/read/Patient/p1/[p1]"},
		{"GET", "/fhir/Patient/p1/_history/2", "read/vread/Patient/p1/_history/2/[p1]"},
		{"GET", "/fhir/Patient/p1/_history", "read/history/Patient/p1/_history/[p1]"},
		{"GET", "/fhir/Consent?patient=p2", "search/search-type/Consent/[p2]"},
		{"GET", "/fhir/CareTeam?participant=doc", "search/search-type/CareTeam/[]"},
		{"PUT", "/fhir/Patient/p1", "update/update/Patient/p1/[p1]"},
		{"GET", "/fhir/Patient?identifier=x|1", "search/search-type/Patient/[]"},
		{"GET", "/fhir/Patient?_id=p5", "search/search-type/Patient/[p5]"},
		{"GET", "/fhir/Patient/p1/$everything", "export/operation/Patient/p1/$everything/[p1]"},
		{"GET", "/fhir/$export?_type=Patient", "export/operation/$export/[]"},
		{"GET", "/fhir/Patient/$export", "export/operation/Patient/$export/[]"},
		{"GET", "/fhir/$export-poll-status/j1", "export/operation/$export-poll-status/j1/[]"},
		{"DELETE", "/fhir/$export-poll-status/j1", "export/operation/$export-poll-status/j1/[]"},
		{"GET", "/fhir/$export-file/j1/Patient-0001.ndjson", "export/operation/$export-file/j1/Patient-0001.ndjson/[]"},
		{"GET", "/fhir/Observation?patient=p1,Patient/p2", "search/search-type/Observation/[p1 p2]"},
		{"GET", "/fhir/Observation/$lastn?subject=Patient/p3", "search/operation/Observation/$lastn/[p3]"},
		{"POST", "/fhir/Observation", "create/create/Observation/[]"},
		{"POST", "/fhir", "create/transaction//[]"},
		{"GET", "/fhir/AuditEvent?patient=p9", "search/search-type/AuditEvent/[p9]"},
		{"GET", "/api/v1/patients/p1/latest", "read/read//api/v1/patients/p1/latest/[p1]"},
		{"PUT", "/api/v1/patients/p1/rules", "update/update//api/v1/patients/p1/rules/[p1]"},
		{"GET", "/api/v1/alarms?patient=p1", "search/search//api/v1/alarms/[p1]"},
		{"POST", "/api/v1/alarms/a1/ack", "update/ack//api/v1/alarms/a1/ack/[]"},
		{"POST", "/api/v1/alarms/a1/escalate", "update/escalate//api/v1/alarms/a1/escalate/[]"},
		{"GET", "/api/v1/stream", "read/stream//api/v1/stream/[]"},
		{"POST", "/api/v1/auth/token", "login/login//api/v1/auth/token/[]"},
		{"GET", "/api/v1/deadletters", "search/search//api/v1/deadletters/[]"},
		{"POST", "/api/v1/devices/d1/obs", "-"},
		{"POST", "/api/v1/tokens", "create/create//api/v1/tokens/[]"},
		{"POST", "/api/v1/auth/logout", "logout/logout//api/v1/auth/logout/[]"},
		{"POST", "/api/v1/break-glass", "create/create//api/v1/break-glass/[]"},
		{"GET", "/api/v1/break-glass", "search/search//api/v1/break-glass/[]"},
		{"GET", "/api/v1/consents?patient=p4", "search/search//api/v1/consents/[p4]"},
		{"POST", "/api/v1/consents/c1/revoke", "update/revoke//api/v1/consents/c1/revoke/[]"},
		{"PUT", "/api/v1/care-teams/t1/patients/p6", "update/update//api/v1/care-teams/t1/patients/p6/[p6]"},
		{"DELETE", "/api/v1/care-teams/t1/members/u1", "delete/delete//api/v1/care-teams/t1/members/u1/[]"},
		{"DELETE", "/api/v1/clients/c1", "delete/delete//api/v1/clients/c1/[]"},
		{"PUT", "/api/v1/users/u1/contact", "update/update//api/v1/users/u1/contact/[]"},
		{"POST", "/api/v1/orgs", "create/create//api/v1/orgs/[]"},
		{"POST", "/api/v1/devices/d1/credentials", "update/credentials//api/v1/devices/d1/credentials/[]"},
		{"GET", "/fhir/.well-known/smart-configuration", "-"},
		{"POST", "/break-glass", "create/break-glass//break-glass/[]"},
		{"GET", "/admin/users", "search/admin-users//admin/users/[]"},
		{"POST", "/signout", "logout/logout//signout/[]"},
		{"GET", "/healthz", "-"},
		{"GET", "/", "search/ward///[]"},
		{"GET", "/patients/p1/series?code=x", "read/read//patients/p1/series/[p1]"},
		{"POST", "/alarms/a1/ack", "update/ack//alarms/a1/ack/[]"},
		{"POST", "/alarms/a1/escalate", "update/escalate//alarms/a1/escalate/[]"},
		{"GET", "/events/alarms", "read/stream//events/alarms/[]"},
		{"POST", "/signin", "login/login//signin/[]"},
		{"GET", "/signin", "-"},
		{"POST", "/auth/token", "login/login//auth/token/[]"},
		{"GET", "/assets/app.js", "-"},
	}
	for _, tc := range cases {
		c, ok := audit.Classify(httptest.NewRequest(tc.method, tc.target, nil))
		got := "-"
		if ok {
			got = fmt.Sprintf("%s/%s/%s/%v", c.Action, c.Subtype, c.Entity, c.Patients)
		}
		if got != tc.want {
			t.Errorf("%s %s = %s, want %s", tc.method, tc.target, got, tc.want)
		}
	}
}

func TestPatientsInJSON(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"patient", `{"resourceType":"Patient","id":"p1"}`, []string{"p1"}},
		{"bundle", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","subject":{"reference":"Patient/p2"}}},{"resource":{"resourceType":"Device","patient":{"reference":"Patient/p3"}}}]}`, []string{"p2", "p3"}},
		{"alarm list", `{"alarms":[{"id":"a","patient":"p4"},{"id":"b","patient":"p4"}]}`, []string{"p4"}},
		{"group subject ignored", `{"resourceType":"Observation","subject":{"reference":"Group/g1"}}`, nil},
		{"care team's contained group", `{"resourceType":"CareTeam","contained":[{"resourceType":"Group","member":[{"entity":{"reference":"Patient/p6"}},{"entity":{"reference":"Patient/p5"}}]}],"subject":{"reference":"#patients"}}`, []string{"p5", "p6"}},
		{"an AuditEvent entity list is not a reference", `{"resourceType":"AuditEvent","entity":[{"what":{"reference":"Patient/p7"}}]}`, nil},
		{"not json", `<html>`, nil},
	}
	for _, tc := range cases {
		got := audit.PatientsInJSON([]byte(tc.body))
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzPatientsInJSON(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p1"}}]}`))
	f.Add([]byte(`{"alarm":{"patient":"p1"}}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[{"patient":"deep"}]]]]]]]]]]]]]]]]]]]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := audit.PatientsInJSON(b)
		if len(got) > 1000 {
			t.Fatalf("%d patients", len(got))
		}
		for _, p := range got {
			if p == "" {
				t.Fatal("empty patient id")
			}
		}
	})
}
