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
	"github.com/tendhealth/tend/internal/stream"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./tend-data", "data directory (stream, database, listen.json)")
	httpAddr := fs.String("http", ":8080", "HTTP listen address (API, FHIR, metrics); 'off' disables it; port 0 picks a free port")
	mqttAddr := fs.String("mqtt", ":1883", "MQTT listen address; 'off' disables it")
	mllpAddr := fs.String("mllp", ":2575", "HL7 v2 MLLP listen address; 'off' disables it")
	mllpAutoRegister := fs.Bool("mllp-auto-register", false, "register a device for an unknown HL7 equipment identifier (OBX-18) instead of refusing the message")
	storeURL := fs.String("store", "", "store URL: empty for SQLite in the data directory, sqlite:PATH, or postgres://...")
	natsURL := fs.String("nats-url", "", "external NATS JetStream servers, comma separated; empty runs NATS embedded")
	natsReplicas := fs.Int("nats-replicas", 0, "replicas of Tend's stream on external NATS; 0 means 3 (use 1 for a single server)")
	natsCreds := fs.String("nats-creds", "", "NATS credentials file (.creds: user JWT and NKey seed) for external NATS")
	natsNKeySeed := fs.String("nats-nkey-seed", "", "file holding an NKey user seed for external NATS")
	natsTLSCA := fs.String("nats-tls-ca", "", "PEM CA file that signs the external NATS servers' certificates (turns TLS on)")
	natsTLSCert := fs.String("nats-tls-cert", "", "PEM client certificate for external NATS servers that verify clients")
	natsTLSKey := fs.String("nats-tls-key", "", "PEM key of --nats-tls-cert")
	smtpAddr := fs.String("smtp-addr", "", "SMTP server host:port for e-mail notifications; empty disables e-mail")
	smtpFrom := fs.String("smtp-from", "", "sender address of notification e-mails")
	smtpUser := fs.String("smtp-username", "", "SMTP user name (the password is read from TEND_SMTP_PASSWORD only)")
	smtpTLS := fs.Bool("smtp-starttls", true, "require STARTTLS to the SMTP server (not needed for a server on loopback)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	demoMode := fs.Bool("demo", false, "seed a demo organisation (users, 30 ward and 50 home patients with devices; reused on the next start) and run the device simulator against this node")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tend serve [flags]\n\nFlags (each also TEND_<FLAG>, e.g. TEND_HTTP=:9090):")
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output(), "\nTEND_BOOTSTRAP_TOKEN=<secret> registers that secret as an admin API token on a store with no admin yet.")
		fmt.Fprintln(fs.Output(), "TEND_SMTP_PASSWORD=<password> is the SMTP password (never a flag: flags show in process lists).")
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
	natsTLS := stream.TLS{CAFile: *natsTLSCA, CertFile: *natsTLSCert, KeyFile: *natsTLSKey}
	n := node.New(node.Config{
		DataDir: *data, HTTPAddr: *httpAddr, MQTTAddr: *mqttAddr, MLLPAddr: *mllpAddr, MLLPAutoRegister: *mllpAutoRegister,
		StoreURL: *storeURL, BootstrapToken: os.Getenv("TEND_BOOTSTRAP_TOKEN"),
		NATSURLs: urls, NATSReplicas: *natsReplicas, NATSCreds: *natsCreds, NATSNKeySeed: *natsNKeySeed, NATSTLS: natsTLS,
		Logger: log, Console: stdout,
		SMTP: node.SMTP{Addr: *smtpAddr, From: *smtpFrom, Username: *smtpUser, Password: os.Getenv("TEND_SMTP_PASSWORD"), StartTLS: *smtpTLS},
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Start(ctx); err != nil {
		log.Error("tend could not start", "err", err)
		return 1
	}
	demoDone := startDemo(ctx, *demoMode, n, *data, stdout, log)
	<-ctx.Done()
	log.Info("shutting down")
	<-demoDone
	if err := n.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}
