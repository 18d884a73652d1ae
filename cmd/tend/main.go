// Command tend is the Tend IoMT platform: one binary for the server, the
// load generator and the operator tools.
package main

import (
	"os"

	"github.com/tendhealth/tend/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
