package fhir

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

// The search dataset: benchPatients patients, each with the five vital
// signs below from one device, one reading a minute. TEND_BENCH_10M=1
// selects 20,000 minutes per series (10 M readings, about 14 days);
// otherwise 2,000 (1 M). Built once and cached in the temp dir.
const benchPatients = 100

var (
	benchCodes = []string{"8867-4", "59408-5", "9279-1", "8310-5", "29463-7"}
	benchUnits = []string{"/min", "%", "/min", "Cel", "kg"}
	benchBase  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func benchPerSeries() int {
	if os.Getenv("TEND_BENCH_10M") == "1" {
		return 20000
	}
	return 2000
}

func benchStore(b *testing.B) store.Store {
	perSeries := benchPerSeries()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("tend-fhir-bench-%d-%s.db", benchPatients*len(benchCodes)*perSeries, sqlite.SchemaHash()))
	if _, err := os.Stat(path); err != nil {
		tmp := path + ".building"
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(tmp + suffix)
		}
		st, err := sqlite.Open(tmp)
		if err != nil {
			b.Fatal(err)
		}
		started := time.Now()
		rng := rand.New(rand.NewPCG(1, 2))
		rs := make([]reading.Reading, perSeries)
		for p := range benchPatients {
			for c, code := range benchCodes {
				for i := range rs {
					at := benchBase.Add(time.Duration(i) * time.Minute)
					rs[i] = reading.Reading{Patient: fmt.Sprintf("p%03d", p), Device: fmt.Sprintf("d%03d", p), Code: code,
						Unit: benchUnits[c], Value: 36 + 10*rng.Float64(), HasValue: true, Time: at, Received: at, Source: "bench"}
				}
				if _, err := st.Append(b.Context(), rs); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		for _, suffix := range []string{"-wal", "-shm"} {
			os.Remove(tmp + suffix)
		}
		if err := os.Rename(tmp, path); err != nil {
			b.Fatal(err)
		}
		b.Logf("built %d-reading dataset in %v: %s", benchPatients*len(benchCodes)*perSeries, time.Since(started).Round(time.Second), path)
	}
	st, err := sqlite.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// latencies records one duration per iteration and reports percentiles.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	b.StopTimer()
	slices.Sort(l)
	pct := func(p float64) float64 {
		return float64(l[min(len(l)-1, int(p*float64(len(l))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

func benchHandler(st store.Store) http.Handler {
	return NewHandler(Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return benchBase }})
}

// BenchmarkObservationSearch is the search target: patient + code +
// a one-hour window, first page of 50 (of 60), through the handler: parse,
// count, query, render, encode.
func BenchmarkObservationSearch(b *testing.B) {
	st := benchStore(b)
	h := benchHandler(st)
	rng := rand.New(rand.NewPCG(3, 4))
	span := time.Duration(benchPerSeries())*time.Minute - time.Hour
	lat := make(latencies, 0, b.N)
	b.ResetTimer()
	for range b.N {
		from := benchBase.Add(time.Duration(rng.Int64N(int64(span))).Truncate(time.Second))
		target := fmt.Sprintf("/fhir/Observation?patient=p%03d&code=http://loinc.org|%s&date=ge%s&date=lt%s&_count=50",
			rng.IntN(benchPatients), benchCodes[rng.IntN(len(benchCodes))],
			from.Format(time.RFC3339), from.Add(time.Hour).Format(time.RFC3339))
		req := httptest.NewRequest("GET", target, nil)
		rec := httptest.NewRecorder()
		t := time.Now()
		h.ServeHTTP(rec, req)
		lat = append(lat, time.Since(t))
		if rec.Code != 200 || bytes.Count(rec.Body.Bytes(), []byte(`"mode": "match"`)) != 50 {
			b.Fatalf("%s: %d, want 50 matches:\n%.2000s", target, rec.Code, rec.Body)
		}
	}
	lat.report(b)
}

// BenchmarkLastN is $lastn for one patient (newest of each of five codes).
func BenchmarkLastN(b *testing.B) {
	st := benchStore(b)
	h := benchHandler(st)
	rng := rand.New(rand.NewPCG(5, 6))
	lat := make(latencies, 0, b.N)
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest("GET", fmt.Sprintf("/fhir/Observation/$lastn?patient=p%03d", rng.IntN(benchPatients)), nil)
		rec := httptest.NewRecorder()
		t := time.Now()
		h.ServeHTTP(rec, req)
		lat = append(lat, time.Since(t))
		if rec.Code != 200 || bytes.Count(rec.Body.Bytes(), []byte(`"mode": "match"`)) != len(benchCodes) {
			b.Fatalf("$lastn: %d, want %d matches:\n%.2000s", rec.Code, len(benchCodes), rec.Body)
		}
	}
	lat.report(b)
}
