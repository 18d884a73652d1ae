package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/tendhealth/tend/internal/certs"
)

func runCerts(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		w := stderr
		if len(args) > 0 {
			w = stdout
		}
		fmt.Fprintln(w, "Usage: tend certs dev --out DIR [--host NAME,IP,...] [--force]\n\n"+
			"dev  writes a development CA and a server and a client certificate signed by it")
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] != "dev" {
		fmt.Fprintf(stderr, "tend certs: unknown subcommand %q (try 'tend certs dev')\n", args[0])
		return 2
	}
	fs := flag.NewFlagSet("certs dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem, client-key.pem")
	hosts := fs.String("host", "", "extra server names or IP addresses, comma separated (localhost, 127.0.0.1 and ::1 are always included)")
	client := fs.String("client-name", certs.DefaultClient, "common name of the client certificate")
	force := fs.Bool("force", false, "replace existing files")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tend certs dev --out DIR [flags]\n\n"+
			"Writes a development CA and certificates (ECDSA P-256; keys readable by you only).\n"+
			"For development and tests only: use your organisation's CA in production.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "tend certs dev:", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tend certs dev: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "tend certs dev: --out DIR is required")
		return 2
	}
	var extra []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			extra = append(extra, h)
		}
	}
	set, err := certs.Dev(certs.Options{Hosts: extra, ClientName: *client})
	if err != nil {
		fmt.Fprintln(stderr, "tend certs dev:", err)
		return 1
	}
	written, err := set.Write(*out, *force)
	if err != nil {
		fmt.Fprintln(stderr, "tend certs dev:", err)
		if errors.Is(err, certs.ErrExists) {
			return 2
		}
		return 1
	}
	for _, f := range written {
		fmt.Fprintln(stdout, "wrote", f)
	}
	d := *out
	fmt.Fprintf(stdout, "\nServe with TLS on every listener (HTTPS, MQTT over TLS on :8883, MLLP over TLS):\n"+
		"  tend serve --tls-cert %s --tls-key %s\n"+
		"and trust %s in clients, e.g. curl --cacert %s https://localhost:8080/healthz\n",
		filepath.Join(d, certs.ServerFile), filepath.Join(d, certs.ServerKeyFile), filepath.Join(d, certs.CAFile), filepath.Join(d, certs.CAFile))
	return 0
}
