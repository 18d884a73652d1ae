package api

import (
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
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/fhir"
	"github.com/tendhealth/tend/internal/store"
)

// surface is the access matrix served as a node serves it: behind the
// audit middleware, with the FHIR AuditEvent endpoint, and with SMART
// scoped tokens beside the role tokens.
type surface struct {
	*matrix
	srv *httptest.Server
	exp *fhir.Exporter
	cs  struct {
		Rest []struct {
			Resource []struct {
				Type             string
				SearchParam      []struct{ Name string }
				SearchInclude    []string
				SearchRevInclude []string
			}
		}
	}
}

// smartTokens are SMART Backend Services tokens of each organisation's
// integration client: the scopes narrow the role, never widen it.
var smartTokens = map[string][]string{
	"smart-obs": {"system/Observation.rs"},
	"smart-all": {"system/*.rs"},
}

func newSurface(t *testing.T) *surface {
	m := newMatrix(t)
	s := &surface{matrix: m}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s.exp = fhir.NewExporter(fhir.ExportConfig{Store: m.st, Access: access.New(m.st, m.clock), Now: m.clock, Logger: log})
	fh := fhir.NewHandler(fhir.Config{Store: m.st, Now: m.clock, Logger: log, Access: access.New(m.st, m.clock), Export: s.exp})
	h := New(Config{Store: m.st, FHIR: fh, Ready: func() error { return nil }, Now: m.clock, Logger: log,
		AuditEvents: fhir.NewAuditEventHandler(fhir.AuditEventConfig{Store: m.st, Now: m.clock, Logger: log})})
	mw := &audit.Middleware{Log: audit.New(m.st, m.clock), Classify: audit.Classify, Logger: log}
	s.srv = httptest.NewServer(mw.Wrap(h))
	t.Cleanup(s.srv.Close)
	for _, org := range matrixOrgs {
		for name, scopes := range smartTokens {
			if err := m.st.PutToken(context.Background(), store.Token{Hash: auth.HashSecret(smartToken(org, name)), Role: store.RoleIntegration,
				Subject: "client-" + org, Client: "client-" + org, Org: org, Created: m.clock(), Expires: m.clock().Add(time.Hour), Scopes: scopes}); err != nil {
				t.Fatal(err)
			}
		}
	}
	code, b := s.get(t, "/fhir/metadata", mToken("north", store.RoleAdmin))
	if code != 200 || json.Unmarshal(b, &s.cs) != nil || len(s.cs.Rest) == 0 {
		t.Fatalf("CapabilityStatement: %d %s", code, b)
	}
	return s
}

func smartToken(org, name string) string {
	return "tok-" + org + "-" + name + "-xxxxxxxxxxxxxxxxxxxxxxxx"
}

func (s *surface) get(t *testing.T, path, token string) (int, []byte) {
	t.Helper()
	code, _, b := s.getH(t, path, token, nil)
	return code, b
}

