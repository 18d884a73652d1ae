package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaPath is the official FHIR R4 JSON schema (draft-06). It is not
// copied into the repository; it sits beside it in ../shared.
const schemaPath = "../../../shared/testdata/fhir/fhir.schema.json"

var (
	schemaOnce sync.Once
	schemaRoot *jsonschema.Schema
	schemaErr  error
)

// fhirSchema compiles the official schema once; nil when it is absent.
func fhirSchema() (*jsonschema.Schema, error) {
	schemaOnce.Do(func() {
		f, err := os.Open(schemaPath)
		if err != nil {
			schemaErr = err
			return
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			schemaErr = fmt.Errorf("parse %s: %w", schemaPath, err)
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft6)
		const url = "http://hl7.org/fhir/json-schema/4.0"
		if err := c.AddResource(url, doc); err != nil {
			schemaErr = err
			return
		}
		schemaRoot, schemaErr = c.Compile(url)
	})
	return schemaRoot, schemaErr
}

// validateFHIR checks one response body against the schema. The root schema
// is a oneOf over every resource type keyed by resourceType, so this
// validates whatever resource the body is, including contained Bundle
// entries.
func validateFHIR(sch *jsonschema.Schema, body []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	m, ok := doc.(map[string]any)
	if !ok || m["resourceType"] == nil {
		return fmt.Errorf("not a FHIR resource: %.200s", body)
	}
	return sch.Validate(doc)
}

// schemaChecking wraps a handler under test so that every FHIR JSON body it
// writes is validated; the resource types seen are recorded in seen.
func schemaChecking(t *testing.T, h http.Handler, seen *sync.Map) http.Handler {
	sch, err := fhirSchema()
	if err != nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Header().Get("Content-Type") == contentTypeFHIR && len(bytes.TrimSpace(body)) > 0 {
			if err := validateFHIR(sch, body); err != nil {
				t.Errorf("%s %s: response does not validate against the FHIR R4 schema: %v\n%s", r.Method, r.URL, err, body)
			}
			if seen != nil {
				seen.Store(kindOf(body), true)
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
}

// kindOf names a body for coverage: its resourceType, and a Bundle's type.
func kindOf(body []byte) string {
	var v struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
	}
	json.Unmarshal(body, &v)
	if v.ResourceType == "Bundle" {
		return "Bundle/" + v.Type
	}
	return v.ResourceType
}

func requireSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := fhirSchema()
	if err != nil {
		t.Skipf("skipping: the FHIR R4 JSON schema is not available at %s (%v); CI checks it out beside the repository", schemaPath, err)
	}
	return sch
}

// TestSchemaCatchesErrors proves the validator is strict enough to matter:
// an unknown element, a missing required one, a wrong code and a bogus
// resourceType must all fail.
func TestSchemaCatchesErrors(t *testing.T) {
	sch := requireSchema(t)
	for name, body := range map[string]string{
		"unknown element":  `{"resourceType":"Observation","status":"final","code":{"text":"x"},"bogus":1}`,
		"missing required": `{"resourceType":"Observation","status":"final"}`,
		"bad code":         `{"resourceType":"Observation","status":"done","code":{"text":"x"}}`,
		"nested unknown":   `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/x","alsoBogus":true}}`,
		"bogus type":       `{"resourceType":"Nope"}`,
		"bad bundle entry": `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Observation","status":"final"}}]}`,
	} {
		if validateFHIR(sch, []byte(body)) == nil {
			t.Errorf("%s: schema accepted %s", name, body)
		}
	}
	if err := validateFHIR(sch, []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`)); err != nil {
		t.Errorf("schema refused a minimal valid Observation: %v", err)
	}
}

// TestGoldenSchema validates every golden file.
func TestGoldenSchema(t *testing.T) {
	sch := requireSchema(t)
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
			if err := validateFHIR(sch, b); err != nil {
				t.Errorf("%v\n%s", err, b)
			}
		})
	}
}

// TestOutputSchema validates every kind of body the package emits, rendered
// live, and fails if a kind is missing from the cases so that a new resource
// or Bundle type cannot slip by unvalidated.
func TestOutputSchema(t *testing.T) {
	sch := requireSchema(t)
	seen := map[string]bool{}
	for name, body := range goldenResponses(t) {
		if err := validateFHIR(sch, body); err != nil {
			t.Errorf("%s: %v\n%s", name, err, body)
		}
		seen[kindOf(body)] = true
	}
	for _, want := range emittedKinds {
		if !seen[want] {
			t.Errorf("no validated example of %s; add one to goldenResponses", want)
		}
	}
}

// emittedKinds is every resource type and Bundle type the package writes.
var emittedKinds = []string{
	"Patient", "Device", "Observation", "OperationOutcome", "CapabilityStatement",
	"Bundle/searchset", "Bundle/transaction-response", "Bundle/batch-response",
}
