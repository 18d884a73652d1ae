// Package pgalarm implements alarm.Store on PostgreSQL 15+ (pgx, pgxpool)
// for scale-out deployments, where several Tend nodes share the alarm
// episodes, their outbox, the evaluator checkpoints, the configuration
// documents and the webhooks.
//
// # Schema and migrations
//
// The schema lives in embedded goose migrations (migrations/*.sql) with a
// version table of its own (alarm_goose_db_version) and tables prefixed
// alarm_ (besides alarms itself), so it can share a database and schema
// with the samples store of internal/store/postgres. Open and Migrate apply
// them under session-level advisory locks keyed on the target schema (other
// keys than the samples store's), so nodes starting together migrate once
// and the others wait. The schema is the first existing entry of the
// connection's search_path. Connection URLs are never repeated in errors
// unredacted.
//
// Times are bigint unix nanoseconds (0 for the zero time) and come back in
// UTC; uint64 stream sequences are stored bit for bit in bigint columns;
// bodies, snapshots, details and secrets are bytea.
//
// # Concurrency between nodes
//
// Update runs fn in one READ COMMITTED transaction. That is enough because
// the writes that race carry their own checks, which PostgreSQL re-evaluates
// against the latest committed row once it holds the row lock:
//
//   - PutAlarm updates WHERE id = $id AND version = $read; of two
//     transactions that read the same version, the second waits for the
//     first, finds the version moved and reports alarm.ErrConflict;
//   - one open episode per patient, rule and subject is a partial unique
//     index; an insert that would break it is a no-op (ON CONFLICT DO
//     NOTHING) and an update a unique violation, both alarm.ErrConflict;
//   - Enqueue and SetCheckpoint are upserts on their keys, and Tx.Checkpoint
//     locks the checkpoint row, so two nodes running one evaluator take
//     turns and the second sees the first's progress;
//   - ClaimDeliveries is one UPDATE whose row choice uses FOR UPDATE SKIP
//     LOCKED and re-checks the lease, so two nodes never lease one row.
//
// A stricter level would only turn these waits into serialization failures
// that every caller has to retry. Update never retries by itself (fn may
// have side effects): serialization failures and deadlocks come back
// wrapped, and Retryable tells them apart. After PutAlarm has failed with a
// unique violation the transaction is aborted; fn should return the error.
//
// DueEscalations is a plain read: a node acting on an episode another node
// has just escalated loses at the version check.
//
// # Running on Citus
//
// No table here is distributed yet, and that is deliberate: an evaluator
// batch writes the episodes of many patients and its checkpoint in one
// transaction, which on distributed tables would be a two-phase commit
// across shards on every batch. Alarm volume is small beside samples, so
// the alarm tables stay plain tables on the coordinator
// (citus_add_local_table_to_metadata lets them join distributed ones).
// When they must scale out:
//
//   - alarms, alarm_changes and alarm_deliveries are patient data and would
//     be distributed on the patient, colocated with patients. That needs a
//     patient column on alarm_changes and alarm_deliveries (alarm.Change and
//     alarm.Delivery do not carry one today) and primary keys that include
//     the patient ((patient, id), (patient, seq)); the open-episode index
//     already starts with it. Unique alarm ids would then rest on how ids
//     are made, no longer on the database.
//   - alarm_docs, alarm_docs_version and alarm_webhooks are small and read
//     on every evaluation and delivery: reference tables.
//   - alarm_checkpoints (one row per evaluator, written every batch) and
//     alarm_goose_db_version stay on the coordinator.
package pgalarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/store/postgres"
)

// Option configures Open.
type Option func(*config)

type config struct {
	logger   *slog.Logger
	maxConns int32
}

// WithLogger sets where migration progress is logged (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithMaxConns sets the connection pool size (default: pgxpool's, the
// greater of 4 and the number of CPUs). Migrating holds two connections at
// once, so sizes below 2 are raised to 2.
func WithMaxConns(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxConns = int32(max(n, 2))
		}
	}
}

func newConfig(opts []Option) config {
	cfg := config{logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// DB is a PostgreSQL-backed alarm.Store. It is safe for concurrent use, and
// several DBs (on several nodes) may share one schema.
type DB struct {
	pool      *pgxpool.Pool
	closeOnce sync.Once
}

var _ alarm.Store = (*DB)(nil)

// Open connects to the database at connURL and brings its alarm schema up
// to date.
func Open(ctx context.Context, connURL string, opts ...Option) (*DB, error) {
	cfg := newConfig(opts)
	pool, err := newPool(ctx, connURL, cfg)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pool, cfg.logger); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgalarm: migrate %s: %w", postgres.Redact(connURL), err)
	}
	return &DB{pool: pool}, nil
}

