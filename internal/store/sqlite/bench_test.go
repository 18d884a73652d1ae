package sqlite

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

func BenchmarkAppend(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batchSize, seriesCount = 1000, 500
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := make([]reading.Reading, batchSize)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			at := base.Add(time.Duration(i*batchSize+j) * time.Millisecond)
			batch[j] = reading.Reading{
				Patient: fmt.Sprintf("p%03d", j%seriesCount/5), Device: fmt.Sprintf("d%03d", j%seriesCount/5),
				Code: fmt.Sprintf("code-%d", j%5), Unit: "1", Value: float64(j), HasValue: true,
				Time: at, Received: at, Source: "bench",
			}
		}
		n, err := s.Append(b.Context(), batch)
		if err != nil {
			b.Fatal(err)
		}
		if n != batchSize {
			b.Fatalf("appended %d, want %d", n, batchSize)
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N*batchSize)/elapsed.Seconds(), "rows/s")
}

// The 10M dataset: 100 patients, 5 codes each from one device, one sample a
// minute for 20,000 minutes (about 14 days).
const (
	benchPatients = 100
	benchCodes    = 5
	benchPerSerie = 20000
)

var benchBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// benchDataset returns the path of the cached dataset, building it if the
// cache for this schema does not exist yet.
func benchDataset(b *testing.B) string {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("tend-bench10m-%s.db", SchemaHash()))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	// Build under another name and rename at the end, so an interrupted
	// build is never mistaken for a complete one.
	tmp := path + ".building"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	s, err := Open(tmp)
	if err != nil {
		b.Fatal(err)
	}
	started := time.Now()
	rs := make([]reading.Reading, benchPerSerie)
	rng := rand.New(rand.NewPCG(1, 2))
	for p := 0; p < benchPatients; p++ {
		for c := 0; c < benchCodes; c++ {
			for i := range rs {
				at := benchBase.Add(time.Duration(i) * time.Minute)
				rs[i] = reading.Reading{
					Patient: fmt.Sprintf("p%03d", p), Device: fmt.Sprintf("d%03d", p), Code: fmt.Sprintf("code-%d", c),
					Unit: "1", Value: 50 + 50*rng.Float64(), HasValue: true, Time: at, Received: at, Source: "bench",
				}
			}
			// One transaction per series.
			if _, err := s.Append(b.Context(), rs); err != nil {
				s.Close()
				b.Fatal(err)
			}
		}
	}
	if _, err := s.w.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d-row dataset in %v: %s", benchPatients*benchCodes*benchPerSerie, time.Since(started).Round(time.Second), path)
	return path
}

func BenchmarkSearch10M(b *testing.B) {
	if os.Getenv("TEND_BENCH_10M") != "1" {
		b.Skip("set TEND_BENCH_10M=1 to run: building the 10M-reading dataset takes minutes (it is cached in the temp dir afterwards)")
	}
	s, err := Open(benchDataset(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	span := benchPerSerie*time.Minute - time.Hour
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		from := benchBase.Add(time.Duration(rng.Int64N(int64(span))))
		q := store.Query{
			Patient: fmt.Sprintf("p%03d", rng.IntN(benchPatients)), Codes: []string{fmt.Sprintf("code-%d", rng.IntN(benchCodes))},
			From: from, To: from.Add(time.Hour), Limit: 100,
		}
		t := time.Now()
		got, err := s.Samples(b.Context(), q)
		lat = append(lat, time.Since(t))
		if err != nil {
			b.Fatal(err)
		}
		if len(got) < 59 || len(got) > 60 {
			b.Fatalf("window returned %d samples, want 59-60", len(got))
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

// The series index and the samples primary key must drive the window query;
// a full scan would still pass the functional tests but not scale.
func TestSamplesQueryPlan(t *testing.T) {
	s := openTemp(t)
	from, args := sampleFilter(store.Query{Patient: "p1", Codes: []string{"a"}, From: benchBase, To: benchBase.Add(time.Hour)})
	rows, err := s.r.QueryContext(t.Context(), `EXPLAIN QUERY PLAN SELECT `+sampleCols+from+` ORDER BY s.t DESC, s.series_id DESC LIMIT 100`, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	joined := strings.Join(plan, "\n")
	for _, want := range []string{"SEARCH se USING", "SEARCH s USING PRIMARY KEY (series_id=? AND t>? AND t<?)"} {
		if !strings.Contains(joined, want) {
			t.Errorf("query plan lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "SCAN s") {
		t.Errorf("query plan scans samples:\n%s", joined)
	}
}
