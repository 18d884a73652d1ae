package fhir

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/reading"
)

// searchFixture stores, for patient id1: heart rate from device id2 every
// minute 10:00–10:05 (values 60–65), SpO2 from device d9 at 10:00 and 10:03
// (95, 96); and one heart rate of another patient.
func searchFixture(t *testing.T) *fixture {
	f := withPatientDevice(t)
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var rs []reading.Reading
	for i := range 6 {
		rs = append(rs, reading.Reading{Patient: "id1", Device: "id2", Code: "8867-4", Value: float64(60 + i), HasValue: true,
			Unit: "/min", Time: base.Add(time.Duration(i) * time.Minute), Received: base, Source: "mqtt"})
	}
	rs = append(rs,
		reading.Reading{Patient: "id1", Device: "d9", Code: "59408-5", Value: 95, HasValue: true, Unit: "%", Time: base, Received: base, Source: "mqtt"},
		reading.Reading{Patient: "id1", Device: "d9", Code: "59408-5", Value: 96, HasValue: true, Unit: "%", Time: base.Add(3 * time.Minute), Received: base, Source: "mqtt"},
		reading.Reading{Patient: "other", Device: "d8", Code: "8867-4", Value: 99, HasValue: true, Unit: "/min", Time: base, Received: base, Source: "mqtt"})
	appendReadings(t, f.store, rs...)
	return f
}

// entries lists a searchset's entries as "mode:Type:value" for matches of
// Observations ("match:Observation:60") and "mode:Type" for the rest.
func entries(t *testing.T, r response) []string {
	t.Helper()
	var out []string
	list, _ := r.json(t)["entry"].([]any)
	for _, e := range list {
		e := e.(map[string]any)
		res := e["resource"].(map[string]any)
		s := fmt.Sprintf("%v:%v", e["search"].(map[string]any)["mode"], res["resourceType"])
		if vq, ok := res["valueQuantity"].(map[string]any); ok {
			s += fmt.Sprintf(":%v", vq["value"])
		}
		out = append(out, s)
	}
	return out
}

func link(t *testing.T, r response, relation string) string {
	t.Helper()
	for _, l := range r.json(t)["link"].([]any) {
		l := l.(map[string]any)
		if l["relation"] == relation {
			return l["url"].(string)
		}
	}
	return ""
}

func TestObservationSearchParameters(t *testing.T) {
	f := searchFixture(t)
	r := f.do("GET", "/fhir/Observation?patient=id1&code=59408-5&_sort=date", "", "")
	var spo2IDs []string
	for _, e := range r.json(t)["entry"].([]any) {
		spo2IDs = append(spo2IDs, e.(map[string]any)["resource"].(map[string]any)["id"].(string))
	}
	if len(spo2IDs) != 2 {
		t.Fatalf("SpO2 ids: %v", spo2IDs)
	}
	tests := []struct {
		query string
		total int
		want  string
	}{
		{"patient=id1&device=Device/d9", 2, "match:Observation:96 match:Observation:95"},
		{"patient=id1&device=id2,d9&code=59408-5", 2, "match:Observation:96 match:Observation:95"},
		{"patient=id1&device=nothing", 0, ""},
		{"patient=id1&status=final&code=59408-5", 2, "match:Observation:96 match:Observation:95"},
		{"patient=id1&status=cancelled", 0, ""},
		{"patient=id1&identifier=x", 0, ""},
		{"_id=" + spo2IDs[1] + "," + spo2IDs[0] + ",1-zz", 2, "match:Observation:96 match:Observation:95"},
		{"_id=" + spo2IDs[0] + "&patient=other", 0, ""},
		{"_id=" + spo2IDs[0] + "&_sort=date&date=lt2026-11-23T10:01:00Z", 1, "match:Observation:95"},
		// ne leaves two windows; the page walks them newest first.
		{"patient=id1&code=8867-4&date=ne2026-11-23T10:02&date=ne2026-11-23T10:03", 4, "match:Observation:65 match:Observation:64 match:Observation:61 match:Observation:60"},
		{"patient=id1&code=8867-4&date=ne2026-11-23T10:02&_sort=date&_count=2&_offset=1", 5, "match:Observation:61 match:Observation:63"},
		{"patient=id1&code=8867-4&date=ap2026-11-23T10:00:00Z", 6, ""},
		{"patient=id1&code=8867-4&date=eb2026-11-23T10:02:00Z&_summary=count", 2, ""},
		// _include adds each referenced Device once (d9 is unregistered).
		{"patient=id1&code=8867-4&_count=2&_include=Observation:device", 6, "match:Observation:65 match:Observation:64 include:Device"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := f.do("GET", "/fhir/Observation?"+tt.query, "", "", "Prefer", "handling=strict")
			f.expect(r, 200)
			if got := r.json(t)["total"]; got != float64(tt.total) {
				t.Errorf("total = %v, want %d", got, tt.total)
			}
			if tt.want != "" || strings.Contains(tt.query, "_summary") {
				if got := strings.Join(entries(t, r), " "); got != tt.want {
					t.Errorf("entries = %s\nwant      %s", got, tt.want)
				}
			}
		})
	}
}

