package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/storetest"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func hr(patient, device string, at time.Time, v float64) reading.Reading {
	return reading.Reading{Patient: patient, Device: device, Code: "8867-4", Unit: "/min", Value: v, HasValue: true, Time: at, Source: "test"}
}

func TestReopenKeepsDataAndSeries(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tend.db")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Append(ctx, []reading.Reading{hr("p1", "d1", t0, 60), hr("p2", "d1", t0, 61)}); err != nil || n != 2 {
		t.Fatalf("append = %d, %v", n, err)
	}
	if err := s.CreatePatient(ctx, &store.Patient{ID: "p1"}); err != nil {
		t.Fatal(err)
	}
	before, err := s.Samples(ctx, store.Query{Patient: "p1"})
	if err != nil || len(before) != 1 {
		t.Fatalf("samples = %v, %v", before, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if _, err := s.Patient(ctx, "p1"); err != nil {
		t.Fatalf("patient lost on reopen: %v", err)
	}
	// A redelivery after restart is still a duplicate, and new readings of
	// the same series land in the same series (same id prefix).
	n, err := s.Append(ctx, []reading.Reading{hr("p1", "d1", t0, 60), hr("p1", "d1", t0.Add(time.Second), 62)})
	if err != nil || n != 1 {
		t.Fatalf("append after reopen = %d, %v; want 1 new", n, err)
	}
	after, err := s.Samples(ctx, store.Query{Patient: "p1"})
	if err != nil || len(after) != 2 {
		t.Fatalf("samples after reopen = %v, %v", after, err)
	}
	prefix := func(id string) string { p, _, _ := strings.Cut(id, "-"); return p }
	if prefix(after[0].ID) != prefix(before[0].ID) || after[1].ID != before[0].ID {
		t.Fatalf("ids after reopen %q %q, before %q", after[0].ID, after[1].ID, before[0].ID)
	}
	var series int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM series`).Scan(&series); err != nil || series != 2 {
		t.Fatalf("series rows = %d, %v; want 2", series, err)
	}
}

func TestPragmas(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	tests := []struct {
		db     string
		pragma string
		want   string
	}{
		{"writer", "journal_mode", "wal"},
		{"writer", "synchronous", "2"}, // FULL
		{"writer", "foreign_keys", "1"},
		{"writer", "query_only", "0"},
		{"reader", "synchronous", "2"},
		{"reader", "foreign_keys", "1"},
		{"reader", "query_only", "1"},
		{"reader", "busy_timeout", "5000"},
	}
	for _, tc := range tests {
		db := s.w
		if tc.db == "reader" {
			db = s.r
		}
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("%s %s: %v", tc.db, tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("%s PRAGMA %s = %s, want %s", tc.db, tc.pragma, got, tc.want)
		}
	}
	if _, err := s.r.ExecContext(ctx, `DELETE FROM samples`); err == nil {
		t.Errorf("reader pool accepted a write")
	}
}

func TestOpenRejectsMemoryAndNewerSchema(t *testing.T) {
	for _, p := range []string{"", ":memory:"} {
		if _, err := Open(p); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
	path := filepath.Join(t.TempDir(), "tend.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.Exec(`UPDATE schema_version SET version = 9999`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

func TestAppendRejectsMalformedBatch(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	good := hr("p1", "d1", t0, 60)
	mod := func(f func(r *reading.Reading)) reading.Reading {
		r := good
		r.Time = t0.Add(time.Hour)
		f(&r)
		return r
	}
	tests := []struct {
		name string
		bad  reading.Reading
	}{
		{"no patient", mod(func(r *reading.Reading) { r.Patient = "" })},
		{"no code", mod(func(r *reading.Reading) { r.Code = "" })},
		{"zero time", mod(func(r *reading.Reading) { r.Time = time.Time{} })},
		{"time out of range", mod(func(r *reading.Reading) { r.Time = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"NaN", mod(func(r *reading.Reading) { r.Value = math.NaN() })},
		{"Inf component", mod(func(r *reading.Reading) {
			r.HasValue = false
			r.Components = []reading.Component{{Code: "x", Value: math.Inf(1)}}
		})},
		{"no value at all", mod(func(r *reading.Reading) { r.HasValue = false })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := s.Append(ctx, []reading.Reading{good, tc.bad})
			if err == nil || n != 0 {
				t.Fatalf("Append = %d, %v; want an error", n, err)
			}
			c, err := s.CountSamples(ctx, store.Query{Patient: "p1"})
			if err != nil || c != 0 {
				t.Fatalf("a rejected batch stored %d samples (%v)", c, err)
			}
		})
	}
}

func TestCancelledAppendLeavesNoStaleSeries(t *testing.T) {
	s := openTemp(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.Append(ctx, []reading.Reading{hr("p1", "d1", t0, 60)}); err == nil {
		t.Fatal("append with a cancelled context succeeded")
	}
	if len(s.series) != 0 {
		t.Fatalf("series cache holds %d uncommitted entries", len(s.series))
	}
}

func TestClockIsInjected(t *testing.T) {
	fixed := time.Date(2030, 6, 7, 8, 9, 10, 11, time.FixedZone("x", 3600))
	s, err := Open(filepath.Join(t.TempDir(), "tend.db"), WithClock(func() time.Time { return fixed }), WithReaders(2))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := &store.Patient{ID: "p1"}
	if err := s.CreatePatient(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	got, err := s.Patient(t.Context(), "p1")
	if err != nil || !got.Updated.Equal(fixed) || !p.Updated.Equal(fixed) || got.Updated.Location() != time.UTC {
		t.Fatalf("updated = %v (returned %v), want %v in UTC (%v)", got.Updated, p.Updated, fixed, err)
	}
	d := &store.DeadLetter{Source: "http", Reason: "bad"}
	if err := s.AddDeadLetter(t.Context(), d); err != nil || !d.Received.Equal(fixed) {
		t.Fatalf("dead letter received = %v, %v", d.Received, err)
	}
}

func TestUseAfterCloseFailsCleanly(t *testing.T) {
	s := openTemp(t)
	s.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.Append(t.Context(), []reading.Reading{hr("p1", "d1", t0, 60)}); err == nil {
		t.Error("Append after Close succeeded")
	}
	if _, err := s.Samples(t.Context(), store.Query{Patient: "p1"}); err == nil {
		t.Error("Samples after Close succeeded")
	}
}

func TestSampleErrorsWrapNotFound(t *testing.T) {
	s := openTemp(t)
	_, err := s.Sample(t.Context(), "1-1")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "we?ird #dir%20")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tend.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if err := s.CreatePatient(t.Context(), &store.Patient{ID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
}

// The schema golden file documents the tables a migration produces and
// makes any schema change a deliberate, reviewed diff.
func TestSchemaGolden(t *testing.T) {
	s := openTemp(t)
	rows, err := s.r.QueryContext(t.Context(), `SELECT type, name, COALESCE(sql, '') FROM sqlite_schema
		WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var typ, name, sql string
		if err := rows.Scan(&typ, &name, &sql); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "-- %s %s\n%s;\n\n", typ, name, sql)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var version int
	if err := s.r.QueryRowContext(t.Context(), `SELECT version FROM schema_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "-- schema_version %d\n", version)
	path := filepath.Join("testdata", "schema.golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Fatalf("schema changed (-golden +got):\n%s", diff)
	}
}

func TestUserLookup(t *testing.T) {
	s := openTemp(t)
	u := store.User{ID: "ada", Name: "Ada L.", Role: store.RoleAdmin, Org: store.DefaultOrg, PasswordHash: "$argon2id$v=19$x", Created: time.Date(2026, 1, 1, 0, 0, 0, 5, time.UTC)}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	got, err := s.User(t.Context(), "ada")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(u, got); diff != "" {
		t.Fatalf("user (-want +got):\n%s", diff)
	}
	if _, err := s.User(t.Context(), "Ada L."); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lookup by display name: err = %v, want ErrNotFound", err)
	}
}
