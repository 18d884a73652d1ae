package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/tendhealth/tend/internal/archive"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store/postgres"
)

func runExport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./tend-data", "data directory of the (stopped) embedded installation")
	out := fs.String("out", "", "file to write (gzip-compressed JSON lines); required")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tend export --data DIR --out FILE\n\nWrites everything an embedded installation keeps (organisations, patients,\ndevices and bindings, credentials as hashes, users with their sealed second\nfactor and sign-in failure counters, care teams, consents, break-glass\ngrants, OAuth clients and tokens, device CAs and certificates, notes,\nreadings, dead letters, alarms and their history, rules, escalation\npolicies, webhooks, the audit trail) to FILE, for `tend import` into\nPostgreSQL. Dashboard sessions are not exported:\neveryone signs in again. Stop `tend serve` first; readings still in the\nstream are stored before the export. The file holds PHI and credential\nhashes: protect it like the database.\n\nFlags (each also TEND_<FLAG>):")
		fs.PrintDefaults()
	}
	if code, done := parseArchiveFlags(fs, args, stdout, stderr); done {
		return code
	}
	if *out == "" {
		fmt.Fprintln(stderr, "tend export: --out FILE is required")
		return 2
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, "tend export:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := node.Export(ctx, node.Config{DataDir: *data, Console: io.Discard}, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out) // never leave half an export that looks whole
		fmt.Fprintln(stderr, "tend export:", err)
		return 1
	}
	return report(stdout, "exported", *out, st)
}

func runImport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./tend-data", "data directory (SQLite databases when --store is empty)")
	storeURL := fs.String("store", "", "store URL to load into: postgres://... (or empty for SQLite in --data)")
	in := fs.String("in", "", "export file written by `tend export`; required")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tend import --store postgres://... --in FILE\n\nLoads an export into a new store (its schema is created first), before\nthe first `tend serve` on it. A store that already holds patients, users,\ntokens, organisations, OAuth clients or audit records is refused.\nSecond factors stay sealed with the exported data directory's\nweb-session.key: copy that file into the data directory of every node on\nthe new store (an export sealed with another key than the one in --data\nis refused).\n\nFlags (each also TEND_<FLAG>):")
		fs.PrintDefaults()
	}
	if code, done := parseArchiveFlags(fs, args, stdout, stderr); done {
		return code
	}
	if *in == "" {
		fmt.Fprintln(stderr, "tend import: --in FILE is required")
		return 2
	}
	f, err := os.Open(*in)
	if err != nil {
		fmt.Fprintln(stderr, "tend import:", err)
		return 1
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := node.Import(ctx, node.Config{DataDir: *data, StoreURL: *storeURL, Console: io.Discard}, f)
	if err != nil {
		fmt.Fprintln(stderr, "tend import:", err)
		return 1
	}
	where := "SQLite in " + *data
	if *storeURL != "" {
		where = postgres.Redact(*storeURL)
	}
	code := report(stdout, "imported into", where, st)
	if st.SecondFactors > 0 {
		fmt.Fprintf(stdout, "%d users have a second factor sealed with the exported data directory's web-session.key: copy that file into the data directory of every node serving this store\n", st.SecondFactors)
	}
	return code
}

func parseArchiveFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	if err := parseFlags(fs, args, stdout); err != nil {
		if err == flag.ErrHelp {
			return 0, true
		}
		fmt.Fprintf(stderr, "tend %s: %v\n", fs.Name(), err)
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tend %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, true
	}
	return 0, false
}

func report(stdout io.Writer, verb, where string, st archive.Stats) int {
	b, _ := json.Marshal(st)
	fmt.Fprintf(stdout, "%s %s: %s\n", verb, where, b)
	return 0
}
