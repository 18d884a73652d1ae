package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/postgres/pgtest"
	"github.com/tendhealth/tend/internal/store/storetest"
)

// testSchema is a fresh schema for one test (see pgtest.Schema).
func testSchema(t testing.TB) string { return pgtest.Schema(t, Redact) }

// fixedNow is the clock of stores under test, far from the weeks the tests
// write to so the partitions Open creates are easy to tell apart.
var fixedNow = time.Date(2030, 6, 5, 12, 0, 0, 0, time.UTC)

func openAt(t testing.TB, connURL string) *Store {
	t.Helper()
	s, err := Open(t.Context(), connURL, WithClock(func() time.Time { return fixedNow }))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTest(t testing.TB) *Store {
	t.Helper()
	return openAt(t, testSchema(t))
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t) })
}

func hr(patient, device string, at time.Time, v float64) reading.Reading {
	return reading.Reading{Patient: patient, Device: device, Code: "8867-4", Unit: "/min", Value: v, HasValue: true, Time: at, Source: "test"}
}

// partitionNames lists the samples partitions of the store's schema.
func partitionNames(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.pool.Query(t.Context(), `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'samples'::regclass ORDER BY c.relname`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// Monday 2026-01-05 00:00 UTC starts a partition week.
var monday = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

func TestPartitionsCreatedPerWeek(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ns := time.Nanosecond
	var batch []reading.Reading
	for i, at := range []time.Time{
		monday.Add(-ns),                         // last instant of the week of Dec 29
		monday,                                  // first instant of the week of Jan 5
		monday.Add(3 * 24 * time.Hour),          // same week
		monday.Add(14*24*time.Hour + time.Hour), // week of Jan 19; Jan 12 stays empty
	} {
		batch = append(batch, hr("p1", "d1", at, float64(60+i)))
	}
	if n, err := s.Append(t.Context(), batch); err != nil || n != len(batch) {
		t.Fatalf("append = %d, %v", n, err)
	}
	want := []string{"samples_20251229", "samples_20260105", "samples_20260119", "samples_20300603", "samples_20300610"}
	if got := partitionNames(t, s); !slices.Equal(got, want) {
		t.Fatalf("partitions = %v, want %v", got, want)
	}
	// Each reading sits in the partition of its week.
	var inWeek int
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM samples_20260105`).Scan(&inWeek); err != nil {
		t.Fatal(err)
	}
	if inWeek != 2 {
		t.Fatalf("week of Jan 5 holds %d samples, want 2", inWeek)
	}
}

func TestDropPartitionsBefore(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	s := openAt(t, connURL)
	other := openAt(t, connURL) // a second node sharing the database
	ctx := t.Context()
	weeks := []time.Time{monday, monday.AddDate(0, 0, 7), monday.AddDate(0, 0, 14)}
	for _, w := range weeks {
		if _, err := s.Append(ctx, []reading.Reading{hr("p1", "d1", w.Add(time.Hour), 60), hr("p1", "d1", w.Add(50*time.Hour), 61)}); err != nil {
			t.Fatal(err)
		}
	}
	// The other node learns of the first week's partition.
	if _, err := other.Append(ctx, []reading.Reading{hr("p2", "d2", weeks[0].Add(time.Hour), 70)}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		before  time.Time
		dropped int
		left    int // samples of p1 left
	}{
		{"before every week", weeks[0], 0, 6},
		{"inside the first week keeps it", weeks[0].Add(3 * 24 * time.Hour), 0, 6},
		{"end of the second week", weeks[2], 2, 2},
		{"again", weeks[2], 0, 2},
	}
	for _, tc := range tests {
		n, err := s.DropPartitionsBefore(ctx, tc.before)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n != tc.dropped {
			t.Fatalf("%s: dropped %d partitions, want %d", tc.name, n, tc.dropped)
		}
		left, err := s.CountSamples(ctx, store.Query{Patient: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		if left != tc.left {
			t.Fatalf("%s: %d samples left, want %d", tc.name, left, tc.left)
		}
	}
	got, err := s.Samples(ctx, store.Query{Patient: "p1", Oldest: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Time.Before(weeks[2]) {
		t.Fatalf("kept the wrong samples: %+v", got)
	}
	if want := []string{"samples_20260119", "samples_20300603", "samples_20300610"}; !slices.Equal(partitionNames(t, s), want) {
		t.Fatalf("partitions = %v, want %v", partitionNames(t, s), want)
	}

	// Both nodes can write into a dropped week again: this one forgot its
	// cache, the other finds out from the failed insert.
	if n, err := s.Append(ctx, []reading.Reading{hr("p1", "d1", weeks[0].Add(time.Hour), 60)}); err != nil || n != 1 {
		t.Fatalf("append into dropped week = %d, %v", n, err)
	}
	if _, err := s.DropPartitionsBefore(ctx, weeks[2]); err != nil {
		t.Fatal(err)
	}
	big := make([]reading.Reading, copyThreshold)
	for i := range big {
		big[i] = hr("p2", "d2", weeks[0].Add(time.Duration(i)*time.Minute), 70)
	}
	for _, batch := range [][]reading.Reading{big[:1], big} {
		if _, err := s.DropPartitionsBefore(ctx, weeks[2]); err != nil {
			t.Fatal(err)
		}
		if n, err := other.Append(ctx, batch); err != nil || n != len(batch) {
			t.Fatalf("append of %d readings by a node with a stale partition cache = %d, %v", len(batch), n, err)
		}
	}
}

func TestConcurrentAppendIntoNewWeek(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	const nodes = 4
	stores := make([]*Store, nodes)
	for i := range stores {
		stores[i] = openAt(t, connURL)
	}
	week := monday.AddDate(0, 0, 70)
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	added := make([]int, nodes)
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Alternate small and COPY-sized batches; the readings
			// overlap fully, so exactly one node stores each.
			n := 1
			if i%2 == 1 {
				n = copyThreshold * 2
			}
			batch := make([]reading.Reading, n)
			for j := range batch {
				batch[j] = hr("p1", "d1", week.Add(time.Duration(j)*time.Second), float64(j))
			}
			<-start
			added[i], errs[i] = s.Append(t.Context(), batch)
		}()
	}
	close(start)
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		total += added[i]
	}
	if total != copyThreshold*2 {
		t.Fatalf("nodes reported %d new readings, want %d", total, copyThreshold*2)
	}
	n, err := stores[0].CountSamples(t.Context(), store.Query{Patient: "p1"})
	if err != nil || n != copyThreshold*2 {
		t.Fatalf("stored %d, %v; want %d", n, err, copyThreshold*2)
	}
	if got := partitionNames(t, stores[0]); !slices.Contains(got, partitionName(weekOf(week))) {
		t.Fatalf("partitions %v lack the new week", got)
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	ctx := t.Context()
	s := openAt(t, connURL)
	if err := s.CreatePatient(ctx, &store.Patient{ID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, []reading.Reading{hr("p1", "d1", monday, 60)}); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, connURL); err != nil {
		t.Fatalf("migrate an up-to-date schema: %v", err)
	}
	// Several nodes opening at once all succeed and see the data.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			again, err := Open(ctx, connURL)
			if err != nil {
				errs <- err
				return
			}
			defer again.Close()
			if _, err := again.Patient(ctx, "p1"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("second open: %v", err)
	}
	var applied int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("migrations", "*.sql"))
	if applied != len(files) {
		t.Fatalf("%d migrations recorded, want %d (one per file)", applied, len(files))
	}
	if n, err := s.CountSamples(ctx, store.Query{Patient: "p1"}); err != nil || n != 1 {
		t.Fatalf("samples after reopen = %d, %v", n, err)
	}
}

func TestMigrateFreshSchemaInParallel(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Migrate(t.Context(), connURL); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent migrate: %v", err)
	}
}

// A lookup by id reads one partition, whatever the number of weeks stored.
func TestSampleByIDPrunesPartitions(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := t.Context()
	var batch []reading.Reading
	for i := range 6 {
		batch = append(batch, hr("p1", "d1", monday.AddDate(0, 0, 7*i), 60))
	}
	if _, err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.Samples(ctx, store.Query{Patient: "p1", Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("samples = %v, %v", got, err)
	}
	series, ts, err := store.ParseObservationID(got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.pool.Query(ctx, `EXPLAIN SELECT `+sampleCols+sampleJoin+` WHERE se.id = $1 AND s.series_id = $1 AND s.t = $2::bigint`, series, ts)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	scanned := strings.Count(plan, " on samples_")
	if want := " on " + partitionName(weekOf(got[0].Time)); scanned != 1 || !strings.Contains(plan, want) {
		t.Fatalf("plan should read only %q:\n%s", strings.TrimPrefix(want, " on "), plan)
	}
}

func TestErrorsHidePassword(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-pw"
	for _, connURL := range []string{
		"postgres://tend:" + secret + "@127.0.0.1:0/test?sslmode=disable&connect_timeout=2",
		"postgres://tend@127.0.0.1:0/test?sslmode=disable&connect_timeout=2&password=" + secret,
		"postgres://tend:" + secret + "@127.0.0.1:0/test?sslmode=bogus",
		"host=127.0.0.1 port=0 user=tend password=" + secret + " sslmode=disable connect_timeout=2",
	} {
		_, err := Open(t.Context(), connURL)
		if err == nil {
			t.Fatalf("open of an unreachable server succeeded")
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error reveals the password: %v", err)
		}
		if err := Migrate(t.Context(), connURL); err == nil || strings.Contains(err.Error(), secret) {
			t.Fatalf("migrate error = %v; want an error without the password", err)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://tend:pw@db:5432/tend?sslmode=require", "postgres://tend:xxxxx@db:5432/tend?sslmode=require"},
		{"postgres://tend@db/tend", "postgres://tend@db/tend"},
		{"postgres://db/tend?password=pw&sslmode=disable", "postgres://db/tend?password=xxxxx&sslmode=disable"},
		{"host=db password=pw", "(connection string)"},
		{"", "(connection string)"},
	}
	for _, tc := range tests {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAppendRefusesWholeBatch(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	good := hr("p1", "d1", monday, 60)
	bad := []reading.Reading{
		{Device: "d1", Code: "8867-4", Time: monday, Value: 1, HasValue: true},
		{Patient: "p1", Device: "d1", Time: monday, Value: 1, HasValue: true},
		{Patient: "p1", Device: "d1", Code: "8867-4", Value: 1, HasValue: true},
		{Patient: "p1", Device: "d1", Code: "8867-4", Time: monday},
	}
	for i, b := range bad {
		if _, err := s.Append(t.Context(), []reading.Reading{good, b}); err == nil {
			t.Errorf("bad reading %d accepted", i)
		}
	}
	if n, err := s.CountSamples(t.Context(), store.Query{Patient: "p1"}); err != nil || n != 0 {
		t.Fatalf("refused batches stored %d samples, %v", n, err)
	}
}

// Large batches go through COPY; their dedup must match the small path's.
func TestAppendLargeBatchDedup(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := t.Context()
	batch := make([]reading.Reading, 0, 3*copyThreshold)
	for i := range 2 * copyThreshold {
		r := hr("p1", fmt.Sprintf("d%d", i%3), monday.Add(time.Duration(i/3)*time.Second), float64(i))
		r.Source = "first"
		batch = append(batch, r)
	}
	// Redeliveries inside the same batch lose to the first delivery.
	for i := range copyThreshold {
		r := batch[i]
		r.Source = "second"
		batch = append(batch, r)
	}
	n, err := s.Append(ctx, batch)
	if err != nil || n != 2*copyThreshold {
		t.Fatalf("append = %d, %v; want %d", n, err, 2*copyThreshold)
	}
	n, err = s.Append(ctx, batch)
	if err != nil || n != 0 {
		t.Fatalf("append again = %d, %v; want 0", n, err)
	}
	got, err := s.Samples(ctx, store.Query{Patient: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, smp := range got {
		if smp.Source != "first" {
			t.Fatalf("a redelivery replaced the first delivery: %+v", smp)
		}
	}
}

func TestCancelledAppendLeavesNothing(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	batch := make([]reading.Reading, copyThreshold)
	for i := range batch {
		batch[i] = hr("p1", "d1", fixedNow.Add(time.Duration(i)*time.Second), 60)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Append(ctx, batch); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a cancelled context: %v", err)
	}
	if n, err := s.CountSamples(t.Context(), store.Query{Patient: "p1"}); err != nil || n != 0 {
		t.Fatalf("cancelled append stored %d, %v", n, err)
	}
}

// BenchmarkAppend matches the embedded store's: 1000-reading batches over
// 500 series.
func BenchmarkAppend(b *testing.B) {
	s := openTest(b)
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

// The ends of the storable time range land in partitions reaching to
// MINVALUE and MAXVALUE, which retention understands; panel values survive
// jsonb to the bit.
func TestExtremes(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := t.Context()
	earliest, latest := time.Unix(0, math.MinInt64+1).UTC(), time.Unix(0, math.MaxInt64).UTC()
	panel := reading.Reading{Patient: "p1", Device: "cuff", Code: "85354-9", Unit: "mm[Hg]", Time: monday, Source: "test", Components: bpComponents}
	batch := []reading.Reading{hr("p1", "d1", earliest, 1), hr("p1", "d1", latest, 2), panel}
	if n, err := s.Append(ctx, batch); err != nil || n != 3 {
		t.Fatalf("append = %d, %v", n, err)
	}
	got, err := s.Samples(ctx, store.Query{Patient: "p1", Codes: []string{"85354-9"}})
	if err != nil || len(got) != 1 {
		t.Fatalf("samples = %v, %v", got, err)
	}
	if diff := cmp.Diff(bpComponents, got[0].Components, cmp.Comparer(func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) })); diff != "" {
		t.Fatalf("components (-want +got):\n%s", diff)
	}
	n, err := s.DropPartitionsBefore(ctx, monday)
	if err != nil || n != 1 {
		t.Fatalf("DropPartitionsBefore = %d, %v; want the MINVALUE week dropped", n, err)
	}
	n, err = s.DropPartitionsBefore(ctx, latest)
	if err != nil {
		t.Fatal(err)
	}
	left, err := s.Samples(ctx, store.Query{Patient: "p1"})
	if err != nil || len(left) != 1 || !left[0].Time.Equal(latest) {
		t.Fatalf("after dropping everything before the end of time (%d partitions): %v, %v", n, left, err)
	}
}
