// Package sqlite implements store.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go) for single-node deployments.
//
// Writes go through one dedicated connection so SQLite never sees competing
// writers; reads use a separate query-only pool so charts and searches do not
// queue behind ingest. The database runs in WAL mode with synchronous=FULL:
// Append has returned only once its transaction is on disk.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tendhealth/tend/internal/store"
)

// Option configures Open.
type Option func(*config)

type config struct {
	now         func() time.Time
	readers     int
	busyTimeout time.Duration
}

// WithClock sets the clock used for Updated/Created stamps (tests).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithReaders sets the size of the read connection pool (default 4).
func WithReaders(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.readers = n
		}
	}
}

// WithBusyTimeout sets how long a connection waits on a lock (default 5s).
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.busyTimeout = d
		}
	}
}

// Store is a SQLite-backed store.Store. It is safe for concurrent use.
type Store struct {
	w   *sql.DB // exactly one connection: the only writer
	r   *sql.DB // query_only pool
	now func() time.Time

	insertSample *sql.Stmt
	insertSeries *sql.Stmt
	selectSeries *sql.Stmt

	mu     sync.RWMutex
	series map[seriesKey]seriesInfo // committed series only

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path and brings its schema
// up to date. path must be a file: the writer and the readers are separate
// connections, so an in-memory database would not be shared between them.
func Open(path string, opts ...Option) (*Store, error) {
	if path == "" || path == ":memory:" {
		return nil, errors.New("sqlite: a database file path is required")
	}
	cfg := config{now: time.Now, readers: 4, busyTimeout: 5 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	ctx := context.Background()

	w, err := sql.Open("sqlite", dsn(path, cfg, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}

	r, err := sql.Open("sqlite", dsn(path, cfg, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	r.SetMaxOpenConns(cfg.readers)
	r.SetMaxIdleConns(cfg.readers)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite: connect reader: %w", err)
	}

	s := &Store{w: w, r: r, now: cfg.now, series: make(map[seriesKey]seriesInfo)}
	prep := []struct {
		dst   **sql.Stmt
		query string
	}{
		{&s.insertSample, `INSERT OR IGNORE INTO samples(series_id, t, value, components, received, source, unit, mdc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.insertSeries, `INSERT INTO series(patient, device, code, unit, mdc) VALUES (?, ?, ?, ?, ?) ON CONFLICT(patient, device, code) DO NOTHING`},
		{&s.selectSeries, `SELECT id, unit, mdc FROM series WHERE patient = ? AND device = ? AND code = ?`},
	}
	for _, p := range prep {
		st, err := w.PrepareContext(ctx, p.query)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sqlite: prepare: %w", err)
		}
		*p.dst = st
	}
	return s, nil
}

func dsn(path string, cfg config, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
		q.Add("_pragma", "cache_size(-16384)") // KiB
	} else {
		// A batch touches one leaf page per series; a cache big enough to
		// hold them keeps dirty pages from spilling to the WAL mid-batch.
		q.Add("_pragma", "cache_size(-65536)") // KiB
		// Successive batches rewrite the same leaf pages; checkpointing less
		// often copies each of them back to the database file once instead
		// of once per batch.
		q.Add("_pragma", "wal_autocheckpoint(8192)")
		q.Add("_pragma", "journal_size_limit(67108864)") // bytes; bounds the idle WAL file
		// Take the write lock at BEGIN so a transaction never fails midway
		// upgrading a read lock.
		q.Set("_txlock", "immediate")
	}
	// The driver opens DSNs as SQLite URIs: escape the path so '?', '#' and
	// '%' in a file name are not taken as URI syntax.
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Close releases the connections. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for _, st := range []*sql.Stmt{s.insertSample, s.insertSeries, s.selectSeries} {
			if st != nil {
				errs = append(errs, st.Close())
			}
		}
		if s.r != nil {
			errs = append(errs, s.r.Close())
		}
		if s.w != nil {
			errs = append(errs, s.w.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// withTx runs fn in one write transaction and commits it.
func (s *Store) withTx(ctx context.Context, what string, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %s: begin: %w", what, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: %s: commit: %w", what, err)
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

func nullNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromNanos(n.Int64)
}

// Range of instants representable as int64 nanoseconds.
var (
	minTime = time.Unix(0, -1<<63).UTC()
	maxTime = time.Unix(0, 1<<63-1).UTC()
)

func representable(t time.Time) bool {
	return !t.Before(minTime) && !t.After(maxTime)
}

// limitOffset renders LIMIT/OFFSET; limit 0 means no limit.
func limitOffset(limit, offset int) (string, []any) {
	if limit <= 0 {
		limit = -1
	}
	if offset < 0 {
		offset = 0
	}
	return ` LIMIT ? OFFSET ?`, []any{limit, offset}
}
