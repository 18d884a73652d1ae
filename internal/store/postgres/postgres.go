// Package postgres implements store.Store on PostgreSQL 15+ (pgx, pgxpool)
// for scale-out deployments where several Tend nodes share one database.
//
// # Schema and migrations
//
// The schema lives in embedded goose migrations (migrations/*.sql). Open and
// Migrate apply them under session-level advisory locks keyed on the target
// schema, so nodes starting together migrate once and the others wait. The
// schema is the first existing entry of the connection's search_path (set
// search_path=... in the URL to choose it); tests use that to isolate
// themselves. Connection URLs are never repeated in errors unredacted.
//
// # Samples
//
// Times are stored as bigint unix nanoseconds: timestamptz keeps only
// microseconds and readings keep nanoseconds. The samples table is
// range-partitioned on that time, one partition per week (Monday 00:00 UTC).
// A week keeps the partition count low (52 a year) so planning stays cheap
// for queries over months, while still letting retention drop data at a
// useful granularity; a day would multiply the partitions by seven for no
// gain at vital-sign rates. Partitions are created on demand by Append (and
// for the current and next week by Open) under a transaction-level advisory
// lock, so concurrent nodes never race. There is deliberately no DEFAULT
// partition: rows parked there would have to be moved, under an exclusive
// lock, before a partition covering them could be created.
// DropPartitionsBefore implements retention by dropping whole weeks.
//
// Append resolves series (patient, device, code) to ids, then inserts the
// samples with INSERT ... SELECT ... ON CONFLICT DO NOTHING in one
// transaction, sorted by key so that concurrent overlapping batches lock in
// the same order and never deadlock. Large batches are first COPYed into a
// per-connection temporary staging table; small ones are sent as arrays in
// a single statement. Append returns after COMMIT, i.e. durably with the
// server's default synchronous_commit=on.
//
// Observation ids are "{series}-{t}" in base 36, as in the embedded store:
// valid FHIR ids that carry the time, so Sample prunes to one partition.
//
// # Running on Citus
//
// Every table holding patient data is keyed by patient_id, so the schema
// can be distributed on the patient key with colocated shards. After the
// first Migrate and before ingesting, on the coordinator:
//
//	SELECT create_distributed_table('patients', 'id');
//	SELECT create_distributed_table('patient_identifiers', 'patient_id', colocate_with => 'patients');
//	SELECT create_distributed_table('series', 'patient_id', colocate_with => 'patients');
//	SELECT create_distributed_table('samples', 'patient_id', colocate_with => 'patients');
//	SELECT create_distributed_table('patient_locations', 'patient_id', colocate_with => 'patients');
//	SELECT create_reference_table('devices');
//	SELECT create_reference_table('device_identifiers');
//	SELECT create_reference_table('bindings');
//	SELECT create_reference_table('device_secrets');
//	SELECT create_reference_table('tokens');
//	SELECT create_reference_table('users');
//	SELECT create_reference_table('sessions');
//	SELECT create_reference_table('signin_failures');
//
// dead_letters (operator data, not per patient) and goose_db_version stay
// plain tables on the coordinator. Citus distributes the partitions Append
// creates later along with their parent, and series ids come from a bigint
// identity, which Citus (11.2+) supports on distributed tables. Queries for
// one patient (Samples, Latest, Downsample) route to one shard; Sample(id)
// finds its series through the series(id) index on every shard, then reads
// one partition of one shard. Append stages large batches in a temporary
// table of its session, so Tend must talk to the coordinator directly or
// through a session-mode pooler, not a transaction-mode one. This layout
// follows Citus' rules (distribution column in every primary key and unique
// constraint, colocated foreign keys) but has not been run on Citus yet.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tendhealth/tend/internal/store"
)

// Option configures Open.
type Option func(*config)

type config struct {
	now      func() time.Time
	logger   *slog.Logger
	maxConns int32
}

