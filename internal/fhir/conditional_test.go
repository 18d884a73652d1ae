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

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
)

// send is get for any method and body.
func (f *orgFixture) send(who, method, target, body string, headers ...string) (int, http.Header, []byte) {
	f.t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+who)
	if body != "" {
		req.Header.Set("Content-Type", contentTypeFHIR)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec.Code, rec.Header(), rec.Body.Bytes()
}

func answeredID(t *testing.T, body []byte) string {
	t.Helper()
	var m struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not a resource: %v\n%s", err, body)
	}
	return m.ID
}

// TestConditionalCreate runs If-None-Exist on Patient and Device in two
// organisations: each step's status, and which resource answered ("new"
// for one just created, "" for an OperationOutcome).
func TestConditionalCreate(t *testing.T) {
	const (
		mrnA   = `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"A"}]}`
		serial = `{"resourceType":"Device","identifier":[{"system":"urn:serial","value":"S-1"}]}`
	)
	for _, typ := range []string{"Patient", "Device"} {
		t.Run(typ, func(t *testing.T) {
			f := newOrgFixture(t, nil)
			body, sys, val := mrnA, "urn:mrn", "A"
			if typ == "Device" {
				body, sys, val = serial, "urn:serial", "S-1"
			}
			first := ""
			steps := []struct {
				name, who, header string
				noHeader          bool
				want              int
				wantSame          bool // answered with the first one created
			}{
				{name: "none: created", who: "north-admin", header: "identifier=" + sys + "|" + val, want: 201},
				{name: "one: answered with it", who: "north-admin", header: "identifier=" + sys + "|" + val, want: 200, wantSame: true},
				{name: "as a query, any system", who: "north-admin", header: "?identifier=" + val, want: 200, wantSame: true},
				{name: "percent-encoded bar", who: "north-admin", header: "identifier=" + sys + "%7C" + val, want: 200, wantSame: true},
				{name: "other system: created", who: "north-admin", header: "identifier=urn:other|" + val, want: 201},
				{name: "other organisation: created", who: "south-admin", header: "identifier=" + sys + "|" + val, want: 201},
				{name: "other organisation again: its own", who: "south-admin", header: "identifier=" + sys + "|" + val, want: 200},
				{name: "unconditional duplicate", who: "north-admin", noHeader: true, want: 201},
				{name: "two matches: 412", who: "north-admin", header: "identifier=" + sys + "|" + val, want: 412},
				{name: "unsupported parameter", who: "north-admin", header: "name=x", want: 400},
				{name: "no value", who: "north-admin", header: "identifier=" + sys + "|", want: 400},
				{name: "two values", who: "north-admin", header: "identifier=a,b", want: 400},
				{name: "empty", who: "north-admin", header: "", want: 400},
			}
			for _, s := range steps {
				var h []string
				if !s.noHeader {
					h = []string{"If-None-Exist", s.header}
				}
				code, hdr, got := f.send(s.who, "POST", "/fhir/"+typ, body, h...)
				if code != s.want {
					t.Fatalf("%s: status %d, want %d\n%s", s.name, code, s.want, got)
				}
				if code >= 400 {
					if !strings.Contains(string(got), `"OperationOutcome"`) {
						t.Errorf("%s: no OperationOutcome: %s", s.name, got)
					}
					continue
				}
				id := answeredID(t, got)
				if first == "" {
					first = id
				} else if s.wantSame != (id == first) {
					t.Errorf("%s: answered with %s, first created %s", s.name, id, first)
				}
				if code == 200 && hdr.Get("Location") != "" {
					t.Errorf("%s: 200 carries Location %q", s.name, hdr.Get("Location"))
				}
				if code == 200 && hdr.Get("Content-Location") != "/fhir/"+typ+"/"+id+"/_history/1" {
					t.Errorf("%s: Content-Location %q", s.name, hdr.Get("Content-Location"))
				}
				if hdr.Get("ETag") == "" {
					t.Errorf("%s: no ETag", s.name)
				}
			}
		})
	}
}

