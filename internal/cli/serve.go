package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tendhealth/tend/internal/node"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./tend-data", "data directory (stream, database, listen.json)")
	httpAddr := fs.String("http", ":8080", "HTTP listen address (API, FHIR, metrics); 'off' disables it; port 0 picks a free port")
	mqttAddr := fs.String("mqtt", ":1883", "MQTT listen address; 'off' disables it")
	mllpAddr := fs.String("mllp", ":2575", "HL7 v2 MLLP listen address; 'off' disables it")
	storeURL := fs.String("store", "", "store URL: empty for SQLite in the data directory, sqlite:PATH, or postgres://...")
	natsURL := fs.String("nats-url", "", "external NATS JetStream servers, comma separated; empty runs NATS embedded")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tend serve [flags]\n\nFlags (each also TEND_<FLAG>, e.g. TEND_HTTP=:9090):")
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output(), "\nTEND_BOOTSTRAP_TOKEN=<secret> registers that secret as an admin API token on a store with no admin yet.")
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "tend serve:", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tend serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "tend serve:", err)
		return 2
	}
	var urls []string
	for _, u := range strings.Split(*natsURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	n := node.New(node.Config{
		DataDir: *data, HTTPAddr: *httpAddr, MQTTAddr: *mqttAddr, MLLPAddr: *mllpAddr,
		StoreURL: *storeURL, NATSURLs: urls, BootstrapToken: os.Getenv("TEND_BOOTSTRAP_TOKEN"),
		Logger: log, Console: stdout,
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Start(ctx); err != nil {
		log.Error("tend could not start", "err", err)
		return 1
	}
	<-ctx.Done()
	log.Info("shutting down")
	if err := n.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}
