package pgalarm

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarm/alarmtest"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store/postgres"
	"github.com/tendhealth/tend/internal/store/postgres/pgtest"
)

// testSchema is a fresh schema for one test (see pgtest.Schema).
func testSchema(t testing.TB) string { return pgtest.Schema(t, postgres.Redact) }

func openAt(t testing.TB, connURL string) *DB {
	t.Helper()
	db, err := Open(t.Context(), connURL)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openTest(t testing.TB) *DB {
	t.Helper()
	return openAt(t, testSchema(t))
}

func TestConformance(t *testing.T) {
	alarmtest.Run(t, func(t *testing.T) alarm.Store { return openTest(t) })
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func newAlarm(id, patient string) alarm.Alarm {
	return alarm.Alarm{
		ID: id, Patient: patient, State: alarm.Active, Priority: rules.PriorityHigh, Kind: rules.CategoryClinical,
		Rule: "r1", RuleKind: rules.KindThreshold, Name: "SpO2 low", Raised: t0, Updated: t0, Condition: true,
		Value: 84, Unit: "%", Message: "SpO2 84 % < 85 %",
	}
}

// Two nodes sharing the schema claim the same outbox concurrently: every
// delivery is leased exactly once.
func TestClaimAcrossNodes(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	nodes := []*DB{openAt(t, connURL), openAt(t, connURL)}
	ctx := t.Context()
	const total = 300
	err := nodes[0].Update(ctx, func(tx alarm.Tx) error {
		for i := range total {
			d := alarm.Delivery{ID: fmt.Sprintf("d%03d", i), Alarm: "a1", Event: "alarm.raised", Recipient: "webhook:w1",
				Body: []byte("{}"), Created: t0, Due: t0.Add(time.Duration(i%7) * time.Millisecond)}
			if err := tx.Enqueue(d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, round := range []struct {
		name string
		now  time.Time
	}{
		{"first lease", t0.Add(time.Second)},
		{"after the lease", t0.Add(time.Hour)},
	} {
		var (
			mu      sync.Mutex
			claimed = map[string]int{}
			wg      sync.WaitGroup
			errs    = make(chan error, 8)
		)
		for w := range 8 {
			node := nodes[w%2]
			wg.Go(func() {
				for {
					got, err := node.ClaimDeliveries(ctx, round.now, time.Minute, 7)
					if err != nil {
						errs <- err
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, d := range got {
						claimed[d.ID]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s: claim: %v", round.name, err)
		}
		if len(claimed) != total {
			t.Errorf("%s: %d deliveries claimed, want %d", round.name, len(claimed), total)
		}
		for id, n := range claimed {
			if n != 1 {
				t.Errorf("%s: delivery %s claimed %d times", round.name, id, n)
			}
		}
	}
}

// errFoundOpen: a node looked after another had committed the episode.
var errFoundOpen = errors.New("episode already open")

// Two nodes raising the same episode at once: one wins, each other one
// either finds it open or gets ErrConflict, and exactly one episode is open.
func TestOneOpenEpisodeAcrossNodes(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	nodes := []*DB{openAt(t, connURL), openAt(t, connURL), openAt(t, connURL)}
	ctx := t.Context()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  int
		errs []error
	)
	for i, node := range nodes {
		wg.Go(func() {
			a := newAlarm(fmt.Sprintf("a%d", i), "p1")
			err := node.Update(ctx, func(tx alarm.Tx) error {
				_, ok, err := tx.OpenAlarm("p1", "r1", "")
				if err != nil {
					return err
				}
				if ok {
					return errFoundOpen
				}
				return tx.PutAlarm(&a)
			})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won++
				return
			}
			errs = append(errs, err)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, alarm.ErrConflict) && !errors.Is(err, errFoundOpen) {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d nodes raised the episode, want 1 (others: %v)", won, errs)
	}
	open, err := nodes[0].Alarms(ctx, alarm.Filter{Patient: "p1", States: []alarm.State{alarm.Active}})
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 {
		t.Errorf("%d open episodes, want 1", len(open))
	}
}

// waitUntilBlocking polls until another backend waits on a lock held by
// backend pid; no clock can stand in for the server's lock manager.
func waitUntilBlocking(t *testing.T, db *DB, pid int32) {
	t.Helper()
	// A bounded wait turns a writer that never blocks into a failure, not a hang.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		var n int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, pid).Scan(&n); err != nil {
			t.Errorf("poll blocked backends: %v", err)
			return
		}
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A node inserting an episode whose key another node's transaction has just
// inserted waits for that transaction, then gets ErrConflict once it commits.
func TestConcurrentInsertIsConflict(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	first, second := openAt(t, connURL), openAt(t, connURL)
	ctx := t.Context()
	a, b := newAlarm("a", "p1"), newAlarm("b", "p1")
	inserted := make(chan int32)
	secondErr := make(chan error, 1)
	go func() {
		pid := <-inserted
		go func() { secondErr <- second.Update(ctx, func(tx alarm.Tx) error { return tx.PutAlarm(&b) }) }()
		waitUntilBlocking(t, first, pid)
		close(inserted)
	}()
	err := first.Update(ctx, func(atx alarm.Tx) error {
		if err := atx.PutAlarm(&a); err != nil {
			return err
		}
		var pid int32
		if err := atx.(*tx).q.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		inserted <- pid
		<-inserted // the second node is now waiting on this transaction
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-secondErr; !errors.Is(err, alarm.ErrConflict) {
		t.Fatalf("second node's insert: %v, want ErrConflict", err)
	}
	if b.Version != 0 {
		t.Errorf("losing insert set Version %d", b.Version)
	}
	if _, err := first.Alarm(ctx, "b"); !errors.Is(err, alarm.ErrNotFound) {
		t.Errorf("losing episode stored (err %v)", err)
	}
}

// Two nodes running one evaluator's transaction at once: the second reads
// the checkpoint only after the first has committed, so it sees its progress.
func TestCheckpointReadWaitsForWriter(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	first, second := openAt(t, connURL), openAt(t, connURL)
	ctx := t.Context()
	err := first.Update(ctx, func(tx alarm.Tx) error { return tx.SetCheckpoint(alarm.Checkpoint{Name: "eval-0", Applied: 10}) })
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan int32)
	seen := make(chan alarm.Checkpoint, 1)
	secondErr := make(chan error, 1)
	go func() {
		pid := <-read
		go func() {
			secondErr <- second.Update(ctx, func(tx alarm.Tx) error {
				c, err := tx.Checkpoint("eval-0")
				seen <- c
				return err
			})
		}()
		waitUntilBlocking(t, first, pid)
		close(read)
	}()
	err = first.Update(ctx, func(atx alarm.Tx) error {
		c, err := atx.Checkpoint("eval-0")
		if err != nil {
			return err
		}
		var pid int32
		if err := atx.(*tx).q.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		read <- pid
		<-read // the second node now waits on this transaction
		return atx.SetCheckpoint(alarm.Checkpoint{Name: "eval-0", Applied: c.Applied + 10})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-secondErr; err != nil {
		t.Fatal(err)
	}
	if c := <-seen; c.Applied != 20 {
		t.Errorf("second node read applied %d, want the first node's 20", c.Applied)
	}
}

// A deadlock between two Updates comes back to one of them as a retryable
// error; Update does not run fn again by itself, and nothing of the loser
// is committed.
func TestDeadlockIsReturnedNotRetried(t *testing.T) {
	t.Parallel()
	db := openTest(t)
	ctx := t.Context()
	a, b := newAlarm("a", "pa"), newAlarm("b", "pb")
	err := db.Update(ctx, func(tx alarm.Tx) error {
		return errors.Join(tx.PutAlarm(&a), tx.PutAlarm(&b))
	})
	if err != nil {
		t.Fatal(err)
	}

	// Each transaction writes one episode, waits until the other has
	// written its own, then writes the other's: a lock cycle.
	wroteFirst := []chan struct{}{make(chan struct{}), make(chan struct{})}
	order := [][]string{{"a", "b"}, {"b", "a"}}
	var (
		wg    sync.WaitGroup
		calls [2]int
		errs  [2]error
	)
	for i := range 2 {
		wg.Go(func() {
			errs[i] = db.Update(ctx, func(tx alarm.Tx) error {
				calls[i]++
				for step, id := range order[i] {
					x, err := tx.Alarm(id)
					if err != nil {
						return err
					}
					x.Message = fmt.Sprintf("tx%d", i)
					if err := tx.PutAlarm(&x); err != nil {
						return err
					}
					if step == 0 {
						close(wroteFirst[i])
						<-wroteFirst[1-i]
					}
				}
				return tx.AddChange(alarm.Change{Alarm: "a", At: t0, Action: "repeated", By: fmt.Sprintf("tx%d", i)})
			})
		})
	}
	wg.Wait()
	if calls != [2]int{1, 1} {
		t.Errorf("fn ran %v times, want once each", calls)
	}
	var loser, winner int
	switch {
	case errs[0] != nil && errs[1] == nil:
		loser, winner = 0, 1
	case errs[1] != nil && errs[0] == nil:
		loser, winner = 1, 0
	default:
		t.Fatalf("want exactly one failure, got %v and %v", errs[0], errs[1])
	}
	var pe *pgconn.PgError
	if !Retryable(errs[loser]) || !errors.As(errs[loser], &pe) {
		t.Errorf("loser's error %v is not a wrapped retryable PostgreSQL error", errs[loser])
	}
	for _, id := range []string{"a", "b"} {
		got, err := db.Alarm(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("tx%d", winner); got.Message != want || got.Version != 2 {
			t.Errorf("alarm %s: message %q version %d, want %q version 2", id, got.Message, got.Version, want)
		}
	}
	hist, err := db.History(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].By != fmt.Sprintf("tx%d", winner) {
		t.Errorf("history %+v, want only the winner's change", hist)
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "40001"}, true},
		{fmt.Errorf("put alarm: %w", &pgconn.PgError{Code: "40P01"}), true},
		{&pgconn.PgError{Code: "23505"}, false},
		{alarm.ErrConflict, false},
		{nil, false},
	}
	for _, tc := range tests {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// versionRows counts the migrations recorded in a goose version table.
func versionRows(t *testing.T, db *DB, table string) int {
	t.Helper()
	var n int
	if err := db.pool.QueryRow(t.Context(), `SELECT count(*) FROM `+table+` WHERE version_id > 0`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	ctx := t.Context()
	db := openAt(t, connURL)
	a := newAlarm("a1", "p1")
	if err := db.Update(ctx, func(tx alarm.Tx) error { return tx.PutAlarm(&a) }); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, connURL); err != nil {
		t.Fatalf("migrate an up-to-date schema: %v", err)
	}
	// Several nodes opening at once all succeed and see the data.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			again, err := Open(ctx, connURL)
			if err != nil {
				errs <- err
				return
			}
			defer again.Close()
			if _, err := again.Alarm(ctx, "a1"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("second open: %v", err)
	}
	if n := versionRows(t, db, versionTable); n != 1 {
		t.Fatalf("%d migrations recorded, want 1", n)
	}
}

func TestOpenFreshSchemaInParallel(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	var wg sync.WaitGroup
	dbs := make([]*DB, 4)
	errs := make([]error, 4)
	for i := range dbs {
		wg.Go(func() { dbs[i], errs[i] = Open(t.Context(), connURL) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent open %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	if n := versionRows(t, dbs[0], versionTable); n != 1 {
		t.Fatalf("%d migrations recorded, want 1", n)
	}
}

// The alarm store and the samples store share one schema: their migration
// histories stay apart and both open, in either order.
func TestSharesSchemaWithSampleStore(t *testing.T) {
	t.Parallel()
	clock := postgres.WithClock(func() time.Time { return t0 })
	for _, alarmsFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("alarms first %v", alarmsFirst), func(t *testing.T) {
			connURL := testSchema(t)
			var db *DB
			if alarmsFirst {
				db = openAt(t, connURL)
			}
			samples, err := postgres.Open(t.Context(), connURL, clock)
			if err != nil {
				t.Fatalf("open samples store: %v", err)
			}
			defer samples.Close()
			if !alarmsFirst {
				db = openAt(t, connURL)
			}
			if n := versionRows(t, db, versionTable); n != 1 {
				t.Errorf("%s records %d migrations, want 1", versionTable, n)
			}
			if n := versionRows(t, db, "goose_db_version"); n < 1 {
				t.Errorf("goose_db_version records %d migrations, want the samples store's", n)
			}
			if err := postgres.Migrate(t.Context(), connURL, clock); err != nil {
				t.Errorf("samples migrate after alarms: %v", err)
			}
			if err := Migrate(t.Context(), connURL); err != nil {
				t.Errorf("alarms migrate after samples: %v", err)
			}
		})
	}
}

func TestOpenWithoutSchema(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	missing := strings.Replace(connURL, "search_path=", "search_path=no_such_schema_", 1)
	if _, err := Open(t.Context(), missing); err == nil || !strings.Contains(err.Error(), "no schema") {
		t.Errorf("Open on a missing schema: %v, want a 'no schema' error", err)
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

func TestOutOfRangeTimesAreRefused(t *testing.T) {
	t.Parallel()
	db := openTest(t)
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) // past int64 nanoseconds
	a := newAlarm("a1", "p1")
	a.Raised = far
	if err := db.Update(t.Context(), func(tx alarm.Tx) error { return tx.PutAlarm(&a) }); err == nil {
		t.Errorf("PutAlarm accepted raised %v", far)
	}
	if _, err := db.ClaimDeliveries(t.Context(), far, time.Second, 1); err == nil {
		t.Errorf("ClaimDeliveries accepted now %v", far)
	}
	if _, err := db.ClaimDeliveries(t.Context(), t0, 0, 1); err == nil {
		t.Errorf("ClaimDeliveries accepted a zero lease")
	}
	if _, err := db.DueEscalations(t.Context(), far, 1); err == nil {
		t.Errorf("DueEscalations accepted now %v", far)
	}
}

// float8 keeps NaN and the infinities, so a NaN reading neither fails the
// evaluator batch nor comes back as something else.
func TestPutAlarmKeepsFloatEdges(t *testing.T) {
	t.Parallel()
	db := openTest(t)
	tests := []float64{0, math.Copysign(0, -1), math.MaxFloat64, math.SmallestNonzeroFloat64, -273.15, math.Inf(1), math.Inf(-1), math.NaN()}
	for i, v := range tests {
		a := newAlarm(fmt.Sprintf("a%d", i), "p1")
		a.State, a.Value = alarm.Resolved, v
		if err := db.Update(t.Context(), func(tx alarm.Tx) error { return tx.PutAlarm(&a) }); err != nil {
			t.Fatalf("value %v: %v", v, err)
		}
		got, err := db.Alarm(t.Context(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if math.Float64bits(got.Value) != math.Float64bits(v) && !(math.IsNaN(v) && math.IsNaN(got.Value)) {
			t.Errorf("value %v came back %v", v, got.Value)
		}
	}
}

// TestQueryPlans checks that the hot queries can use the indexes made for
// them rather than scanning tables that only grow. Sequential scans are
// disabled because on near-empty test tables they would always win.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	db := openTest(t)
	ctx := t.Context()
	tests := []struct {
		name  string
		query string
		args  []any
		index string
	}{
		{"alarms of a patient", `SELECT id FROM alarms WHERE patient = $1 ORDER BY raised DESC, id DESC LIMIT 50`, []any{"p1"}, "alarms_patient_raised"},
		{"open episode", `SELECT id FROM alarms WHERE patient = $1 AND rule = $2 AND subject = $3 AND state <> 'resolved'`, []any{"p", "r", "s"}, "alarms_open_key"},
		{"due escalations", `SELECT id FROM alarms WHERE state = 'active' AND next_escalation <> 0 AND next_escalation <= $1 ORDER BY next_escalation, raised, id LIMIT $2`, []any{int64(1), 10}, "alarms_due_escalation"},
		{"history", `SELECT at FROM alarm_changes WHERE alarm = $1 ORDER BY at, seq`, []any{"a"}, "alarm_changes_alarm_at"},
		{"claim", claimQuery, []any{int64(2), int64(1), 10}, "alarm_deliveries_pending_due"},
		{"next due", `SELECT MIN(due) FROM alarm_deliveries WHERE state = 'pending'`, nil, "alarm_deliveries_pending_due"},
		// "delivered": for "pending" an empty table's planner may as well
		// take the small partial index, which is fine too.
		{"count deliveries", `SELECT COUNT(*) FROM alarm_deliveries WHERE alarm = $1 AND state = $2`, []any{"a", "delivered"}, "alarm_deliveries_alarm_state"},
		{"deliveries of an alarm", `SELECT id FROM alarm_deliveries WHERE alarm = $1 ORDER BY created, seq`, []any{"a"}, "alarm_deliveries_alarm_state"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pgTx, err := db.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer pgTx.Rollback(ctx) // ends SET LOCAL
			if _, err := pgTx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
				t.Fatal(err)
			}
			rows, err := pgTx.Query(ctx, "EXPLAIN "+tc.query, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			if plan := strings.Join(lines, "\n"); !strings.Contains(plan, tc.index) {
				t.Errorf("plan does not use %s:\n%s", tc.index, plan)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite testdata/schema.golden")

// TestSchemaGolden pins the schema the migrations build, so a change to it
// (a dropped index, a changed constraint) shows up in review.
func TestSchemaGolden(t *testing.T) {
	t.Parallel()
	db := openTest(t)
	ctx := t.Context()
	var b strings.Builder
	rows, err := db.pool.Query(ctx, `SELECT table_name, column_name, data_type, is_nullable, COALESCE(column_default, ''), is_identity
		FROM information_schema.columns WHERE table_schema = current_schema() AND table_name <> $1
		ORDER BY table_name, ordinal_position`, versionTable)
	if err != nil {
		t.Fatal(err)
	}
	var table, column, typ, nullable, def, identity string
	_, err = pgx.ForEachRow(rows, []any{&table, &column, &typ, &nullable, &def, &identity}, func() error {
		fmt.Fprintf(&b, "%s.%s %s nullable=%s default=%q identity=%s\n", table, column, typ, nullable, def, identity)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var schema string
	if err := db.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	rows, err = db.pool.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename <> $1 ORDER BY indexname`, versionTable)
	if err != nil {
		t.Fatal(err)
	}
	var def2 string
	_, err = pgx.ForEachRow(rows, []any{&def2}, func() error {
		b.WriteString(strings.ReplaceAll(def2, schema+".", "") + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err = db.pool.Query(ctx, `SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE connamespace = current_schema()::regnamespace AND contype = 'c' ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	var rel, name, cdef string
	_, err = pgx.ForEachRow(rows, []any{&rel, &name, &cdef}, func() error {
		fmt.Fprintf(&b, "%s %s %s\n", strings.TrimPrefix(rel, schema+"."), name, cdef)
		return nil
	})
	if err != nil {
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

// Concurrent PutDocs from two nodes get distinct, gapless versions, and
// DocsVersion ends at the number of puts.
func TestPutDocAcrossNodes(t *testing.T) {
	t.Parallel()
	connURL := testSchema(t)
	nodes := []*DB{openAt(t, connURL), openAt(t, connURL)}
	ctx := t.Context()
	const puts = 20
	versions := make([]int, puts)
	errs := make([]error, puts)
	var wg sync.WaitGroup
	for i := range puts {
		wg.Go(func() {
			d := alarm.Doc{Scope: "setting:ward", Kind: "rules", Body: []byte(fmt.Sprint(i)), Author: "admin", At: t0}
			errs[i] = nodes[i%2].PutDoc(ctx, &d)
			versions[i] = d.Version
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(versions)
	for i, v := range versions {
		if v != i+1 {
			t.Fatalf("versions %v, want 1..%d", versions, puts)
		}
	}
	if v, err := nodes[1].DocsVersion(ctx); err != nil || v != puts {
		t.Errorf("DocsVersion = %d, %v; want %d", v, err, puts)
	}
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