func TestObservationElements(t *testing.T) {
	f := searchFixture(t)
	r := f.do("GET", "/fhir/Observation?patient=id1&code=59408-5&_count=1&_elements=valueQuantity", "", "")
	f.expect(r, 200)
	res := r.json(t)["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	for _, gone := range []string{"subject", "effectiveDateTime", "device", "category"} {
		if _, ok := res[gone]; ok {
			t.Errorf("_elements kept %s", gone)
		}
	}
	for _, kept := range []string{"id", "status", "code", "valueQuantity"} {
		if _, ok := res[kept]; !ok {
			t.Errorf("_elements dropped %s", kept)
		}
	}
	if !strings.Contains(string(r.body), `"SUBSETTED"`) {
		t.Errorf("subsetted resource not tagged: %s", r.body)
	}
}

// TestObservationPagingStaysValid walks next links while new readings
// arrive: every reading present at the start is seen exactly once.
func TestObservationPagingStaysValid(t *testing.T) {
	f := searchFixture(t)
	next := "/fhir/Observation?patient=id1&_count=3"
	var seen []string
	for page := 0; next != ""; page++ {
		if page > 5 {
			t.Fatal("paging does not terminate")
		}
		r := f.do("GET", strings.TrimPrefix(next, f.srv.URL), "", "")
		f.expect(r, 200)
		seen = append(seen, entries(t, r)...)
		next = link(t, r, "next")
		if page == 0 {
			if !strings.Contains(next, "_cursor=") || strings.Contains(next, "_offset") {
				t.Errorf("next link does not page by cursor: %s", next)
			}
			// A newer reading arriving between pages must not shift them.
			appendReadings(t, f.store, reading.Reading{Patient: "id1", Device: "id2", Code: "8867-4", Value: 70, HasValue: true,
				Unit: "/min", Time: time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC), Received: fixedNow, Source: "mqtt"})
		}
	}
	// Ties in time are ordered by series: SpO2 (stored second) first.
	want := "match:Observation:65 match:Observation:64 match:Observation:96 match:Observation:63 match:Observation:62 " +
		"match:Observation:61 match:Observation:95 match:Observation:60"
	if got := strings.Join(seen, " "); got != want {
		t.Errorf("paged entries:\n got %s\nwant %s", got, want)
	}
	f.expect(f.do("GET", "/fhir/Observation?patient=id1&_cursor=bogus", "", ""), 400)
}

func TestLastN(t *testing.T) {
	f := searchFixture(t)
	tests := []struct {
		query string
		want  string
	}{
		{"patient=id1", "match:Observation:96 match:Observation:65"},
		{"patient=id1&max=2", "match:Observation:96 match:Observation:95 match:Observation:65 match:Observation:64"},
		{"patient=id1&max=2&code=8867-4", "match:Observation:65 match:Observation:64"},
		{"patient=id1&max=3&date=le2026-11-23T10:01", "match:Observation:95 match:Observation:61 match:Observation:60"},
		{"patient=nobody", ""},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := f.do("GET", "/fhir/Observation/$lastn?"+tt.query, "", "")
			f.expect(r, 200)
			if got := strings.Join(entries(t, r), " "); got != tt.want {
				t.Errorf("entries = %s\nwant      %s", got, tt.want)
			}
		})
	}
	f.expect(f.do("GET", "/fhir/Observation/$lastn?code=8867-4", "", ""), 400)
	f.expect(f.do("GET", "/fhir/Observation/$lastn?patient=id1&max=0", "", ""), 400)
}