// TestConditionalCreateHidden: a match the caller may not see is neither
// disclosed nor duplicated.
func TestConditionalCreateHidden(t *testing.T) {
	f := newOrgFixture(t, nil)
	// p3 is north's but not in doc's care team.
	if code, _, b := f.send("north-admin", "PUT", "/fhir/Patient/p3", `{"resourceType":"Patient","id":"p3","identifier":[{"system":"urn:mrn","value":"HIDDEN"}]}`); code != 200 {
		t.Fatalf("update p3: %d %s", code, b)
	}
	code, _, b := f.send("north-doc", "POST", "/fhir/Patient", `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"HIDDEN"}]}`,
		"If-None-Exist", "identifier=urn:mrn|HIDDEN")
	if code != 412 || strings.Contains(string(b), "p3") {
		t.Fatalf("hidden match: %d %s", code, b)
	}
	// The device ds is south's: invisible to north, so north creates its own.
	if code, _, b := f.send("south-admin", "PUT", "/fhir/Device/ds", `{"resourceType":"Device","id":"ds","identifier":[{"system":"urn:serial","value":"SOUTH"}],"patient":{"reference":"Patient/s1"}}`); code != 200 {
		t.Fatalf("update ds: %d %s", code, b)
	}
	code, _, b = f.send("north-admin", "POST", "/fhir/Device", `{"resourceType":"Device"}`, "If-None-Exist", "identifier=urn:serial|SOUTH")
	if code != 201 || answeredID(t, b) == "ds" {
		t.Fatalf("other organisation's device: %d %s", code, b)
	}
}

func FuzzParseIfNoneExist(f *testing.F) {
	for _, s := range []string{"identifier=a|b", "?identifier=b", "identifier=%7C", "a=b&identifier=c", "identifier=a,b", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := httptest.NewRequest("POST", "/fhir/Patient", nil)
		r.Header.Set(ifNoneExistHeader, s)
		id, err := parseIfNoneExist(r)
		if (id == nil) == (err == nil) {
			t.Fatalf("%q: identifier %v and error %v", s, id, err)
		}
		if id != nil && id.Value == "" {
			t.Fatalf("%q: empty value accepted", s)
		}
	})
}

// TestConditionalCreateSMART: a SMART client, admitted on its create scope,
// learns the match's id but not its content.
func TestConditionalCreateSMART(t *testing.T) {
	f := newOrgFixture(t, nil)
	const body = `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"S"}],"name":[{"family":"Secret"}]}`
	if code, _, b := f.send("north-admin", "POST", "/fhir/Patient", body); code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	h := NewHandler(Config{Store: f.st, Now: func() time.Time { return fixedNow }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Access: access.New(f.st, func() time.Time { return fixedNow })})
	for _, tc := range []struct {
		name   string
		scopes []string
		body   bool
	}{
		{"API token", nil, true},
		{"SMART client", []string{"system/Patient.c"}, false},
	} {
		p := auth.Principal{Subject: "ehr", Role: "integration", Org: "north", Scopes: tc.scopes}
		req := httptest.NewRequest("POST", "/fhir/Patient", strings.NewReader(body))
		req.Header.Set("Content-Type", contentTypeFHIR)
		req.Header.Set("If-None-Exist", "identifier=urn:mrn|S")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(auth.WithPrincipal(req.Context(), p)))
		if rec.Code != 200 || rec.Header().Get("Content-Location") == "" {
			t.Fatalf("%s: %d %q", tc.name, rec.Code, rec.Header().Get("Content-Location"))
		}
		if got := strings.Contains(rec.Body.String(), "Secret"); got != tc.body {
			t.Errorf("%s: body returned = %v, want %v: %s", tc.name, got, tc.body, rec.Body)
		}
	}
}
