// Package cli parses the command line and runs tend's subcommands.
package cli

import "io"

// Run executes the subcommand named by args and returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int { return 0 }
