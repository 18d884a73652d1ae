package pgalarm

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// versionTable is goose's record of applied alarm migrations. It differs
// from goose's default (used by the samples store), so the two migration
// trees can live in one schema without seeing each other's versions.
const versionTable = "alarm_goose_db_version"

// migrationLockKey is the advisory lock goose's session locker takes while
// migrating the current schema. Keying it on the schema lets independent
// schemas (tests, tenants) migrate in parallel; the "alarm" in it keeps it
// apart from the samples store's keys.
const migrationLockKey = `hashtextextended('tend.alarm-migrate.' || COALESCE(current_schema(), ''), 0)`

// migrationRunLockKey is held around a whole migration run; see migrate.
const migrationRunLockKey = `hashtextextended('tend.alarm-migrate-run.' || COALESCE(current_schema(), ''), 0)`

// schemaLocker is a goose session locker that waits on pg_advisory_lock:
// goose's own PostgreSQL locker polls every few seconds with one key for
// the whole database, while blocking lets a waiting node go on the moment
// the migrating one is done, and honours context cancellation.
type schemaLocker struct{}

var _ lock.SessionLocker = schemaLocker{}

func (schemaLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(`+migrationLockKey+`)`); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	return nil
}

func (schemaLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var released bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock(`+migrationLockKey+`)`).Scan(&released); err != nil {
		return fmt.Errorf("release migration lock: %w", err)
	}
	if !released {
		return errors.New("release migration lock: lock was not held")
	}
	return nil
}

// migrate applies the embedded migrations not yet recorded in the schema.
func migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("read current schema: %w", err)
	}
	if schema == nil {
		return errors.New("no schema of the search_path exists; create it first")
	}
	// goose creates its version table before taking the session lock, so
	// nodes migrating a fresh schema together would race on it. A lock of
	// our own around the whole run serialises them from the start; its key
	// differs from the session locker's, which goose takes on another
	// connection.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+migrationRunLockKey+`)`); err != nil {
		return fmt.Errorf("take migration run lock: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+migrationRunLockKey+`)`); err != nil {
			// A session that cannot unlock cannot be trusted back in the pool.
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	migrations, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("embedded migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations,
		goose.WithTableName(versionTable),
		goose.WithSessionLocker(schemaLocker{}),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(logger),
	)
	if err != nil {
		return fmt.Errorf("migration provider: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return err
	}
	return nil
}
