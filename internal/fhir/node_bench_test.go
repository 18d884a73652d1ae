package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/node"
)

// BenchmarkTransaction100 posts transaction Bundles of 100 Observations to
// a running node over HTTP: validation, group commit into the embedded
// JetStream (fsync), the store writer, and the wait until all 100 are
// readable so the response carries their ids. Latency is per Bundle.
func BenchmarkTransaction100(b *testing.B) {
	const token = "fhir-bench-token-0123456789abcdef"
	n := node.New(node.Config{DataDir: b.TempDir(), HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "off",
		BootstrapToken: token, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		b.Fatalf("start node: %v", err)
	}
	defer n.Close()
	base := "http://" + n.Addrs().HTTP + "/fhir"
	post := func(path, body string) (int, []byte) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	id := func(status int, body []byte) string {
		var v struct{ ID string }
		if status != 201 || json.Unmarshal(body, &v) != nil {
			b.Fatalf("create: %d %s", status, body)
		}
		return v.ID
	}
	patient := id(post("/Patient", `{"resourceType":"Patient"}`))
	device := id(post("/Device", `{"resourceType":"Device","patient":{"reference":"Patient/`+patient+`"}}`))

	start := time.Now().UTC().Add(-300 * 24 * time.Hour).Truncate(time.Second)
	bundle := func(i int) string {
		var sb strings.Builder
		sb.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
		for k := range 100 {
			if k > 0 {
				sb.WriteByte(',')
			}
			at := start.Add(time.Duration(i*100+k) * time.Second).Format(time.RFC3339)
			fmt.Fprintf(&sb, `{"resource":{"resourceType":"Observation","status":"final",`+
				`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],`+
				`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s"},`+
				`"device":{"reference":"Device/%s"},"effectiveDateTime":"%s",`+
				`"valueQuantity":{"value":%d,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}},`+
				`"request":{"method":"POST","url":"Observation"}}`, patient, device, at, 60+k%40)
		}
		sb.WriteString(`]}`)
		return sb.String()
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		body := bundle(i)
		t := time.Now()
		status, out := post("", body)
		lat = append(lat, time.Since(t))
		if status != 200 || bytes.Count(out, []byte(`"201 Created"`)) != 100 {
			b.Fatalf("transaction %d: %d %.2000s", i, status, out)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