// Migrate brings the alarm schema at connURL up to date and disconnects; it
// is what a migration step runs before rolling out new nodes.
func Migrate(ctx context.Context, connURL string, opts ...Option) error {
	cfg := newConfig(opts)
	pool, err := newPool(ctx, connURL, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrate(ctx, pool, cfg.logger); err != nil {
		return fmt.Errorf("pgalarm: migrate %s: %w", postgres.Redact(connURL), err)
	}
	return nil
}

func newPool(ctx context.Context, connURL string, cfg config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(connURL)
	if err != nil {
		// pgx's parse errors already hide the password; say which URL
		// failed without repeating it.
		return nil, fmt.Errorf("pgalarm: parse connection URL %s: %w", postgres.Redact(connURL), err)
	}
	if cfg.maxConns > 0 {
		pc.MaxConns = cfg.maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgalarm: connect %s: %w", postgres.Redact(connURL), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgalarm: connect %s: %w", postgres.Redact(connURL), err)
	}
	return pool, nil
}

// Close releases the connections. It is safe to call more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(db.pool.Close)
	return nil
}

// Update runs fn in one READ COMMITTED transaction: everything fn wrote is
// committed together, or nothing is. fn's error is returned as is; a panic
// in fn rolls back and goes on up. Serialization failures and deadlocks are
// not retried here (see Retryable). The DB's read methods do not see fn's
// uncommitted writes; the Tx's do.
func (db *DB) Update(ctx context.Context, fn func(alarm.Tx) error) error {
	return db.withTx(ctx, "update", func(pgTx pgx.Tx) error {
		return fn(&tx{ctx: ctx, q: pgTx})
	})
}

// withTx runs fn in one transaction and commits it. A panic in fn rolls
// back before it goes on, so no connection returns to the pool mid-
// transaction.
func (db *DB) withTx(ctx context.Context, what string, fn func(pgx.Tx) error) (err error) {
	pgTx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("pgalarm: %s: begin: %w", what, err)
	}
	committed := false
	defer func() {
		if !committed {
			pgTx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(pgTx); err != nil {
		return err
	}
	if err := pgTx.Commit(ctx); err != nil {
		return fmt.Errorf("pgalarm: %s: commit: %w", what, err)
	}
	committed = true
	return nil
}

// Retryable reports whether err is a serialization failure or a deadlock:
// the transaction was rolled back and may succeed if the caller runs it
// again (including any side effects of its fn).
func Retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return true
	}
	return false
}

// isUniqueViolation reports whether err is a unique or primary key
// violation (not NOT NULL or CHECK, which are bugs, not races).
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// querier is what reads need; the pool and a transaction both have it, so
// the store and the transaction share their queries.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// tx is the alarm.Tx of one Update.
type tx struct {
	ctx context.Context
	q   pgx.Tx
}

var _ alarm.Tx = (*tx)(nil)

// Times are stored as unix nanoseconds; 0 stands for the zero time.
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Range of instants representable as int64 nanoseconds.
var (
	minTime = time.Unix(0, -1<<63).UTC()
	maxTime = time.Unix(0, 1<<63-1).UTC()
)

// checkTimes refuses times that int64 nanoseconds cannot hold, which
// UnixNano would silently wrap.
func checkTimes(ts ...time.Time) error {
	for _, t := range ts {
		if !t.IsZero() && (t.Before(minTime) || t.After(maxTime)) {
			return fmt.Errorf("time %s out of range", t.Format(time.RFC3339Nano))
		}
	}
	return nil
}

// Stream sequences are uint64; bigint is int64. The conversion keeps every
// bit, so values past 1<<63 round-trip (and sort wrongly in SQL, which no
// query here does).
func seqToDB(v uint64) int64   { return int64(v) }
func seqFromDB(v int64) uint64 { return uint64(v) }

// sqlLimit maps "0 means no limit" onto SQL, where LIMIT NULL means none.
func sqlLimit(limit int) any {
	if limit <= 0 {
		return nil
	}
	return limit
}