func (s *surface) getH(t *testing.T, path, token string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	if !strings.HasPrefix(path, "http") { // manifests name absolute URLs
		path = s.srv.URL + path
	}
	req, err := http.NewRequest("GET", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// audited is get, checking that a PHI request left exactly one audit
// record naming the patients of its path and query and the status.
func (s *surface) audited(t *testing.T, path, token string) (int, []byte) {
	t.Helper()
	ctx := context.Background()
	before, err := s.st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	code, b := s.get(t, path, token)
	got, err := s.st.AuditEntries(ctx, store.AuditQuery{AfterSeq: before.Seq})
	if err != nil {
		t.Fatal(err)
	}
	class, phi := audit.Classify(httptest.NewRequest("GET", path, nil))
	switch {
	case !phi && len(got) != 0:
		t.Errorf("GET %s: %d audit records for a request without PHI", path, len(got))
	case phi && len(got) != 1:
		t.Errorf("GET %s (%d): %d audit records, want exactly one: %+v", path, code, len(got), got)
	case phi:
		if got[0].Status != code {
			t.Errorf("GET %s: audit record status %d, answer %d", path, got[0].Status, code)
		}
		for _, p := range class.Patients {
			if !slices.Contains(got[0].Patients, p) {
				t.Errorf("GET %s: audit record names %v, not %s", path, got[0].Patients, p)
			}
		}
	}
	return code, b
}

// total is a searchset's total, or -1 when the answer is not one.
func total(b []byte) int {
	var bun struct {
		ResourceType string
		Total        *int
	}
	if json.Unmarshal(b, &bun) != nil || bun.ResourceType != "Bundle" || bun.Total == nil {
		return -1
	}
	return *bun.Total
}

// searchValue is a value of a search parameter that matches the seeded
// data of patient p of org.
func searchValue(name, org, p string) string {
	switch name {
	case "patient":
		return mPatient(org, p)
	case "subject":
		return "Patient/" + mPatient(org, p)
	case "identifier":
		return "urn:mrn|" + mMRN(org, p)
	case "code":
		return "http://loinc.org|59408-5"
	case "category":
		return "vital-signs"
	case "status":
		return "final"
	case "device":
		return mDevice(org, p)
	case "date":
		return "ge2000-01-01"
	case "_sort":
		return "-date"
	case "_elements":
		return "code,subject"
	case "_summary":
		return "count"
	case "_count":
		return "5"
	case "_offset":
		return "0"
	}
	return ""
}

// TestAccessMatrixSurface extends TestAccessMatrix to the rest of the FHIR
// surface: every search parameter the CapabilityStatement lists (alone
// and with the patient), every _include and _revinclude, vread, the audit
// trail (AuditEvent) and SMART-scoped tokens of each organisation. A
// hidden patient is indistinguishable from one that does not exist (same
// status, same total: counts leak nothing), no byte of theirs appears,
// and every PHI request leaves exactly one audit record.
func TestAccessMatrixSurface(t *testing.T) {
	s := newSurface(t)
	for _, pr := range principalsOf() {
		org, _, _ := strings.Cut(pr.name, "/")
		t.Run(pr.name, func(t *testing.T) {
			visible := map[string]bool{}
			for _, p := range pr.visible {
				visible[mPatient(org, p)] = true
			}
			var hidden []string
			for _, o := range matrixOrgs {
				for _, p := range matrixPatients {
					if !visible[mPatient(o, p)] {
						hidden = append(hidden, s.markers(o, p)...)
					}
				}
			}
			leaks := func(what string, b []byte) {
				t.Helper()
				body := phiBody(t, b)
				for _, h := range hidden {
					if strings.Contains(body, h) {
						t.Errorf("%s: carries %q of a patient %s may not see: %.300s", what, h, pr.name, body)
					}
				}
			}
			if pr.name == org+"/"+string(store.RoleAuditor) {
				code, b := s.audited(t, "/fhir/Observation?patient="+mPatient(org, "a"), pr.token)
				if code != http.StatusForbidden {
					t.Errorf("auditor searched observations: %d", code)
				}
				leaks("auditor observation search", b)
				return
			}
			patientsAllowed := !slices.Equal(pr.scopes, smartTokens["smart-obs"])
			for _, res := range s.cs.Rest[0].Resource {
				if res.Type != "Patient" && res.Type != "Observation" {
					continue
				}
				for _, o := range matrixOrgs {
					for _, p := range matrixPatients {
						id := mPatient(o, p)
						// The same search for a patient that does not exist:
						// a hidden patient must be answered exactly alike.
						for _, sp := range res.SearchParam {
							v := searchValue(sp.Name, o, p)
							if sp.Name == "_id" && res.Type == "Observation" {
								v = s.obs[id][0]
							}
							if v == "" {
								continue
							}
							q := url.Values{sp.Name: {v}}
							if res.Type == "Observation" && sp.Name != "patient" && sp.Name != "subject" && sp.Name != "_id" {
								q.Set("patient", id)
							}
							path := "/fhir/" + res.Type + "?" + q.Encode()
							code, b := s.audited(t, path, pr.token)
							what := fmt.Sprintf("GET %s", path)
							leaks(what, b)
							if res.Type == "Patient" && !patientsAllowed {
								if code != http.StatusForbidden {
									t.Errorf("%s: %d, want 403 for a token without Patient scope", what, code)
								}
								continue
							}
							if visible[id] {
								if code != 200 {
									t.Errorf("%s: %d for a visible patient: %.200s", what, code, b)
								}
								continue
							}
							ghost := strings.ReplaceAll(strings.ReplaceAll(path, id, "pt-nobody"), url.QueryEscape(mMRN(o, p)), "MRN-nobody")
							ghost = strings.ReplaceAll(ghost, mDevice(o, p), "dev-nobody")
							gcode, gb := s.get(t, ghost, pr.token)
							if code != gcode || total(b) != total(gb) || (total(b) > 0 && sp.Name != "_count" && sp.Name != "_offset" && sp.Name != "_sort" && sp.Name != "_summary" && sp.Name != "_elements") {
								t.Errorf("%s: %d total %d; for a patient that does not exist %d total %d", what, code, total(b), gcode, total(gb))
							}
						}
						if res.Type == "Observation" {
							for _, inc := range res.SearchInclude {
								path := "/fhir/Observation?patient=" + id + "&_include=" + url.QueryEscape(inc)
								_, b := s.audited(t, path, pr.token)
								leaks("GET "+path, b)
							}
						}
						for _, inc := range res.SearchRevInclude {
							path := "/fhir/" + res.Type + "?_id=" + id + "&_revinclude=" + url.QueryEscape(inc)
							_, b := s.audited(t, path, pr.token)
							leaks("GET "+path, b)
						}
					}
				}
			}
			for _, o := range matrixOrgs {
				for _, p := range matrixPatients {
					id := mPatient(o, p)
					want := http.StatusNotFound
					if visible[id] {
						want = http.StatusOK
					}
					for _, path := range []string{"/fhir/Patient/" + id + "/_history/1", "/fhir/Device/" + mDevice(o, p) + "/_history/1"} {
						code, b := s.audited(t, path, pr.token)
						leaks("vread "+path, b)
						w := want
						if strings.HasPrefix(path, "/fhir/Patient/") && !patientsAllowed || strings.HasPrefix(path, "/fhir/Device/") && pr.scopes != nil && !slices.Contains(pr.scopes, "system/*.rs") {
							w = http.StatusForbidden
						}
						if code != w {
							t.Errorf("vread %s: %d, want %d", path, code, w)
						}
					}
					// The audit trail is not the clinical roles'; an admin
					// reads only its own organisation's records.
					code, b := s.audited(t, "/fhir/AuditEvent?patient="+id, pr.token)
					if pr.name != org+"/admin" {
						leaks("AuditEvent of "+id, b)
						if code != http.StatusForbidden {
							t.Errorf("AuditEvent of %s: %d, want 403", id, code)
						}
					} else if n := foreignRecords(t, b, org); n > 0 {
						t.Errorf("AuditEvent of %s: %d records of other organisations' users", id, n)
					}
				}
			}
		})
	}

	t.Run("$export", func(t *testing.T) { s.exportMatrix(t, principalsOf()) })

	// Auditors and admins read their own organisation's trail, which by
	// now holds the walk above, and nothing of the other's.
	for _, org := range matrixOrgs {
		for _, role := range []store.Role{store.RoleAuditor, store.RoleAdmin} {
			t.Run("audit trail/"+org+"/"+string(role), func(t *testing.T) {
				paths := []string{"/fhir/AuditEvent?_count=1000"}
				for _, o := range matrixOrgs {
					paths = append(paths, "/fhir/AuditEvent?_count=1000&patient="+mPatient(o, "a"))
				}
				own := 0
				for _, path := range paths {
					code, b := s.audited(t, path, mToken(org, role))
					if code != 200 {
						t.Fatalf("%s: %d %s", path, code, b)
					}
					if n := foreignRecords(t, b, org); n > 0 {
						t.Errorf("%s as %s of %s: %d records of the other organisation's users", path, role, org, n)
					}
					var bun struct{ Entry []json.RawMessage }
					json.Unmarshal(b, &bun)
					own += len(bun.Entry)
				}
				if own == 0 {
					t.Errorf("the %s of %s sees no audit record of its own organisation", role, org)
				}
				// Reading a record of the other organisation by id.
				es, err := s.st.AuditEntries(context.Background(), store.AuditQuery{Subject: foreignOrg(org) + "-admin"})
				if err != nil || len(es) == 0 {
					t.Fatalf("no records of the other organisation: %v", err)
				}
				code, b := s.get(t, fmt.Sprintf("/fhir/AuditEvent/%d", es[0].Seq), mToken(org, role))
				if code != http.StatusNotFound {
					t.Errorf("AuditEvent/%d of the other organisation: %d %.200s", es[0].Seq, code, b)
				}
			})
		}
	}
}

// principal is a token of the matrix and the patients of its
// organisation it may see.
type principal struct {
	name, token string
	visible     []string
	scopes      []string
}

func principalsOf() []principal {
	var out []principal
	for _, org := range matrixOrgs {
		for _, role := range store.Roles {
			out = append(out, principal{org + "/" + string(role), mToken(org, role), matrixVisible[role], nil})
		}
		for _, name := range []string{"smart-obs", "smart-all"} {
			out = append(out, principal{org + "/" + name, smartToken(org, name), matrixPatients, smartTokens[name]})
		}
	}
	return out
}

// exportMatrix runs a Bulk Data export (system and patient level) as
// every principal: the files carry exactly the patients it may see, and
// nobody else can read the job or its files.
func (s *surface) exportMatrix(t *testing.T, principals []principal) {
	async := map[string]string{"Prefer": "respond-async", "Accept": "application/fhir+json"}
	ran := 0
	defer func() { t.Logf("%d exports run and checked", ran) }()
	for _, pr := range principals {
		org, role, _ := strings.Cut(pr.name, "/")
		other := mToken(foreignOrg(org), store.RoleAdmin)
		for _, kick := range []string{"/fhir/$export", "/fhir/Patient/$export"} {
			code, hdr, b := s.getH(t, kick, pr.token, async)
			if code == http.StatusForbidden || code == http.StatusUnauthorized {
				if role == string(store.RoleAdmin) || role == string(store.RoleIntegration) || role == "smart-all" {
					t.Errorf("%s %s: %d %.200s", pr.name, kick, code, b)
				}
				continue
			}
			if role == string(store.RoleAuditor) {
				t.Errorf("%s %s: %d, want 403: the audit role reads no patient data", pr.name, kick, code)
			}
			if code != http.StatusAccepted || hdr.Get("Content-Location") == "" {
				t.Errorf("%s %s: %d %.200s", pr.name, kick, code, b)
				continue
			}
			status := hdr.Get("Content-Location")
			for {
				ran, err := s.exp.RunOnce(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if !ran {
					break
				}
			}
			if c, _, _ := s.getH(t, status, other, nil); c != http.StatusNotFound {
				t.Errorf("%s's export status read by the other organisation's admin: %d", pr.name, c)
			}
			code, _, b = s.getH(t, status, pr.token, nil)
			var man fhir.Manifest
			if code != 200 || json.Unmarshal(b, &man) != nil {
				t.Errorf("%s %s status: %d %.200s", pr.name, kick, code, b)
				continue
			}
			ran++
			var all strings.Builder
			patients := map[string]bool{}
			for _, out := range man.Output {
				c, _, body := s.getH(t, out.URL, pr.token, nil)
				if c != 200 {
					t.Errorf("%s: file %s: %d", pr.name, out.URL, c)
				}
				if c, _, _ := s.getH(t, out.URL, other, nil); c != http.StatusNotFound {
					t.Errorf("%s's export file read by the other organisation's admin: %d", pr.name, c)
				}
				all.Write(body)
				if out.Type == "Patient" {
					for line := range strings.SplitSeq(strings.TrimSpace(string(body)), "\n") {
						var res struct{ ID string }
						if json.Unmarshal([]byte(line), &res) == nil {
							patients[res.ID] = true
						}
					}
				}
			}
			var hidden, want []string
			for _, o := range matrixOrgs {
				for _, p := range matrixPatients {
					if o == org && slices.Contains(pr.visible, p) {
						want = append(want, mPatient(o, p))
					} else {
						hidden = append(hidden, s.markers(o, p)...)
					}
				}
			}
			for _, h := range hidden {
				if strings.Contains(all.String(), h) {
					t.Errorf("%s %s: the export carries %q of a patient it may not see", pr.name, kick, h)
					break
				}
			}
			if pr.scopes == nil || slices.Contains(pr.scopes, "system/*.rs") {
				for _, id := range want {
					if !patients[id] {
						t.Errorf("%s %s: visible patient %s missing from the export", pr.name, kick, id)
					}
				}
			}
		}
	}
}

func foreignOrg(org string) string {
	for _, o := range matrixOrgs {
		if o != org {
			return o
		}
	}
	return ""
}

// foreignRecords counts the AuditEvents of a searchset whose agent is
// not of org (a record without an organisation counts as foreign: it may
// be anyone's).
func foreignRecords(t *testing.T, b []byte, org string) int {
	t.Helper()
	var bun struct {
		Entry []struct {
			Resource struct {
				Agent []struct {
					Extension []struct{ URL, ValueString string }
				}
			}
		}
	}
	if err := json.Unmarshal(b, &bun); err != nil {
		t.Fatalf("not an AuditEvent searchset: %.200s", b)
	}
	n := 0
	for _, e := range bun.Entry {
		own := false
		for _, a := range e.Resource.Agent {
			for _, x := range a.Extension {
				own = own || x.URL == "urn:tend:audit:org" && x.ValueString == org
			}
		}
		if !own {
			n++
		}
	}
	return n
}
