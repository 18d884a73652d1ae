package alarmdb

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarm/alarmtest"
)

func openTemp(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "alarms.db"))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	alarmtest.Run(t, func(t *testing.T) alarm.Store { return openTemp(t) })
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func TestReopenKeepsEverything(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "alarms.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a := alarm.Alarm{ID: "a1", Patient: "p1", State: alarm.Active, Rule: "r1", Raised: t0, Updated: t0, NextEscalation: t0}
	err = db.Update(ctx, func(tx alarm.Tx) error {
		if err := tx.PutAlarm(&a); err != nil {
			return err
		}
		if err := tx.AddChange(alarm.Change{Alarm: "a1", At: t0, Action: "raised", By: "system"}); err != nil {
			return err
		}
		if err := tx.Enqueue(alarm.Delivery{ID: "a1/1/w1", Alarm: "a1", Created: t0, Due: t0, Body: []byte("{}")}); err != nil {
			return err
		}
		return tx.SetCheckpoint(alarm.Checkpoint{Name: "eval", Applied: 7, Snapshot: []byte("snap"), SnapSeq: 6})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClaimDeliveries(ctx, t0, time.Hour, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.PutDoc(ctx, &alarm.Doc{Scope: "setting:ward", Kind: "rules", Body: []byte("[]"), At: t0}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutWebhook(ctx, alarm.Webhook{ID: "w1", URL: "https://x.example", Created: t0}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}

	db, err = Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	got, err := db.Alarm(ctx, "a1")
	if err != nil || got.Version != 1 || !got.Raised.Equal(t0) {
		t.Errorf("alarm after reopen = %+v, %v", got, err)
	}
	if h, err := db.History(ctx, "a1"); err != nil || len(h) != 1 {
		t.Errorf("history after reopen = %v, %v", h, err)
	}
	if cp, err := db.Checkpoint(ctx, "eval"); err != nil || cp.Applied != 7 || string(cp.Snapshot) != "snap" || cp.SnapSeq != 6 {
		t.Errorf("checkpoint after reopen = %+v, %v", cp, err)
	}
	if d, err := db.Doc(ctx, "setting:ward", "rules"); err != nil || d.Version != 1 {
		t.Errorf("doc after reopen = %+v, %v", d, err)
	}
	if w, err := db.Webhook(ctx, "w1"); err != nil || w.URL != "https://x.example" {
		t.Errorf("webhook after reopen = %+v, %v", w, err)
	}
	// Leases survive a restart: the delivery claimed before closing is
	// still leased, and is claimable once the lease ends.
	if c, err := db.ClaimDeliveries(ctx, t0.Add(time.Minute), time.Hour, 0); err != nil || len(c) != 0 {
		t.Errorf("claim during a lease taken before reopen = %v, %v", c, err)
	}
	if c, err := db.ClaimDeliveries(ctx, t0.Add(time.Hour), time.Hour, 0); err != nil || len(c) != 1 {
		t.Errorf("claim after the lease = %v, %v", c, err)
	}
	// A second episode of the same key is still refused after reopen.
	dup := alarm.Alarm{ID: "a2", Patient: "p1", State: alarm.Active, Rule: "r1", Raised: t0}
	err = db.Update(ctx, func(tx alarm.Tx) error { return tx.PutAlarm(&dup) })
	if !errors.Is(err, alarm.ErrConflict) {
		t.Errorf("duplicate open episode after reopen: %v, want ErrConflict", err)
	}
}

func TestPragmas(t *testing.T) {
	db := openTemp(t)
	ctx := t.Context()
	tests := []struct {
		conn   string
		pragma string
		want   string
	}{
		{"writer", "journal_mode", "wal"},
		{"writer", "synchronous", "2"}, // FULL
		{"writer", "query_only", "0"},
		{"writer", "busy_timeout", "5000"},
		{"reader", "synchronous", "2"},
		{"reader", "query_only", "1"},
		{"reader", "busy_timeout", "5000"},
	}
	for _, tc := range tests {
		conn := db.w
		if tc.conn == "reader" {
			conn = db.r
		}
		var got string
		if err := conn.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("%s %s: %v", tc.conn, tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("%s PRAGMA %s = %s, want %s", tc.conn, tc.pragma, got, tc.want)
		}
	}
	if _, err := db.r.ExecContext(ctx, `DELETE FROM webhooks`); err == nil {
		t.Errorf("reader pool accepted a write")
	}
	if got := db.w.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer pool allows %d connections, want 1", got)
	}
}

// TestQueryPlans checks that the hot queries use the indexes made for them
// rather than scanning a table that only grows.
func TestQueryPlans(t *testing.T) {
	db := openTemp(t)
	tests := []struct {
		name  string
		query string
		args  []any
		index string
	}{
		{"alarms of a patient", `SELECT id FROM alarms WHERE patient = ? ORDER BY raised DESC, id DESC LIMIT 50`, []any{"p1"}, "alarms_patient_raised"},
		{"alarms in a state", `SELECT id FROM alarms WHERE state IN (?, ?) ORDER BY raised DESC, id DESC`, []any{"active", "acknowledged"}, "alarms_state_raised"},
		{"open episode", `SELECT id FROM alarms WHERE patient = ? AND rule = ? AND subject = ? AND state <> 'resolved'`, []any{"p", "r", "s"}, "alarms_open_key"},
		{"due escalations", `SELECT id FROM alarms WHERE state = 'active' AND next_escalation <> 0 AND next_escalation <= ? ORDER BY next_escalation, raised, id`, []any{1}, "alarms_state_escalation"},
		{"history", `SELECT at FROM changes WHERE alarm = ? ORDER BY at, seq`, []any{"a"}, "changes_alarm_at"},
		{"claim", `SELECT id FROM deliveries WHERE state = 'pending' AND due <= ? AND claimed_until <= ? ORDER BY due, created, rowid LIMIT 10`, []any{1, 1}, "deliveries_state_due"},
		{"next due", `SELECT MIN(due) FROM deliveries WHERE state = 'pending'`, nil, "deliveries_state_due"},
		{"deliveries of an alarm", `SELECT id FROM deliveries WHERE alarm = ? ORDER BY created, rowid`, []any{"a"}, "deliveries_alarm_state"},
		{"count deliveries", `SELECT COUNT(*) FROM deliveries WHERE alarm = ? AND state = ?`, []any{"a", "pending"}, "deliveries_alarm_state"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := db.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+tc.query, tc.args...)
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
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(plan, "; ")
			if !strings.Contains(joined, tc.index) {
				t.Errorf("plan %q does not use %s", joined, tc.index)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite testdata/schema.golden")

// TestSchemaGolden pins the schema the migrations build, so a change to it
// (a dropped index, a changed constraint) shows up in review.
func TestSchemaGolden(t *testing.T) {
	db := openTemp(t)
	rows, err := db.r.QueryContext(t.Context(), `SELECT sql FROM sqlite_master
		WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type DESC, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var stmt string
		if err := rows.Scan(&stmt); err != nil {
			t.Fatal(err)
		}
		b.WriteString(stmt + ";\n\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "schema.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("schema differs from %s (run with -update if intended):\n%s", golden, got)
	}
}

func TestOpenRejects(t *testing.T) {
	for _, p := range []string{"", ":memory:"} {
		if _, err := Open(p); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
	path := filepath.Join(t.TempDir(), "alarms.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.Exec(`UPDATE schema_version SET version = 9999`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open on a newer schema: %v, want a 'newer' error", err)
	}
}

func TestOutOfRangeTimesAreRefused(t *testing.T) {
	db := openTemp(t)
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) // past int64 nanoseconds
	a := alarm.Alarm{ID: "a1", Patient: "p1", State: alarm.Active, Rule: "r1", Raised: far}
	if err := db.Update(t.Context(), func(tx alarm.Tx) error { return tx.PutAlarm(&a) }); err == nil {
		t.Errorf("PutAlarm accepted raised %v", far)
	}
	if _, err := db.ClaimDeliveries(t.Context(), far, time.Second, 1); err == nil {
		t.Errorf("ClaimDeliveries accepted now %v", far)
	}
	if _, err := db.ClaimDeliveries(t.Context(), t0, 0, 1); err == nil {
		t.Errorf("ClaimDeliveries accepted a zero lease")
	}
}

// A NaN value must not make the whole evaluator batch fail.
func TestPutAlarmKeepsFloatEdges(t *testing.T) {
	db := openTemp(t)
	tests := []float64{0, math.Copysign(0, -1), math.MaxFloat64, math.SmallestNonzeroFloat64, -273.15, math.Inf(1), math.Inf(-1), math.NaN()}
	for i, v := range tests {
		a := alarm.Alarm{ID: fmt.Sprintf("a%d", i), Patient: "p1", State: alarm.Resolved, Rule: "r1", Raised: t0, Value: v}
		if err := db.Update(t.Context(), func(tx alarm.Tx) error { return tx.PutAlarm(&a) }); err != nil {
			t.Fatalf("value %v: %v", v, err)
		}
		got, err := db.Alarm(t.Context(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Value != v && !(math.IsNaN(v) && math.IsNaN(got.Value)) {
			t.Errorf("value %v came back %v", v, got.Value)
		}
	}
}

func TestMigrationVersion(t *testing.T) {
	tests := []struct {
		name    string
		want    int
		wantErr bool
	}{
		{"0001_init.sql", 1, false},
		{"0012_outbox_index.sql", 12, false},
		{"init.sql", 0, true},
		{"0000_zero.sql", 0, true},
		{"-001_neg.sql", 0, true},
		{"+001_plus.sql", 0, true},
		{"0001_.sql", 0, true},
		{"0001_x.txt", 0, true},
		{"x001_init.sql", 0, true},
	}
	for _, tc := range tests {
		got, err := migrationVersion(tc.name)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("migrationVersion(%q) = %d, %v; want %d, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFS)
	if err != nil || len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("embedded migrations = %v, %v", ms, err)
	}
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    []int
		wantErr bool
	}{
		{"sorted by number", fstest.MapFS{
			"migrations/0010_b.sql": {Data: []byte("b")},
			"migrations/0002_a.sql": {Data: []byte("a")},
		}, []int{2, 10}, false},
		{"duplicate number", fstest.MapFS{
			"migrations/0002_a.sql": {Data: []byte("a")},
			"migrations/002_b.sql":  {Data: []byte("b")},
		}, nil, true},
		{"bad name", fstest.MapFS{"migrations/init.sql": {Data: []byte("a")}}, nil, true},
	}
	for _, tc := range tests {
		ms, err := loadMigrations(tc.files)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v, want error %v", tc.name, err, tc.wantErr)
			continue
		}
		var got []int
		for _, m := range ms {
			got = append(got, m.version)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: versions %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzMigrationVersion(f *testing.F) {
	for _, s := range []string{"0001_init.sql", "init.sql", "0_x.sql", "99999999999999999999_x.sql", "1_.sql"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v, err := migrationVersion(name)
		if err != nil {
			return
		}
		num, _, _ := strings.Cut(name, "_")
		if v <= 0 || fmt.Sprint(v) != strings.TrimLeft(num, "0") || !strings.HasSuffix(name, ".sql") {
			t.Fatalf("migrationVersion(%q) = %d, not the number it starts with", name, v)
		}
	})
}

// FuzzTimeAndSequenceCodec checks that every representable instant and
// every uint64 sequence survives the column encoding.
func FuzzTimeAndSequenceCodec(f *testing.F) {
	f.Add(int64(0), uint64(0))
	f.Add(t0.UnixNano(), uint64(1)<<63)
	f.Add(int64(-1), uint64(math.MaxUint64))
	f.Add(int64(math.MinInt64), uint64(1))
	f.Fuzz(func(t *testing.T, nanos int64, seq uint64) {
		if got := seqFromDB(seqToDB(seq)); got != seq {
			t.Fatalf("sequence %d came back %d", seq, got)
		}
		ts := time.Unix(0, nanos).In(time.FixedZone("x", 3600))
		if err := checkTimes(ts); err != nil {
			t.Fatalf("checkTimes(%v): %v", ts, err)
		}
		back := fromNanos(toNanos(ts))
		if nanos == 0 {
			// The unix epoch itself stands for "not set".
			if !back.IsZero() {
				t.Fatalf("epoch came back %v", back)
			}
			return
		}
		if !back.Equal(ts) || back.Location() != time.UTC {
			t.Fatalf("time %v came back %v", ts, back)
		}
	})
}
