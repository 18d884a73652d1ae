package pgalarm

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tendhealth/tend/internal/store/postgres"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// versionTable is goose's record of applied alarm migrations.
const versionTable = "alarm_goose_db_version"

// migrate applies the alarm migrations not yet recorded. Their version
// table and lock names differ from the samples store's, so both trees can
// live in one schema without seeing each other's versions.
func migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	migrations, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("embedded migrations: %w", err)
	}
	return postgres.MigrateTree(ctx, pool, postgres.MigrationTree{FS: migrations, LockName: "tend.alarm-migrate",
		VersionTable: versionTable}, logger)
}
