package postgres

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

// MigrationTree is one tree of embedded goose migrations. Several trees
// can share a schema: each has its own version table and lock names.
type MigrationTree struct {
	FS fs.FS // the migration files (NNNNN_name.sql) at its root
	// LockName names the advisory locks (keyed on the current schema too,
	// so independent schemas in one database migrate in parallel).
	LockName string
	// VersionTable is goose's record of applied versions; "" is goose's
	// default.
	VersionTable string
}

func (t MigrationTree) lockKey(suffix string) string {
	return `hashtextextended('` + t.LockName + suffix + `.' || COALESCE(current_schema(), ''), 0)`
}

// schemaLocker is a goose session locker that waits on pg_advisory_lock.
// goose's own PostgreSQL locker polls every few seconds and uses one key
// for the whole database; blocking on the lock lets a waiting node continue
// the moment the migrating one is done, and honours context cancellation.
type schemaLocker struct{ key string }

var _ lock.SessionLocker = schemaLocker{}

func (l schemaLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(`+l.key+`)`); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	return nil
}

func (l schemaLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var released bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock(`+l.key+`)`).Scan(&released); err != nil {
		return fmt.Errorf("release migration lock: %w", err)
	}
	if !released {
		return errors.New("release migration lock: lock was not held")
	}
	return nil
}

// migrate applies the samples store's migrations not yet recorded.
func migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	migrations, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("embedded migrations: %w", err)
	}
	return MigrateTree(ctx, pool, MigrationTree{FS: migrations, LockName: "tend.migrate"}, logger)
}

// MigrateTree applies the migrations of tree not yet recorded in the
// current schema, safely while other nodes do the same.
func MigrateTree(ctx context.Context, pool *pgxpool.Pool, tree MigrationTree, logger *slog.Logger) error {
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("read current schema: %w", err)
	}
	if schema == nil {
		return errors.New("no schema of the search_path exists; create it first")
	}
	// goose's HasPending creates its version table before taking the
	// session lock, so nodes migrating a fresh schema together would race
	// on it (and back off for seconds). Holding a lock of our own around
	// the whole run serialises them from the start; it uses another key
	// than the session locker, which goose takes on a different connection.
	runKey := tree.lockKey("-run")
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+runKey+`)`); err != nil {
		return fmt.Errorf("take migration run lock: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+runKey+`)`); err != nil {
			// A session that cannot unlock cannot be trusted back in the pool.
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	opts := []goose.ProviderOption{
		goose.WithSessionLocker(schemaLocker{key: tree.lockKey("")}),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(logger),
	}
	if tree.VersionTable != "" {
		opts = append(opts, goose.WithTableName(tree.VersionTable))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, tree.FS, opts...)
	if err != nil {
		return fmt.Errorf("migration provider: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return err
	}
	return nil
}
