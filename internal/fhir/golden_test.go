package fhir

import (
	"bytes"
	"context"
	"flag"
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
		NewID:  func() string { n++; return "g" + string(rune('0'+n)) },
		Commit: &storeCommitter{store: st}})
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
	// Observations posted by a gateway, bound to g1 and g2 above.
	obs := func(code, value, when string) string {
		return strings.NewReplacer("Patient/id1", "Patient/g1", "Device/id2", "Device/g2", effective, when).Replace(obsJSON(code, value))
	}
	out["observation_created.json"] = do("POST", "/fhir/Observation", obs("8867-4",
		`"valueQuantity":{"value":72,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}`, "2026-11-23T11:00:00Z"))
	out["transaction_response.json"] = do("POST", "/fhir", bundleJSON("transaction",
		obs("59408-5", spo2Value, "2026-11-23T11:01:00Z"), obs("85354-9", bpComponents, "2026-11-23T11:01:00Z")))
	out["batch_response.json"] = do("POST", "/fhir", bundleJSON("batch",
		obs("59408-5", spo2Value, "2026-11-23T11:02:00Z"), obs("59408-5", spo2Value, "2026-11-23T23:02:00Z")))
	out["outcome_transaction_invalid.json"] = do("POST", "/fhir", bundleJSON("transaction",
		obs("59408-5", spo2Value, "2026-11-23T11:03:00Z"), obs("1234-5", spo2Value, "2026-11-23T11:03:00Z")))
	return out
}

func TestGolden(t *testing.T) {
	for name, body := range goldenResponses(t) {
		t.Run(name, func(t *testing.T) { checkGolden(t, name, body) })
	}
}
