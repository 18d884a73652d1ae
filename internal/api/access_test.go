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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/fhir"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

// The access matrix: two organisations, each with five patients
//
//	a, b  in care team "ward" (clinician and nurse are members); b is the patient user
//	c     consented (read+alarms) to the caregiver
//	d     opened by the clinician through break-glass
//	e     nobody's but the organisation's admin and integration systems
//
// and a token of every role. Every role walks every PHI endpoint for every
// patient of both organisations; the patients it may not see must be
// indistinguishable from patients that do not exist, and not one byte of
// their ids, names, identifiers, devices or observations may appear.
var (
	matrixOrgs     = []string{"north", "south"}
	matrixPatients = []string{"a", "b", "c", "d", "e"}
	matrixVisible  = map[store.Role][]string{
		store.RoleAdmin:       {"a", "b", "c", "d", "e"},
		store.RoleIntegration: {"a", "b", "c", "d", "e"},
		store.RoleClinician:   {"a", "b", "d"},
		store.RoleNurse:       {"a", "b"},
		store.RoleCaregiver:   {"c"},
		store.RolePatient:     {"b"},
		store.RoleAuditor:     nil,
	}
)

func mPatient(org, p string) string { return "pt-" + org + "-" + p }
func mDevice(org, p string) string  { return "dev-" + org + "-" + p }
func mFamily(org, p string) string  { return "Fam" + org + strings.ToUpper(p) }
func mMRN(org, p string) string     { return "MRN-" + org + "-" + p }
func mToken(org string, r store.Role) string {
	return "tok-" + org + "-" + string(r) + "-xxxxxxxxxxxxxxxxxxxxxxxx"
}

type matrix struct {
	srv   *httptest.Server
	st    store.Store
	hub   *live.Hub
	obs   map[string][]string // patient id -> its observation ids
	alarm map[string]string   // patient id -> its alarm id

	mu  sync.Mutex
	now time.Time
}

func (m *matrix) clock() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

func (m *matrix) advance(d time.Duration) {
	m.mu.Lock()
	m.now = m.now.Add(d)
	m.mu.Unlock()
}

