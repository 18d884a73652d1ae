package fhir

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/audit"
)

func auditEventServer(t *testing.T) (http.Handler, *audit.Log) {
	t.Helper()
	st := newStore(t)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	log := audit.New(st, func() time.Time { now = now.Add(time.Minute); return now })
	recs := []audit.Record{
		{Action: "login", Subtype: "login", Status: 201, Subject: "nurse1", Role: "nurse", Org: "north", Source: "192.0.2.1", Entity: "/api/v1/auth/token"},
		{Action: "read", Subtype: "read", Status: 200, Subject: "nurse1", Role: "nurse", Org: "north", Source: "192.0.2.1", Patients: []string{"p1"}, Entity: "Patient/p1"},
		{Action: "search", Subtype: "search-type", Status: 200, Subject: "nurse1", Role: "nurse", Org: "north", Source: "192.0.2.1", Patients: []string{"p1", "p2"}, Entity: "Observation", Query: "patient=p1&code=http://loinc.org|8867-4"},
		{Action: "denial", Subtype: "update", Outcome: 4, Status: 403, Subject: "cg1", Role: "caregiver", Source: "2001:db8::7", Patients: []string{"p2"}, Entity: "/api/v1/alarms/a1/ack"},
		{Action: "read", Subtype: "stream", Status: 200, Source: "192.0.2.9", Entity: "/api/v1/stream"},
	}
	for _, r := range recs {
		if _, err := log.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	h := NewAuditEventHandler(AuditEventConfig{Store: st, Now: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return h, log
}

func getAudit(t *testing.T, h http.Handler, target string) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://tend.example"+target, nil))
	return rec.Code, rec.Body.Bytes()
}

func TestAuditEventGolden(t *testing.T) {
	h, _ := auditEventServer(t)
	sch, schemaErr := fhirSchema()
	for name, target := range map[string]string{
		"auditevent_read.json":   "/fhir/AuditEvent/3",
		"auditevent_search.json": "/fhir/AuditEvent?patient=p2&_count=1",
	} {
		code, body := getAudit(t, h, target)
		if code != 200 {
			t.Fatalf("%s: %d %s", target, code, body)
		}
		checkGolden(t, name, body)
		if schemaErr == nil {
			if err := validateFHIR(sch, body); err != nil {
				t.Errorf("%s does not validate against the FHIR R4 schema: %v", target, err)
			}
		}
	}
	// Every kind of record validates.
	if schemaErr == nil {
		_, body := getAudit(t, h, "/fhir/AuditEvent")
		if err := validateFHIR(sch, body); err != nil {
			t.Errorf("full trail does not validate: %v", err)
		}
	}
}

func TestAuditEventSearch(t *testing.T) {
	h, _ := auditEventServer(t)
	cases := []struct {
		query string
		want  []string // ids
	}{
		{"", []string{"1", "2", "3", "4", "5"}},
		{"patient=p1", []string{"2", "3"}},
		{"patient=Patient/p2", []string{"3", "4"}},
		{"agent=nurse1", []string{"1", "2", "3"}},
		{"user=cg1", []string{"4"}},
		{"date=ge2026-11-23T10:03:00Z", []string{"3", "4", "5"}},
		{"date=ge2026-11-23T10:02:00Z&date=lt2026-11-23T10:04:00Z", []string{"2", "3"}},
		{"date=2026-11-24", nil},
		{"agent=nurse1&patient=p2", []string{"3"}},
		{"_count=2", []string{"1", "2"}},
		{"_count=2&_cursor=2", []string{"3", "4"}},
	}
	for _, tc := range cases {
		code, body := getAudit(t, h, "/fhir/AuditEvent?"+tc.query)
		if code != 200 {
			t.Errorf("%s: %d %s", tc.query, code, body)
			continue
		}
		var b struct {
			Link  []BundleLink
			Entry []struct {
				Resource struct{ ID string }
			}
		}
		json.Unmarshal(body, &b)
		var ids []string
		for _, e := range b.Entry {
			ids = append(ids, e.Resource.ID)
		}
		if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: ids %v, want %v", tc.query, ids, tc.want)
		}
		if tc.query == "_count=2" {
			if len(b.Link) != 2 || b.Link[1].Relation != "next" || !strings.Contains(b.Link[1].URL, "_cursor=2") {
				t.Errorf("paging links: %+v", b.Link)
			}
		}
	}
	for _, bad := range []string{"/fhir/AuditEvent?_count=x", "/fhir/AuditEvent?date=yesterday", "/fhir/AuditEvent?patient=a/b/c"} {
		if code, _ := getAudit(t, h, bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
	for _, missing := range []string{"/fhir/AuditEvent/99", "/fhir/AuditEvent/x"} {
		if code, _ := getAudit(t, h, missing); code != 404 {
			t.Errorf("%s: %d, want 404", missing, code)
		}
	}
}
