package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store/postgres"
)

func runMigrate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./tend-data", "data directory (SQLite databases when --store is empty)")
	storeURL := fs.String("store", "", "store URL: empty for SQLite in the data directory, sqlite:PATH, or postgres://...")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tend migrate [flags]\n\nBrings the database schema up to date (readings and alarms) and exits;\nsafe to run while nodes are up or from several machines at once.\n\nFlags (each also TEND_<FLAG>):")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "tend migrate:", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tend migrate: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := node.Migrate(ctx, node.Config{DataDir: *data, StoreURL: *storeURL, Console: io.Discard}); err != nil {
		fmt.Fprintln(stderr, "tend migrate:", err)
		return 1
	}
	where := "SQLite in " + *data
	if *storeURL != "" {
		where = postgres.Redact(*storeURL)
	}
	fmt.Fprintf(stdout, "schema up to date (%s)\n", where)
	return 0
}