// WithClock sets the clock used for Updated/Created stamps and for choosing
// the partitions Open creates ahead of need.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

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
	cfg := config{now: time.Now, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// Store is a PostgreSQL-backed store.Store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time

	mu         sync.RWMutex
	series     map[seriesKey]seriesInfo // committed series only
	partitions map[int64]bool           // week starts known to have a partition

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at connURL, brings its schema up to date
// and creates the partitions for the current and the next week.
func Open(ctx context.Context, connURL string, opts ...Option) (*Store, error) {
	cfg := newConfig(opts)
	pool, err := newPool(ctx, connURL, cfg)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pool, cfg.logger); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: migrate %s: %w", Redact(connURL), err)
	}
	s := &Store{
		pool:       pool,
		now:        cfg.now,
		series:     make(map[seriesKey]seriesInfo),
		partitions: make(map[int64]bool),
	}
	week := weekOf(cfg.now())
	if err := s.ensurePartitions(ctx, []int64{week, week + 1}); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return s, nil
}

// Migrate brings the schema at connURL up to date and disconnects; it is
// what a "tend migrate" command runs before rolling out new nodes.
func Migrate(ctx context.Context, connURL string, opts ...Option) error {
	cfg := newConfig(opts)
	pool, err := newPool(ctx, connURL, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrate(ctx, pool, cfg.logger); err != nil {
		return fmt.Errorf("postgres: migrate %s: %w", Redact(connURL), err)
	}
	return nil
}

// stageTable is the per-connection temporary table Append COPYs large
// batches into. ON COMMIT DELETE ROWS empties it at the end of every
// transaction, so it never needs cleaning.
const stageTable = `tend_samples_stage`

const createStage = `CREATE TEMPORARY TABLE IF NOT EXISTS ` + stageTable + ` (
	ord        integer NOT NULL,
	patient_id text NOT NULL,
	series_id  bigint NOT NULL,
	t          bigint NOT NULL,
	value      double precision,
	components jsonb,
	received   bigint NOT NULL,
	source     text NOT NULL,
	unit       text,
	mdc        text
) ON COMMIT DELETE ROWS`

func newPool(ctx context.Context, connURL string, cfg config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(connURL)
	if err != nil {
		// pgx's parse errors already hide the password; say which URL
		// failed without repeating it.
		return nil, fmt.Errorf("postgres: parse connection URL %s: %w", Redact(connURL), err)
	}
	if cfg.maxConns > 0 {
		pc.MaxConns = cfg.maxConns
	}
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, createStage); err != nil {
			return fmt.Errorf("create staging table: %w", err)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect %s: %w", Redact(connURL), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect %s: %w", Redact(connURL), err)
	}
	return pool, nil
}

// Redact returns connURL with any password replaced by "xxxxx", fit for
// logs and errors. A string that is not a URL (a keyword/value connection
// string) is not echoed at all.
func Redact(connURL string) string {
	u, err := url.Parse(connURL)
	if err != nil || u.Scheme == "" {
		return "(connection string)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Close releases the connections. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// withTx runs fn in one transaction and commits it.
func (s *Store) withTx(ctx context.Context, what string, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %s: begin: %w", what, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: %s: commit: %w", what, err)
	}
	return nil
}

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

func nullNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return fromNanos(*n)
}

// Range of instants representable as int64 nanoseconds.
var (
	minTime = time.Unix(0, -1<<63).UTC()
	maxTime = time.Unix(0, 1<<63-1).UTC()
)

func representable(t time.Time) bool {
	return !t.Before(minTime) && !t.After(maxTime)
}

func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return -1 << 63
	case t.After(maxTime):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// limitOffset maps the store's "0 means no limit" onto SQL, where a NULL
// LIMIT means no limit.
func limitOffset(limit, offset int) (any, int) {
	if offset < 0 {
		offset = 0
	}
	if limit <= 0 {
		return nil, offset
	}
	return limit, offset
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
