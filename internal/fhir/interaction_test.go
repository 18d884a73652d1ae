package fhir

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func accessString(as []Access) string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%s.%s", a.Type, a.AnyString()))
	}
	return strings.Join(out, " ")
}

func TestRequiredAccess(t *testing.T) {
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"request":{"method":"POST","url":"Observation"}},
		{"request":{"method":"GET","url":"Patient?_revinclude=Observation:subject"}},
		{"request":{"method":"DELETE","url":"Device/d1"}}]}`
	cases := []struct {
		method, path, query, ctype, body string
		want                             string // "" with errLike: refused
		errLike                          string
	}{
		{method: "GET", path: "/metadata", want: ""},
		{method: "GET", path: "/Patient/p1", want: "Patient.r"},
		{method: "HEAD", path: "/Patient/p1", want: "Patient.r"},
		{method: "GET", path: "/Patient/p1/_history/2", want: "Patient.r"},
		{method: "GET", path: "/Patient/p1/_history", want: "Patient.r"},
		{method: "GET", path: "/Patient/_history", want: "Patient.s"},
		{method: "GET", path: "/_history", want: "*.s"},
		{method: "GET", path: "/Patient", query: "identifier=x", want: "Patient.s"},
		{method: "GET", path: "/", query: "_type=Patient", want: "*.s"},
		{method: "POST", path: "/Patient", want: "Patient.c"},
		{method: "PUT", path: "/Patient/p1", want: "Patient.u"},
		{method: "PATCH", path: "/Patient/p1", want: "Patient.u"},
		{method: "DELETE", path: "/Patient/p1", want: "Patient.d"},
		{method: "PUT", path: "/Patient", query: "identifier=x", want: "Patient.u"},
		{method: "DELETE", path: "/Patient", query: "identifier=x", want: "Patient.d"},
		{method: "GET", path: "/Observation", query: "patient=p1&_include=Observation:device", want: "Observation.s Device.rs"},
		{method: "GET", path: "/Observation", query: "_include=Observation:subject:Patient&_include:iterate=Observation:device", want: "Observation.s Patient.rs Device.rs"},
		{method: "GET", path: "/Observation", query: "_include=Observation:performer", want: "Observation.s *.rs"},
		{method: "GET", path: "/Observation", query: "_include=*", want: "Observation.s *.rs"},
		{method: "GET", path: "/Patient", query: "_revinclude=Observation:patient", want: "Patient.s Observation.rs"},
		{method: "GET", path: "/Observation", query: "_include=bad", errLike: "Source:parameter"},
		{method: "POST", path: "/Observation/_search", ctype: "application/x-www-form-urlencoded", body: "_include=Observation:device", want: "Observation.s Device.rs"},
		{method: "POST", path: "/Observation/_search", ctype: "application/json", body: "{}", errLike: "x-www-form-urlencoded"},
		{method: "GET", path: "/Observation/$lastn", query: "patient=p1", want: "Observation.s"},
		{method: "GET", path: "/Patient/p1/$everything", want: "Patient.r Patient.s Observation.s Device.s"},
		{method: "GET", path: "/$export", query: "_type=Patient,Observation", want: "Patient.s Observation.s"},
		{method: "GET", path: "/$export", want: "*.s"},
		{method: "GET", path: "/Patient/$export", want: "*.s"},
		{method: "GET", path: "/Group/g1/$export", query: "_type=Observation", want: "Observation.s Group.r"},
		{method: "GET", path: "/$export-poll-status/j1", want: ""},
		{method: "DELETE", path: "/$export-poll-status/j1", want: ""},
		{method: "GET", path: "/$export-file/j1/Patient-0001.ndjson", want: ""},
		{method: "DELETE", path: "/$export-file/j1/Patient-0001.ndjson", errLike: "not a FHIR interaction"},
		{method: "POST", path: "/$export-poll-status/j1", errLike: "not a FHIR interaction"},
		{method: "GET", path: "/$export-poll-status", errLike: "operation $export-poll-status"},
		{method: "POST", path: "/", body: bundle, want: "Observation.c Patient.s Observation.rs Device.d"},
		{method: "POST", path: "", body: `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"/"}}]}`, errLike: "Bundle may not contain a Bundle"},
		{method: "POST", path: "/", body: `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"https://evil.example/Patient"}}]}`, errLike: "relative"},
		{method: "POST", path: "/", body: `not json`, errLike: "not a JSON Bundle"},
		{method: "POST", path: "/", body: `{"resourceType":"Bundle","type":"collection"}`, errLike: "batch and transaction"},
		{method: "GET", path: "/Patient/p1/$frobnicate", errLike: "operation"},
		{method: "GET", path: "/Patient/p1/Observation", errLike: "not a FHIR interaction"},
		{method: "GET", path: "/patient/p1", errLike: "not a FHIR interaction"},
		{method: "GET", path: "/Patient//p1", errLike: "empty path segment"},
		{method: "POST", path: "/metadata", errLike: "not a FHIR interaction"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path+"?"+c.query, func(t *testing.T) {
			q, _ := url.ParseQuery(c.query)
			got, err := RequiredAccess(c.method, c.path, q, c.ctype, []byte(c.body))
			if c.errLike != "" {
				if err == nil || !strings.Contains(err.Error(), c.errLike) {
					t.Fatalf("got %q, %v; want an error like %q", accessString(got), err, c.errLike)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := accessString(got); s != c.want {
				t.Fatalf("got %q, want %q", s, c.want)
			}
		})
	}
}

func TestAccessNeedsBody(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         bool
	}{{"POST", "", true}, {"POST", "/", true}, {"POST", "/Observation/_search", true}, {"POST", "/Observation", false}, {"GET", "/", false}} {
		if got := AccessNeedsBody(c.method, c.path); got != c.want {
			t.Errorf("AccessNeedsBody(%s %q) = %v, want %v", c.method, c.path, got, c.want)
		}
	}
}

// FuzzRequiredAccess: any path, query and Bundle body is either refused or
// classified into accesses that each name a type and a permission.
func FuzzRequiredAccess(f *testing.F) {
	f.Add("GET", "/Observation", "_include=Observation:device", "")
	f.Add("POST", "/", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1/_history/2"}}]}`)
	f.Add("GET", "/Patient/1/$everything", "", "")
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		got, err := RequiredAccess(method, path, q, "application/x-www-form-urlencoded", []byte(body))
		if err != nil {
			return
		}
		for _, a := range got {
			if a.Type == "" || len(a.Any) == 0 {
				t.Fatalf("%s %s: access %+v names no type or permission", method, path, a)
			}
		}
	})
}
