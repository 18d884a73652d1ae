package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

const schemaPath = "../../../shared/testdata/fhir/fhir.schema.json"

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	got = append(bytes.TrimSpace(got), '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from golden file (go test -update to accept):\n got: %s\nwant: %s", name, got, want)
	}
}

// goldenResponses renders every golden case through the real handler and
// store with a fixed clock and ids.
func goldenResponses(t *testing.T) map[string][]byte {
	st := newStore(t)
	ctx := context.Background()
	n := 0
	h := NewHandler(Config{Store: st, Now: func() time.Time { return fixedNow },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewID:  func() string { n++; return "g" + string(rune('0'+n)) }})
	do := func(method, target, body string) []byte {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", contentTypeFHIR)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Body.Bytes()
	}
	out := map[string][]byte{}
	out["patient.json"] = do("POST", "/fhir/Patient", patientJSON)
	out["device.json"] = do("POST", "/fhir/Device", `{"resourceType":"Device","identifier":[{"system":"urn:tend:serial","value":"SN1"}],
	 "type":{"coding":[{"system":"urn:iso:std:iso:11073:10101","code":"528388","display":"MDC_DEV_ANALY_SAT_O2_MDS"}]},
	 "manufacturer":"Acme","modelNumber":"OX-1","deviceName":[{"name":"Pulse oximeter","type":"user-friendly-name"}],
	 "serialNumber":"SN1","patient":{"reference":"Patient/g1"}}`)
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 250_000_000, time.UTC)
	if _, err := st.Append(ctx, []reading.Reading{
		{Patient: "g1", Device: "g2", Code: "59408-5", MDC: "MDC_PULS_OXIM_SAT_O2", Value: 97, HasValue: true, Unit: "%", Time: t0, Received: t0.Add(time.Second), Source: "mqtt"},
		{Patient: "g1", Device: "g2", Code: "85354-9", Components: []reading.Component{
			{Code: "8480-6", Value: 120, Unit: "mm[Hg]"}, {Code: "8462-4", Value: 80, Unit: "mm[Hg]"}, {Code: "8478-0", Value: 93.3, Unit: "mm[Hg]"}},
			Unit: "mm[Hg]", Time: t0.Add(time.Minute), Received: t0.Add(time.Minute + time.Second), Source: "http"},
	}); err != nil {
		t.Fatal(err)
	}
	samples, err := st.Samples(ctx, store.Query{Patient: "g1", Oldest: true})
	if err != nil || len(samples) != 2 {
		t.Fatalf("samples = %v, %v", samples, err)
	}
	out["observation_single.json"] = do("GET", "/fhir/Observation/"+samples[0].ID, "")
	out["observation_bp.json"] = do("GET", "/fhir/Observation/"+samples[1].ID, "")
	out["bundle_searchset.json"] = do("GET", "/fhir/Observation?patient=g1&date=ge2026-11-23&_count=1&_offset=1&foo=bar", "")
	out["bundle_count.json"] = do("GET", "/fhir/Observation?patient=g1&_summary=count", "")
	out["capability.json"] = do("GET", "/fhir/metadata", "")
	out["outcome_invalid_json.json"] = do("POST", "/fhir/Patient", `{"resourceType":"Patient",`)
	out["outcome_unprocessable.json"] = do("POST", "/fhir/Device", `{"resourceType":"Device","patient":{"reference":"Patient/none"}}`)
	out["outcome_not_found.json"] = do("GET", "/fhir/Device/none", "")
	return out
}

func TestGolden(t *testing.T) {
	for name, body := range goldenResponses(t) {
		t.Run(name, func(t *testing.T) { checkGolden(t, name, body) })
	}
}

// TestGoldenSchema checks the golden files against the official R4 JSON
// schema: resourceType present, required elements present, and every element
// name known to the schema at every level.
func TestGoldenSchema(t *testing.T) {
	raw, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Skipf("FHIR schema not available (%v); skipping", err)
	}
	var schema struct {
		Definitions map[string]schemaDef `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	if len(files) < 8 {
		t.Fatalf("found %d golden files, want at least 8", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			for _, problem := range checkResource(schema.Definitions, v, filepath.Base(file)) {
				t.Error(problem)
			}
		})
	}
	// The checker itself must notice an unknown element, a missing required
	// one and a bogus resourceType, or the test above proves nothing.
	bad := map[string]any{"resourceType": "Observation", "status": "final", "bogus": 1,
		"subject": map[string]any{"reference": "Patient/x", "alsoBogus": true}}
	if got := checkResource(schema.Definitions, bad, "bad"); len(got) != 3 {
		t.Errorf("schema checker found %d problems in a bad resource, want 3: %v", len(got), got)
	}
	if got := checkResource(schema.Definitions, map[string]any{"resourceType": "Nope"}, "bad"); len(got) != 1 {
		t.Errorf("schema checker accepted resourceType Nope: %v", got)
	}
}

type schemaDef struct {
	Properties map[string]schemaProp `json:"properties"`
	Required   []string              `json:"required"`
}

type schemaProp struct {
	Ref   string `json:"$ref"`
	Items *struct {
		Ref string `json:"$ref"`
	} `json:"items"`
}

func checkResource(defs map[string]schemaDef, v map[string]any, path string) []string {
	rt, _ := v["resourceType"].(string)
	if _, ok := defs[rt]; !ok || rt == "" {
		return []string{fmt.Sprintf("%s: resourceType %q is not a FHIR resource", path, rt)}
	}
	return checkObject(defs, rt, v, path+"("+rt+")", 0)
}

func checkObject(defs map[string]schemaDef, defName string, v map[string]any, path string, depth int) (problems []string) {
	if defName == "ResourceList" {
		return checkResource(defs, v, path)
	}
	def, ok := defs[defName]
	if !ok || def.Properties == nil || depth > 12 {
		return nil
	}
	for _, req := range def.Required {
		if _, ok := v[req]; !ok {
			problems = append(problems, fmt.Sprintf("%s: required element %q missing", path, req))
		}
	}
	for k, val := range v {
		prop, ok := def.Properties[k]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: element %q is not in the schema for %s", path, k, defName))
			continue
		}
		ref := prop.Ref
		if prop.Items != nil {
			ref = prop.Items.Ref
		}
		ref = strings.TrimPrefix(ref, "#/definitions/")
		switch x := val.(type) {
		case map[string]any:
			problems = append(problems, checkObject(defs, ref, x, path+"."+k, depth+1)...)
		case []any:
			for _, item := range x {
				if m, ok := item.(map[string]any); ok {
					problems = append(problems, checkObject(defs, ref, m, path+"."+k, depth+1)...)
				}
			}
		}
	}
	return problems
}