func newMatrix(t *testing.T) *matrix {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	m := &matrix{obs: map[string][]string{}, alarm: map[string]string{}, now: now, hub: &live.Hub{}}
	clock := m.clock
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := alarmdb.Open(filepath.Join(t.TempDir(), "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	profiles := &alarm.Profiles{Store: db, Now: clock}
	svc := alarm.NewService(alarm.Config{Store: db, Escalation: profiles.Escalation, Now: clock})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fh := fhir.NewHandler(fhir.Config{Store: st, Now: clock, Logger: log, Access: access.New(st, clock)})
	h := New(Config{Store: st, FHIR: fh, Ready: func() error { return nil }, Now: clock, Logger: log,
		Alarms: svc, AlarmStore: db, Profiles: profiles, Live: m.hub})
	m.srv, m.st = httptest.NewServer(h), st
	t.Cleanup(m.srv.Close)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, org := range matrixOrgs {
		must(st.CreateOrg(ctx, store.Organisation{ID: org, Name: org}))
		for _, role := range store.Roles {
			user := org + "-" + string(role)
			u := store.User{ID: user, Name: user, Role: role, Org: org, PasswordHash: "x"}
			if role == store.RolePatient {
				u.Patient = mPatient(org, "b")
			}
			must(st.CreateUser(ctx, u))
			must(st.PutToken(ctx, store.Token{Hash: auth.HashSecret(mToken(org, role)), Role: role, Subject: user, Org: org}))
		}
		for i, p := range matrixPatients {
			id := mPatient(org, p)
			res := fmt.Sprintf(`{"resourceType":"Patient","id":%q,"identifier":[{"system":"urn:mrn","value":%q}],"name":[{"family":%q}]}`, id, mMRN(org, p), mFamily(org, p))
			must(st.CreatePatient(ctx, &store.Patient{ID: id, Org: org, Identifiers: []store.Identifier{{System: "urn:mrn", Value: mMRN(org, p)}}, Resource: []byte(res)}))
			dev := mDevice(org, p)
			must(st.CreateDevice(ctx, &store.Device{ID: dev, Org: org, Patient: id, Resource: []byte(`{"resourceType":"Device","id":"` + dev + `"}`)}, now.Add(-time.Hour)))
			var rs []reading.Reading
			for k, code := range []string{"59408-5", "8867-4"} {
				rs = append(rs, reading.Reading{Patient: id, Device: dev, Code: code, Value: float64(90 + i + k), HasValue: true, Unit: "%",
					Time: now.Add(-time.Duration(10+i) * time.Minute), Received: now, Source: "test"})
			}
			_, err := st.Append(ctx, rs)
			must(err)
			ss, err := st.Samples(ctx, store.Query{Patient: id})
			must(err)
			for _, s := range ss {
				m.obs[id] = append(m.obs[id], s.ID)
			}
			ev := rules.Event{Type: rules.Start, Patient: id, Rule: "low-spo2", Name: "Low SpO2", Kind: rules.KindThreshold,
				Category: rules.CategoryClinical, Priority: rules.PriorityHigh, Code: "59408-5", Value: 85, Unit: "%", Time: now.Add(-time.Duration(i) * time.Second), Message: "low"}
			must(svc.Apply(ctx, alarm.Checkpoint{}, []rules.Event{ev}))
			as, err := db.Alarms(ctx, alarm.Filter{Patient: id})
			must(err)
			m.alarm[id] = as[0].ID
		}
	}
	// Care teams, consents and break-glass through the management API.
	for _, org := range matrixOrgs {
		admin, clin := mToken(org, store.RoleAdmin), mToken(org, store.RoleClinician)
		m.mustDo(t, "POST", "/api/v1/care-teams", admin, `{"id":"ward-`+org+`","name":"Ward"}`, 201)
		for _, u := range []store.Role{store.RoleClinician, store.RoleNurse} {
			m.mustDo(t, "PUT", "/api/v1/care-teams/ward-"+org+"/members/"+org+"-"+string(u), admin, "", 200)
		}
		for _, p := range []string{"a", "b"} {
			m.mustDo(t, "PUT", "/api/v1/care-teams/ward-"+org+"/patients/"+mPatient(org, p), admin, "", 200)
		}
		m.mustDo(t, "POST", "/api/v1/consents", admin, `{"patient":"`+mPatient(org, "c")+`","grantee":"`+org+`-caregiver","scope":"read+alarms"}`, 201)
		m.mustDo(t, "POST", "/api/v1/break-glass", clin, `{"patient":"`+mPatient(org, "d")+`","reason":"cardiac arrest on the corridor"}`, 201)
	}
	return m
}

// clinicalAlarms counts the alarms of a listing other than the
// break-glass notices the matrix's grants raised.
func clinicalAlarms(b []byte) int {
	var list struct{ Alarms []alarm.Alarm }
	json.Unmarshal(b, &list)
	n := 0
	for _, a := range list.Alarms {
		if a.Rule != alarm.RuleBreakGlass {
			n++
		}
	}
	return n
}

func (m *matrix) do(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, m.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (m *matrix) mustDo(t *testing.T, method, path, token, body string, want int) []byte {
	t.Helper()
	code, b := m.do(t, method, path, token, body)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	return b
}

// markers are the strings that identify a patient anywhere in a response.
func (m *matrix) markers(org, p string) []string {
	id := mPatient(org, p)
	return append([]string{id, mFamily(org, p), mMRN(org, p), mDevice(org, p), m.alarm[id]}, m.obs[id]...)
}

// phiBody is the part of a response that carries data: a searchset's
// entries and total (its links echo the query, which names what was asked).
func phiBody(t *testing.T, b []byte) string {
	var doc map[string]json.RawMessage
	if json.Unmarshal(b, &doc) != nil || string(doc["resourceType"]) != `"Bundle"` {
		return string(b)
	}
	return string(doc["entry"]) + string(doc["total"])
}

func bundleTotal(t *testing.T, b []byte) int {
	t.Helper()
	var bun struct {
		Total *int `json:"total"`
		Entry []struct {
			Search struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bun); err != nil || bun.Total == nil {
		t.Fatalf("not a searchset with a total: %s", b)
	}
	return *bun.Total
}

func TestAccessMatrix(t *testing.T) {
	m := newMatrix(t)
	for _, org := range matrixOrgs {
		for _, role := range store.Roles {
			t.Run(org+"/"+string(role), func(t *testing.T) {
				tok := mToken(org, role)
				visible := map[string]bool{}
				for _, p := range matrixVisible[role] {
					visible[mPatient(org, p)] = true
				}
				var hidden []string
				for _, o := range matrixOrgs {
					for _, p := range matrixPatients {
						if !visible[mPatient(o, p)] {
							hidden = append(hidden, m.markers(o, p)...)
						}
					}
				}
				// check asserts the status and that no hidden patient leaks.
				check := func(what string, code int, b []byte, want int) {
					t.Helper()
					if code != want {
						t.Errorf("%s: status %d, want %d: %.300s", what, code, want, b)
					}
					body := phiBody(t, b)
					for _, h := range hidden {
						if strings.Contains(body, h) {
							t.Errorf("%s: response carries %q of a patient this %s may not see: %.300s", what, h, role, body)
						}
					}
				}
				get := func(path string) (int, []byte) { return m.do(t, "GET", path, tok, "") }
				if role == store.RoleAuditor {
					for _, path := range []string{"/fhir/Patient", "/api/v1/alarms", "/api/v1/patients/" + mPatient(org, "a") + "/latest"} {
						code, b := get(path)
						check(path, code, b, http.StatusForbidden)
					}
					return
				}
				ok := func(id string) int {
					if visible[id] {
						return http.StatusOK
					}
					return http.StatusNotFound
				}
				var allObs []string
				for _, o := range matrixOrgs {
					for _, p := range matrixPatients {
						allObs = append(allObs, m.obs[mPatient(o, p)]...)
					}
				}
				for _, o := range matrixOrgs {
					for _, p := range matrixPatients {
						id := mPatient(o, p)
						n := 0
						if visible[id] {
							n = 1
						}
						code, b := get("/fhir/Patient/" + id)
						check("read "+id, code, b, ok(id))
						code, b = get("/fhir/Patient?identifier=" + url.QueryEscape("urn:mrn|"+mMRN(o, p)))
						check("search by identifier "+id, code, b, 200)
						if got := bundleTotal(t, b); got != n {
							t.Errorf("identifier search for %s: total %d, want %d", id, got, n)
						}
						code, b = get("/fhir/Observation?patient=" + id)
						check("observations of "+id, code, b, 200)
						if got := bundleTotal(t, b); got != 2*n {
							t.Errorf("observations of %s: total %d, want %d", id, got, 2*n)
						}
						code, b = get("/fhir/Observation?patient=" + id + "&code=" + url.QueryEscape("http://loinc.org|59408-5") + "&_include=Observation:device")
						check("spo2 of "+id, code, b, 200)
						if got := bundleTotal(t, b); got != n {
							t.Errorf("spo2 of %s: total %d, want %d", id, got, n)
						}
						if n == 1 && !strings.Contains(string(b), `"include"`) {
							t.Errorf("spo2 of %s: the device was not included: %s", id, b)
						}
						code, b = get("/fhir/Observation/$lastn?patient=" + id)
						check("lastn of "+id, code, b, 200)
						if got := bundleTotal(t, b); got != 2*n {
							t.Errorf("lastn of %s: total %d, want %d", id, got, 2*n)
						}
						code, b = get("/fhir/Patient/" + id + "/$everything")
						check("everything of "+id, code, b, ok(id))
						code, b = get("/fhir/Device/" + mDevice(o, p))
						check("device of "+id, code, b, ok(id))
						code, b = get("/fhir/Observation/" + m.obs[id][0])
						check("observation of "+id, code, b, ok(id))
						code, b = get("/api/v1/patients/" + id + "/latest")
						check("latest of "+id, code, b, ok(id))
						code, b = get("/api/v1/alarms?patient=" + id)
						check("alarms of "+id, code, b, 200)
						if got := clinicalAlarms(b); got != n {
							t.Errorf("alarms of %s: %d alarms, want %d", id, got, n)
						}
						code, b = get("/api/v1/alarms/" + m.alarm[id])
						check("alarm of "+id, code, b, ok(id))
					}
				}
				code, b := get("/fhir/Patient")
				check("patient search", code, b, 200)
				if got := bundleTotal(t, b); got != len(visible) {
					t.Errorf("patient search: total %d, want %d", got, len(visible))
				}
				code, b = get("/fhir/Observation?_id=" + strings.Join(allObs, ","))
				check("observations by _id", code, b, 200)
				if got := bundleTotal(t, b); got != 2*len(visible) {
					t.Errorf("observations by _id: total %d, want %d", got, 2*len(visible))
				}
				code, b = get("/api/v1/alarms")
				check("alarm list", code, b, 200)
				var list struct{ Alarms []alarm.Alarm }
				json.Unmarshal(b, &list)
				var got []string
				for _, a := range list.Alarms {
					if a.Rule != alarm.RuleBreakGlass { // the setup's grants raised notices for admins
						got = append(got, a.Patient)
					}
				}
				slices.Sort(got)
				var want []string
				for id := range visible {
					want = append(want, id)
				}
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("alarm list: patients %v, want %v", got, want)
				}
			})
		}
	}
}
