package node

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Migrate brings the schema of the readings store and the alarm store up
// to date without starting anything else, so an operator can upgrade the
// database before rolling out nodes of a new version. Opening a store
// applies its pending migrations under a lock, so running it while older
// nodes are up, or on several machines at once, is safe; a database newer
// than this binary is refused.
func Migrate(ctx context.Context, cfg Config) error {
	cfg = New(cfg).cfg // fills the defaults (clock, logger)
	if cfg.StoreURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	al, err := openAlarmStore(ctx, cfg)
	if err != nil {
		st.Close()
		return err
	}
	return errors.Join(al.Close(), st.Close())
}
