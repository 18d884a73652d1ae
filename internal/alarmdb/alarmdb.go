// Package alarmdb implements alarm.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go) in a file of its own, so alarm transactions
// never queue behind bulk reading inserts in the main database.
//
// Writes go through one dedicated connection that takes the write lock at
// BEGIN, so an Update holds the only writer for the whole of its function and
// concurrent Updates run one after the other. Reads use a separate
// query-only pool. The database runs in WAL mode with synchronous=FULL: an
// Update has returned only once its transaction is on disk.
//
// Times are stored as unix nanoseconds (0 for the zero time) and come back
// in UTC; uint64 stream sequences are stored bit for bit in INTEGER columns.
package alarmdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tendhealth/tend/internal/alarm"
)

// Option configures Open.
type Option func(*config)

type config struct {
	readers     int
	busyTimeout time.Duration
}

// WithReaders sets the size of the read connection pool (default 2).
func WithReaders(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.readers = n
		}
	}
}

// WithBusyTimeout sets how long a connection waits on a lock held by another
// process (default 5s).
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.busyTimeout = d
		}
	}
}

// DB is a SQLite-backed alarm.Store. It is safe for concurrent use.
type DB struct {
	w *sql.DB // exactly one connection: the only writer
	r *sql.DB // query_only pool

	closeOnce sync.Once
	closeErr  error
}

var _ alarm.Store = (*DB)(nil)

// Open opens (creating if needed) the alarm database at path and brings its
// schema up to date. path must be a file: the writer and the readers are
// separate connections, so an in-memory database would not be shared.
func Open(path string, opts ...Option) (*DB, error) {
	if path == "" || path == ":memory:" {
		return nil, errors.New("alarmdb: a database file path is required")
	}
	cfg := config{readers: 2, busyTimeout: 5 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	ctx := context.Background()
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		return nil, fmt.Errorf("alarmdb: %w", err)
	}

	w, err := sql.Open("sqlite", dsn(path, cfg, false))
	if err != nil {
		return nil, fmt.Errorf("alarmdb: open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w, ms); err != nil {
		w.Close()
		return nil, fmt.Errorf("alarmdb: migrate %s: %w", path, err)
	}

	r, err := sql.Open("sqlite", dsn(path, cfg, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("alarmdb: open readers: %w", err)
	}
	r.SetMaxOpenConns(cfg.readers)
	r.SetMaxIdleConns(cfg.readers)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("alarmdb: connect reader: %w", err)
	}
	return &DB{w: w, r: r}, nil
}

func dsn(path string, cfg config, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		// Take the write lock at BEGIN so a transaction never fails midway
		// upgrading a read lock, and fn runs holding the writer.
		q.Set("_txlock", "immediate")
	}
	// The driver opens DSNs as SQLite URIs: escape the path so '?', '#' and
	// '%' in a file name are not taken as URI syntax.
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Close releases the connections. It is safe to call more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closeErr = errors.Join(db.r.Close(), db.w.Close())
		if db.closeErr != nil {
			db.closeErr = fmt.Errorf("alarmdb: close: %w", db.closeErr)
		}
	})
	return db.closeErr
}

// Update runs fn in one write transaction on the single writer connection:
// everything fn wrote is committed together, or nothing is. fn's error is
// returned as is; a panic in fn rolls back and goes on up.
//
// fn holds the only writer, so it must not call the DB's own write methods
// (PutDoc, PutWebhook, DeleteWebhook, ClaimDeliveries, Update): they would
// wait for it forever. The DB's read methods do not see fn's uncommitted
// writes; the Tx's do.
func (db *DB) Update(ctx context.Context, fn func(alarm.Tx) error) error {
	return db.withTx(ctx, "update", func(sqlTx *sql.Tx) error {
		return fn(&tx{ctx: ctx, q: sqlTx})
	})
}

// withTx runs fn in one write transaction and commits it. A panic in fn
// rolls back before it goes on, so the writer connection is never left
// inside a transaction.
func (db *DB) withTx(ctx context.Context, what string, fn func(*sql.Tx) error) (err error) {
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("alarmdb: %s: begin: %w", what, err)
	}
	committed := false
	defer func() {
		if !committed {
			sqlTx.Rollback()
		}
	}()
	if err := fn(sqlTx); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("alarmdb: %s: commit: %w", what, err)
	}
	committed = true
	return nil
}

// queryer is what reads need; both *sql.DB and *sql.Tx have it, so the
// store and the transaction share their queries.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// tx is the alarm.Tx of one Update.
type tx struct {
	ctx context.Context
	q   *sql.Tx
}

var _ alarm.Tx = (*tx)(nil)

// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint failure (not NOT NULL or CHECK, which are bugs, not races).
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
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

// Stream sequences are uint64; SQLite integers are int64. The conversion
// keeps every bit, so values past 1<<63 round-trip.
func seqToDB(v uint64) int64   { return int64(v) }
func seqFromDB(v int64) uint64 { return uint64(v) }

// limitClause renders LIMIT; limit <= 0 means no limit.
func limitClause(limit int) (string, []any) {
	if limit <= 0 {
		return "", nil
	}
	return ` LIMIT ?`, []any{limit}
}