func TestPatientEverything(t *testing.T) {
	f := searchFixture(t)
	r := f.do("GET", "/fhir/Patient/id1/$everything?_count=2", "", "")
	f.expect(r, 200)
	if got := strings.Join(entries(t, r), " "); got != "match:Patient match:Observation:65 match:Observation:64 include:Device" {
		t.Errorf("entries = %s", got)
	}
	if r.json(t)["total"] != float64(9) {
		t.Errorf("total = %v, want 9 (the patient and 8 observations)", r.json(t)["total"])
	}
	next := link(t, r, "next")
	if !strings.Contains(next, "/fhir/Patient/id1/$everything?") || !strings.Contains(next, "_cursor=") {
		t.Fatalf("next = %q", next)
	}
	r = f.do("GET", strings.TrimPrefix(next, f.srv.URL), "", "")
	f.expect(r, 200)
	if got := strings.Join(entries(t, r), " "); got != "match:Patient match:Observation:96 match:Observation:63 include:Device" {
		t.Errorf("second page = %s", got)
	}
	f.expect(f.do("GET", "/fhir/Patient/nobody/$everything", "", ""), 404)
	f.expect(f.do("GET", "/fhir/Patient/id1/$everything?_type=Observation", "", ""), 400)
}

// TestCapabilityTellsTheTruth asks the server for every search parameter
// and operation its CapabilityStatement declares, under handling=strict:
// none may be refused as unknown, and an undeclared one must be.
func TestCapabilityTellsTheTruth(t *testing.T) {
	f := searchFixture(t)
	sample := map[string]string{
		"patient": "id1", "subject": "Patient/id1", "_id": "1-a", "identifier": "x", "code": "8867-4", "category": "vital-signs",
		"status": "final", "device": "id2", "date": "ge2026-11-23", "_sort": "date", "_elements": "status", "_cursor": "1-a",
		"_count": "5", "_offset": "0", "_summary": "count",
		"name": "ward", "participant": "Practitioner/doc", "actor": "RelatedPerson/gran",
		"source": "Device/id2",
	}
	// Declared, but served by handlers this fixture does not mount; each
	// has its own test of what it declares.
	elsewhere := map[string]string{
		"AuditEvent": "NewAuditEventHandler: TestAuditEventSearch",
		"$export":    "Config.Export: TestExportFlow",
	}
	for _, res := range capability().Rest[0].Resource {
		if elsewhere[res.Type] != "" {
			continue
		}
		for _, p := range res.SearchParam {
			v, ok := sample[p.Name]
			if !ok {
				t.Errorf("%s: no sample value for declared parameter %s", res.Type, p.Name)
				continue
			}
			query := p.Name + "=" + v
			if res.Type == "Observation" && p.Name != "patient" && p.Name != "subject" {
				query += "&patient=id1"
			}
			if p.Name == "_cursor" || p.Name == "_offset" {
				query = strings.Replace(query, "&patient", "&_sort=date&patient", 1)
			}
			r := f.do("GET", "/fhir/"+res.Type+"?"+query, "", "", "Prefer", "handling=strict")
			if r.status != 200 {
				t.Errorf("declared %s search parameter %s refused: %d %s", res.Type, p.Name, r.status, r.body)
			}
		}
		for _, op := range res.Operation {
			if elsewhere["$"+op.Name] != "" {
				continue
			}
			path := "/fhir/" + res.Type + "/$" + op.Name + "?patient=id1"
			if res.Type == "Patient" {
				path = "/fhir/Patient/id1/$" + op.Name
			}
			if r := f.do("GET", path, "", ""); r.status != 200 {
				t.Errorf("declared operation %s refused: %d %s", path, r.status, r.body)
			}
		}
		for _, inc := range res.SearchInclude {
			if r := f.do("GET", "/fhir/Observation?patient=id1&_include="+inc, "", ""); r.status != 200 {
				t.Errorf("declared _include %s refused: %d", inc, r.status)
			}
		}
	}
	f.expect(f.do("GET", "/fhir/Observation?patient=id1&value-quantity=gt5", "", "", "Prefer", "handling=strict"), 400)
	f.expect(f.do("GET", "/fhir/Device?patient=id1", "", ""), 405) // search not declared for Device
}
