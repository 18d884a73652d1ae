package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/cli"
	"github.com/tendhealth/tend/internal/store"
)

// TestAuditEndToEnd makes PHI requests of every kind against a real node
// and checks that each left exactly one matching record, that requests
// without PHI left none, that an auditor reads them back as FHIR
// AuditEvent (itself audited), and that `tend audit verify` passes.
func TestAuditEndToEnd(t *testing.T) {
	dir := t.TempDir()
	n, addrs := startNode(t, dir)
	base := "http://" + addrs.HTTP
	admin := api{t: t, base: base, token: testToken}
	st := n.Store()
	ctx := context.Background()

	p := enrol(admin, "audit-e2e")
	const auditorToken = "test-auditor-token-0123456789abcdef"
	if err := st.PutToken(ctx, store.Token{Hash: auth.HashSecret(auditorToken), Role: store.RoleAuditor, Subject: "auditor1", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, store.User{ID: "nurse-audit", Name: "Nurse", Role: store.RoleNurse, PasswordHash: auth.HashPassword("correct horse battery"), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	auditor := api{t: t, base: base, token: auditorToken}
	anon := api{t: t, base: base}

	type want struct {
		action, subtype string
		status          int
		subject         string
		patients        []string
	}
	none := []string(nil)
	one := []string{p.patient}
	cases := []struct {
		name   string
		do     func(t *testing.T) int
		record *want // nil: no record
	}{
		{"FHIR read", func(t *testing.T) int { c, _ := admin.with(t).do("GET", "/fhir/Patient/"+p.patient, "", nil); return c },
			&want{"read", "read", 200, "bootstrap", one}},
		{"FHIR search", func(t *testing.T) int {
			c, _ := admin.with(t).do("GET", "/fhir/Observation?patient="+p.patient, "", nil)
			return c
		}, &want{"search", "search-type", 200, "bootstrap", one}},
		{"FHIR patient search by identifier", func(t *testing.T) int {
			c, _ := admin.with(t).do("GET", "/fhir/Patient?identifier=urn:test|audit-e2e", "", nil)
			return c
		}, &want{"search", "search-type", 200, "bootstrap", one}},
		{"latest", func(t *testing.T) int {
			c, _ := admin.with(t).do("GET", "/api/v1/patients/"+p.patient+"/latest", "", nil)
			return c
		}, &want{"read", "read", 200, "bootstrap", one}},
		{"alarms", func(t *testing.T) int {
			c, _ := admin.with(t).do("GET", "/api/v1/alarms?patient="+p.patient, "", nil)
			return c
		}, &want{"search", "search", 200, "bootstrap", one}},
		{"ack of an unknown alarm", func(t *testing.T) int {
			c, _ := admin.with(t).do("POST", "/api/v1/alarms/no-such-alarm/ack", "application/json", []byte(`{}`))
			return c
		}, &want{"failure", "ack", 404, "bootstrap", none}},
		{"stream", func(t *testing.T) int {
			req, _ := http.NewRequest("GET", base+"/api/v1/stream?patient="+p.patient, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			resp, err := http.DefaultClient.Do(req.WithContext(cctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			bufio.NewReader(resp.Body).ReadString('\n') // the stream has started
			return resp.StatusCode
		}, &want{"read", "stream", 200, "bootstrap", one}},
		{"denied to the auditor role", func(t *testing.T) int {
			c, _ := auditor.with(t).do("GET", "/fhir/Patient/"+p.patient, "", nil)
			return c
		}, &want{"denial", "read", 403, "auditor1", one}},
		{"no token", func(t *testing.T) int { c, _ := anon.with(t).do("GET", "/fhir/Patient/"+p.patient, "", nil); return c },
			&want{"denial", "read", 401, "", one}},
		{"failed login", func(t *testing.T) int {
			c, _ := anon.with(t).do("POST", "/api/v1/auth/token", "application/json", []byte(`{"username":"nurse-audit","password":"wrong"}`))
			return c
		}, &want{"login", "login", 401, "", none}},
		{"login", func(t *testing.T) int {
			c, _ := anon.with(t).do("POST", "/api/v1/auth/token", "application/json", []byte(`{"username":"nurse-audit","password":"correct horse battery"}`))
			return c
		}, &want{"login", "login", 201, "nurse-audit", none}},
		{"health check", func(t *testing.T) int { c, _ := anon.with(t).do("GET", "/healthz", "", nil); return c }, nil},
		{"capability statement", func(t *testing.T) int { c, _ := admin.with(t).do("GET", "/fhir/metadata", "", nil); return c }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, err := st.AuditHead(ctx)
			if err != nil {
				t.Fatal(err)
			}
			code := tc.do(t)
			var got []store.AuditEntry
			// A stream's record is stored before it starts; everything
			// else before its answer: no waiting needed.
			got, err = st.AuditEntries(ctx, store.AuditQuery{AfterSeq: before.Seq})
			if err != nil {
				t.Fatal(err)
			}
			if tc.record == nil {
				if len(got) != 0 {
					t.Fatalf("status %d: %d records, want none: %+v", code, len(got), got)
				}
				return
			}
			w := tc.record
			if code != w.status {
				t.Fatalf("status %d, want %d", code, w.status)
			}
			if len(got) != 1 {
				t.Fatalf("%d records, want exactly one: %+v", len(got), got)
			}
			r := got[0]
			if r.Action != w.action || r.Subtype != w.subtype || r.Status != w.status || r.Subject != w.subject ||
				!slices.Equal(r.Patients, w.patients) || r.Source != "127.0.0.1" {
				t.Errorf("record %+v, want %+v from 127.0.0.1", r, *w)
			}
			if strings.Contains(r.Query, "horse") {
				t.Error("a password reached the audit trail")
			}
		})
	}

	// The auditor reads the trail of the patient as FHIR AuditEvent.
	onPatient, err := st.AuditEntries(ctx, store.AuditQuery{Patient: p.patient})
	if err != nil {
		t.Fatal(err)
	}
	head, _ := st.AuditHead(ctx)
	code, body := auditor.do("GET", "/fhir/AuditEvent?patient="+p.patient+"&_count=1000", "", nil)
	if code != 200 {
		t.Fatalf("AuditEvent search: %d %s", code, body)
	}
	var bundle struct {
		ResourceType string
		Entry        []struct {
			Resource struct {
				ResourceType string
				ID           string
				Agent        []struct{ Who struct{ Display string } }
			}
		}
	}
	if err := json.Unmarshal(body, &bundle); err != nil || bundle.ResourceType != "Bundle" {
		t.Fatalf("AuditEvent search: %v %s", err, body)
	}
	if len(bundle.Entry) != len(onPatient) || len(onPatient) < 8 {
		t.Errorf("AuditEvent search: %d entries, store has %d records for the patient", len(bundle.Entry), len(onPatient))
	}
	// Reading the trail is itself one record.
	after, _ := st.AuditEntries(ctx, store.AuditQuery{AfterSeq: head.Seq})
	if len(after) != 1 || after[0].Subject != "auditor1" || after[0].Entity != "AuditEvent" || !slices.Equal(after[0].Patients, one) {
		t.Errorf("reading the trail recorded %+v", after)
	}
	if c, _ := admin.do("GET", "/fhir/AuditEvent/1", "", nil); c != 200 {
		t.Errorf("admin read of AuditEvent/1: %d", c)
	}
	if c, _ := anon.do("GET", "/fhir/AuditEvent", "", nil); c != 401 {
		t.Errorf("anonymous AuditEvent search: %d", c)
	}

	// tend audit verify on the live data directory.
	var out, errOut bytes.Buffer
	if rc := cli.Run([]string{"audit", "verify", "--data", dir}, &out, &errOut); rc != 0 || !strings.HasPrefix(out.String(), "OK: ") {
		t.Errorf("tend audit verify = %d: %s %s", rc, out.String(), errOut.String())
	}
}
