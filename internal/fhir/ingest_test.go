package fhir

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// storeCommitter stands in for the group committer and the store writer
// behind it: a commit is stored at once, so it is readable on return.
// hold makes commits durable but not (yet) readable; fail refuses them.
type storeCommitter struct {
	store store.Store
	mu    sync.Mutex
	calls [][]reading.Reading
	hold  bool
	fail  error
}

func (c *storeCommitter) Commit(ctx context.Context, rs []reading.Reading) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.calls = append(c.calls, append([]reading.Reading(nil), rs...))
	if c.hold {
		return nil
	}
	_, err := c.store.Append(ctx, rs)
	return err
}

func (c *storeCommitter) committed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, rs := range c.calls {
		n += len(rs)
	}
	return n
}

// effective is a reading time inside the accepted window around fixedNow.
const effective = "2026-11-23T11:00:00Z"

// obsJSON builds a vital-signs Observation; edit replaces parts of it.
func obsJSON(code, value string, edits ...string) string {
	s := `{"resourceType":"Observation","status":"final",
	 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
	 "code":{"coding":[{"system":"http://loinc.org","code":"` + code + `"}]},
	 "subject":{"reference":"Patient/id1"},"device":{"reference":"Device/id2"},
	 "effectiveDateTime":"` + effective + `",` + value + `}`
	for i := 0; i+1 < len(edits); i += 2 {
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	return s
}

const spo2Value = `"valueQuantity":{"value":97,"unit":"%","system":"http://unitsofmeasure.org","code":"%"}`

const bpComponents = `"component":[
 {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
 {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]`

// withPatientDevice registers Patient id1 and Device id2 bound to it.
func withPatientDevice(t *testing.T) *fixture {
	f := newFixture(t)
	f.expect(f.do("POST", "/fhir/Patient", contentTypeFHIR, patientJSON), 201)
	f.expect(f.do("POST", "/fhir/Device", contentTypeFHIR, `{"resourceType":"Device","patient":{"reference":"Patient/id1"}}`), 201)
	// id3 is another patient, with device id4 bound to it.
	f.expect(f.do("POST", "/fhir/Patient", contentTypeFHIR, `{"resourceType":"Patient"}`), 201)
	f.expect(f.do("POST", "/fhir/Device", contentTypeFHIR, `{"resourceType":"Device","patient":{"reference":"Patient/id3"}}`), 201)
	return f
}

func (f *fixture) deadLetters() []store.DeadLetter {
	f.t.Helper()
	dls, err := f.store.DeadLetters(context.Background(), 100, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return dls
}

func TestObservationCreate(t *testing.T) {
	f := withPatientDevice(t)
	r := f.do("POST", "/fhir/Observation", contentTypeFHIR, obsJSON("59408-5", spo2Value))
	f.expect(r, 201)
	obs := r.json(t)
	id, _ := obs["id"].(string)
	if id == "" || r.header.Get("Location") != "/fhir/Observation/"+id {
		t.Fatalf("id %q, Location %q", id, r.header.Get("Location"))
	}
	if q := obs["valueQuantity"].(map[string]any); q["value"] != float64(97) || q["code"] != "%" {
		t.Errorf("valueQuantity = %v", q)
	}
	if obs["effectiveDateTime"] != effective || obs["device"].(map[string]any)["reference"] != "Device/id2" {
		t.Errorf("body: %s", r.body)
	}
	f.expect(f.do("GET", "/fhir/Observation/"+id, "", ""), 200)

	// The same reading again (a retry) is stored once and answered 200
	// with what is stored, without committing again.
	r = f.do("POST", "/fhir/Observation", contentTypeFHIR, obsJSON("59408-5", spo2Value))
	f.expect(r, 200)
	if r.json(t)["id"] != id || f.commit.committed() != 1 {
		t.Errorf("retry: id %v, committed %d", r.json(t)["id"], f.commit.committed())
	}

	// A unit other than the canonical one is converted; return=minimal
	// leaves the body out.
	temp := obsJSON("8310-5", `"valueQuantity":{"value":98.6,"unit":"°F","system":"http://unitsofmeasure.org","code":"[degF]"}`)
	r = f.do("POST", "/fhir/Observation", contentTypeFHIR, temp, "Prefer", "return=minimal")
	if r.status != 201 || len(r.body) != 0 || r.header.Get("Location") == "" {
		t.Fatalf("return=minimal: %d %q %s", r.status, r.header.Get("Location"), r.body)
	}
	r = f.do("GET", r.header.Get("Location"), "", "")
	f.expect(r, 200)
	if q := r.json(t)["valueQuantity"].(map[string]any); q["value"] != float64(37) || q["code"] != "Cel" {
		t.Errorf("converted temperature = %v", q)
	}

	// Blood pressure as a panel with components.
	r = f.do("POST", "/fhir/Observation", contentTypeFHIR, obsJSON("85354-9", bpComponents))
	f.expect(r, 201)
	if comps, _ := r.json(t)["component"].([]any); len(comps) != 2 {
		t.Errorf("BP components: %s", r.body)
	}
	if n := len(f.deadLetters()); n != 0 {
		t.Errorf("%d dead letters after valid posts", n)
	}
}

func TestObservationConditionalCreate(t *testing.T) {
	f := withPatientDevice(t)
	body := obsJSON("59408-5", spo2Value)
	cond := "code=http://loinc.org|59408-5&date=" + effective
	f.expect(f.do("POST", "/fhir/Observation", contentTypeFHIR, body, "If-None-Exist", cond), 201)
	// Another value at the same time: the condition matches, nothing new.
	other := obsJSON("59408-5", strings.Replace(spo2Value, "97", "91", 1), "Device/id2", "Device/id2")
	r := f.do("POST", "/fhir/Observation", contentTypeFHIR, other, "If-None-Exist", cond)
	f.expect(r, 200)
	if q := r.json(t)["valueQuantity"].(map[string]any); q["value"] != float64(97) {
		t.Errorf("conditional create returned %v, want the existing 97", q)
	}
	// Two matches are 412; an unknown criterion is refused, not dropped.
	later := obsJSON("59408-5", spo2Value, effective, "2026-11-23T11:05:00Z")
	f.expect(f.do("POST", "/fhir/Observation", contentTypeFHIR, later), 201)
	f.expect(f.do("POST", "/fhir/Observation", contentTypeFHIR, obsJSON("59408-5", spo2Value, effective, "2026-11-23T11:10:00Z"),
		"If-None-Exist", "code=59408-5"), 412)
	f.expect(f.do("POST", "/fhir/Observation", contentTypeFHIR, body, "If-None-Exist", "nonsense=1"), 400)
	if got := f.commit.committed(); got != 2 {
		t.Errorf("committed %d readings, want 2", got)
	}
}

func TestObservationInvalid(t *testing.T) {
	cases := []struct {
		name, contentType, body string
		status                  int
		expression              string
	}{
		{"malformed JSON", contentTypeFHIR, `{"resourceType":"Observation",`, 400, "Observation"},
		{"XML", "application/fhir+xml", `<Observation xmlns="http://hl7.org/fhir"/>`, 415, ""},
		{"other resource", contentTypeFHIR, patientJSON, 400, "Observation"},
		{"status missing", contentTypeFHIR, obsJSON("59408-5", spo2Value, `"status":"final",`, ``), 422, "Observation.status"},
		{"status preliminary", contentTypeFHIR, obsJSON("59408-5", spo2Value, `"final"`, `"preliminary"`), 422, "Observation.status"},
		{"category missing", contentTypeFHIR, obsJSON("59408-5", spo2Value, `"vital-signs"`, `"laboratory"`), 422, "Observation.category"},
		{"code unknown", contentTypeFHIR, obsJSON("1234-5", spo2Value), 422, "Observation.code"},
		{"code wrong type", contentTypeFHIR, obsJSON("59408-5", spo2Value, `"code":{"coding"`, `"code":{"coding":7,"x"`), 400, "Observation"},
		{"subject missing", contentTypeFHIR, obsJSON("59408-5", spo2Value, `"subject":{"reference":"Patient/id1"},`, ``), 422, "Observation.subject"},
		{"subject not a patient", contentTypeFHIR, obsJSON("59408-5", spo2Value, `Patient/id1`, `Group/id1`), 422, "Observation.subject.reference"},
		{"subject unknown", contentTypeFHIR, obsJSON("59408-5", spo2Value, `Patient/id1`, `Patient/nobody`), 422, "Observation.subject"},
		{"device unknown", contentTypeFHIR, obsJSON("59408-5", spo2Value, `Device/id2`, `Device/nothing`), 422, "Observation.device"},
		{"device bound to another patient", contentTypeFHIR, obsJSON("59408-5", spo2Value, `Device/id2`, `Device/id4`, effective, "2026-11-23T12:01:00Z"), 422, "Observation.device"},
		{"effective missing", contentTypeFHIR, obsJSON("59408-5", spo2Value, `"effectiveDateTime":"`+effective+`",`, ``), 422, "Observation.effective[x]"},
		{"effective without zone", contentTypeFHIR, obsJSON("59408-5", spo2Value, effective, "2026-11-23T11:00:00"), 422, "Observation.effectiveDateTime"},
		{"effective in the future", contentTypeFHIR, obsJSON("59408-5", spo2Value, effective, "2026-11-24T11:00:00Z"), 422, "Observation.effectiveDateTime"},
		{"value missing", contentTypeFHIR, obsJSON("59408-5", `"note":[{"text":"x"}]`), 422, "Observation.value[x]"},
		{"valueString", contentTypeFHIR, obsJSON("59408-5", `"valueString":"97"`), 422, "Observation.valueString"},
		{"value out of range", contentTypeFHIR, obsJSON("59408-5", strings.Replace(spo2Value, "97", "197", 1)), 422, "Observation.valueQuantity.value"},
		{"wrong unit", contentTypeFHIR, obsJSON("59408-5", strings.Replace(spo2Value, `"code":"%"`, `"code":"kg"`, 1)), 422, "Observation.valueQuantity.code"},
		{"absent value", contentTypeFHIR, obsJSON("59408-5", `"dataAbsentReason":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/data-absent-reason","code":"error"}]}`), 422, "Observation.dataAbsentReason"},
		{"BP with a value", contentTypeFHIR, obsJSON("85354-9", `"valueQuantity":{"value":120,"code":"mm[Hg]"}`), 422, "Observation.valueQuantity"},
		{"BP without diastolic", contentTypeFHIR, obsJSON("85354-9", strings.Split(bpComponents, ",\n {")[0]+"]"), 422, "Observation.component"},
		{"BP part alone", contentTypeFHIR, obsJSON("8480-6", `"valueQuantity":{"value":120,"code":"mm[Hg]"}`), 422, "Observation.code"},
		{"component on a single vital", contentTypeFHIR, obsJSON("59408-5", spo2Value+`,`+bpComponents), 422, "Observation.component"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := withPatientDevice(t)
			r := f.do("POST", "/fhir/Observation", c.contentType, c.body)
			f.expect(r, c.status)
			oo := r.json(t)
			issue := oo["issue"].([]any)[0].(map[string]any)
			if c.expression != "" {
				expr, _ := issue["expression"].([]any)
				if len(expr) != 1 || expr[0] != c.expression {
					t.Errorf("expression = %v, want %s (%v)", expr, c.expression, issue["diagnostics"])
				}
			}
			if got := f.commit.committed(); got != 0 {
				t.Errorf("committed %d readings of an invalid resource", got)
			}
			if c.status != 415 {
				dls := f.deadLetters()
				if len(dls) != 1 || dls[0].Source != "fhir" || string(dls[0].Payload) != c.body {
					t.Errorf("dead letters = %+v", dls)
				}
			}
		})
	}
}

func TestObservationCommitFailure(t *testing.T) {
	f := withPatientDevice(t)
	f.commit.fail = errors.New("stream down")
	r := f.do("POST", "/fhir/Observation", contentTypeFHIR, obsJSON("59408-5", spo2Value))
	f.expect(r, 503)
	if strings.Contains(string(r.body), "stream down") {
		t.Errorf("internal detail leaked: %s", r.body)
	}
	// Not the sender's fault: nothing dead-lettered, nothing stored.
	if n := len(f.deadLetters()); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	if n, _ := f.store.CountSamples(context.Background(), store.Query{Patient: "id1"}); n != 0 {
		t.Errorf("%d samples stored", n)
	}
}

func TestObservationDurableNotYetVisible(t *testing.T) {
	f := withPatientDevice(t)
	f.commit.hold = true
	r := f.do("POST", "/fhir/Observation", contentTypeFHIR, obsJSON("59408-5", spo2Value))
	f.expect(r, 202)
	if r.header.Get("Location") != "" || f.commit.committed() != 1 {
		t.Errorf("202: Location %q, committed %d", r.header.Get("Location"), f.commit.committed())
	}
}

// bundleJSON wraps Observations as POST entries of a batch or transaction.
func bundleJSON(typ string, resources ...string) string {
	var entries []string
	for i, r := range resources {
		entries = append(entries, fmt.Sprintf(`{"fullUrl":"urn:uuid:00000000-0000-0000-0000-%012d","resource":%s,"request":{"method":"POST","url":"Observation"}}`, i, r))
	}
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
}

func entryStatuses(t *testing.T, r response) []string {
	t.Helper()
	var out []string
	for _, e := range r.json(t)["entry"].([]any) {
		out = append(out, e.(map[string]any)["response"].(map[string]any)["status"].(string))
	}
	return out
}

func TestTransaction(t *testing.T) {
	f := withPatientDevice(t)
	at := func(min int) string { return fmt.Sprintf("2026-11-23T11:%02d:00Z", min) }
	good := []string{
		obsJSON("59408-5", spo2Value, effective, at(1)),
		obsJSON("8867-4", `"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}`, effective, at(1)),
		obsJSON("85354-9", bpComponents, effective, at(1)),
	}
	bad := obsJSON("1234-5", spo2Value, effective, at(2))

	// One bad entry fails the whole transaction and stores nothing.
	r := f.do("POST", "/fhir", contentTypeFHIR, bundleJSON("transaction", good[0], bad, good[2]))
	f.expect(r, 422)
	if !strings.Contains(string(r.body), `"Bundle.entry[1].resource.code"`) {
		t.Errorf("outcome does not point at the entry: %s", r.body)
	}
	if f.commit.committed() != 0 || len(f.deadLetters()) != 1 {
		t.Fatalf("failed transaction: committed %d, dead letters %d", f.commit.committed(), len(f.deadLetters()))
	}

	r = f.do("POST", "/fhir", contentTypeFHIR, bundleJSON("transaction", good...))
	f.expect(r, 200)
	if got := entryStatuses(t, r); strings.Join(got, ",") != "201 Created,201 Created,201 Created" {
		t.Errorf("statuses = %v", got)
	}
	if r.json(t)["type"] != "transaction-response" || len(f.commit.calls) != 1 {
		t.Errorf("type %v, %d commit calls (want 1: all or nothing)", r.json(t)["type"], len(f.commit.calls))
	}
	// Retrying the same transaction stores nothing twice.
	r = f.do("POST", "/fhir/", contentTypeFHIR, bundleJSON("transaction", good...))
	f.expect(r, 200)
	if got := entryStatuses(t, r); strings.Join(got, ",") != "200 OK,200 OK,200 OK" || f.commit.committed() != 3 {
		t.Errorf("retry statuses = %v, committed %d", got, f.commit.committed())
	}

	// Two entries with one identity would silently collapse into one.
	f.expect(f.do("POST", "/fhir", contentTypeFHIR, bundleJSON("transaction", good[0], good[0])), 422)
}

func TestBatch(t *testing.T) {
	f := withPatientDevice(t)
	a := obsJSON("59408-5", spo2Value, effective, "2026-11-23T11:01:00Z")
	b := obsJSON("59408-5", spo2Value, effective, "2026-11-23T11:02:00Z")
	bad := obsJSON("59408-5", spo2Value, `"final"`, `"cancelled"`)
	r := f.do("POST", "/fhir", contentTypeFHIR, bundleJSON("batch", a, bad, b), "Prefer", "return=minimal")
	f.expect(r, 200)
	if got := entryStatuses(t, r); strings.Join(got, ",") != "201 Created,422 Unprocessable Entity,201 Created" {
		t.Errorf("statuses = %v\n%s", got, r.body)
	}
	if strings.Contains(string(r.body), `"valueQuantity"`) {
		t.Errorf("return=minimal returned resources: %s", r.body)
	}
	if !strings.Contains(string(r.body), `"Bundle.entry[1].resource.status"`) {
		t.Errorf("entry outcome does not point at the element: %s", r.body)
	}
	dls := f.deadLetters()
	if f.commit.committed() != 2 || len(dls) != 1 || !strings.Contains(dls[0].Reason, "1 of 3") {
		t.Errorf("committed %d, dead letters %+v", f.commit.committed(), dls)
	}
}

func TestBundleEnvelope(t *testing.T) {
	cases := []struct {
		name, body string
		status     int
	}{
		{"not a bundle", patientJSON, 400},
		{"searchset", `{"resourceType":"Bundle","type":"searchset"}`, 400},
		{"no request", `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Observation"}}]}`, 400},
		{"PUT", `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{},"request":{"method":"PUT","url":"Observation/x"}}]}`, 422},
		{"Patient", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{},"request":{"method":"POST","url":"Patient"}}]}`, 422},
		{"entry not an object", `{"resourceType":"Bundle","type":"batch","entry":[1]}`, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := withPatientDevice(t)
			f.expect(f.do("POST", "/fhir", contentTypeFHIR, c.body), c.status)
			if len(f.deadLetters()) != 1 {
				t.Errorf("refused Bundle not kept")
			}
		})
	}
	f := newFixture(t)
	r := f.do("GET", "/fhir", "", "")
	f.expect(r, 405)
	if r.header.Get("Allow") != "POST" {
		t.Errorf("Allow = %q", r.header.Get("Allow"))
	}
}

// FuzzDecodeBundle feeds hostile bytes to the Bundle and Observation
// decoders: they must never panic, and every refusal must be a client
// error the sender can act on, never a 5xx.
func FuzzDecodeBundle(f *testing.F) {
	f.Add([]byte(bundleJSON("transaction", obsJSON("59408-5", spo2Value), obsJSON("85354-9", bpComponents))))
	f.Add([]byte(bundleJSON("batch", obsJSON("8310-5", `"valueQuantity":{"value":1e308,"code":"[degF]"}`))))
	f.Add([]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"resource":null,"request":{"method":"POST","url":"Observation"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","component":[{}]},"request":{"method":"POST","url":"Observation"}}]}`))
	now := fixedNow
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(err error) {
			var fe *Error
			if err != nil && (!errors.As(err, &fe) || fe.Status < 400 || fe.Status >= 500) {
				t.Fatalf("refusal is not a 4xx *Error: %v", err)
			}
		}
		b, err := decodeBundle(body)
		check(err)
		if err != nil {
			return
		}
		for i, e := range b.Entry {
			in, err := parseObservation(e.Resource, fmt.Sprintf("Bundle.entry[%d].resource", i), now)
			check(err)
			if err == nil && !in.reading.Valid() {
				t.Fatalf("entry %d accepted with a non-finite or missing value: %+v", i, in.reading)
			}
		}
	})
}

func TestPreferAndMediaTypeOnPatient(t *testing.T) {
	f := newFixture(t)
	r := f.do("POST", "/fhir/Patient", contentTypeFHIR, patientJSON, "Prefer", "return=minimal")
	if r.status != 201 || len(r.body) != 0 || r.header.Get("ETag") != `W/"1"` || r.header.Get("Location") == "" {
		t.Errorf("return=minimal: %d ETag %q Location %q body %q", r.status, r.header.Get("ETag"), r.header.Get("Location"), r.body)
	}
	f.expect(f.do("POST", "/fhir/Patient", "application/fhir+xml", `<Patient xmlns="http://hl7.org/fhir"/>`), 415)
	r = f.do("PUT", "/fhir/Patient/id1", contentTypeFHIR, strings.Replace(patientJSON, `"id":"ignored"`, `"id":"id1"`, 1),
		"If-Match", `W/"1"`, "Prefer", "return=representation")
	f.expect(r, 200)
	if r.header.Get("ETag") != `W/"2"` || r.json(t)["id"] != "id1" {
		t.Errorf("update: ETag %q body %s", r.header.Get("ETag"), r.body)
	}
}
