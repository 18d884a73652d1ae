// Package cli parses the command line and runs tend's subcommands. Every
// flag of a subcommand can also be set as an environment variable
// TEND_<FLAG> (upper snake case); a flag on the command line wins.
package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run Tend: ingest, storage, FHIR and HTTP API", runServe},
		{"bench", "load-test a Tend server over MQTT or HTTP and record the result", runBench},
		{"simulate", "simulate patients and devices with scenarios; evaluate Tend's alarms against the ground truth", runSimulate},
		{"migrate", "bring the database schema up to date and exit", runMigrate},
		{"audit", "verify the tamper-evident audit trail (audit verify)", runAudit},
		{"export", "write an embedded installation to a file, to move it to scale-out", runExport},
		{"import", "load an export into a new store (PostgreSQL for scale-out)", runImport},
		{"certs", "write a development CA and TLS certificates (tend certs dev)", runCerts},
		{"ca", "device certificates for mutual TLS: per-organisation CA, issue, revoke", runCA},
		{"version", "print the version", runVersion},
		{"help", "show help for a command", runHelp},
	}
}

// Run executes the subcommand named by args and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "-help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "tend: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Tend: an Internet of Medical Things platform.\n\nUsage: tend <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'tend help <command>' for its flags. Every flag is also an environment variable TEND_<FLAG>.")
}

func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] && c.name != "help" {
			return c.run([]string{"-h"}, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "tend: unknown command %q\n", args[0])
	return 2
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "tend %s\n", Version())
	return 0
}

// Version is the module version and VCS revision the binary was built from.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

// parseFlags parses args into fs after applying TEND_* environment
// variables, so that the command line overrides the environment. Help that
// was asked for goes to stdout; usage after a mistake stays on stderr.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(stdout)
		}
		if a == "--" {
			break
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		env := "TEND_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok, e := lookupEnv(env) // or TEND_<FLAG>_FILE
		if e != nil {
			err = e
			return
		}
		if ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("environment %s: %w", env, e)
			}
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}
