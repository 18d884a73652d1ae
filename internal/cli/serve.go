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
	"time"

	"github.com/tendhealth/tend/internal/httpguard"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/stream"
	"github.com/tendhealth/tend/internal/tlsconf"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./tend-data", "data directory (stream, database, listen.json)")
	httpAddr := fs.String("http", ":8080", "HTTP listen address (API, FHIR, metrics); 'off' disables it; port 0 picks a free port")
	mqttAddr := fs.String("mqtt", ":1883", "MQTT listen address; 'off' disables it")
	mllpAddr := fs.String("mllp", ":2575", "HL7 v2 MLLP listen address; 'off' disables it")
	mllpAutoRegister := fs.Bool("mllp-auto-register", false, "register a device for an unknown HL7 equipment identifier (OBX-18) instead of refusing the message")
	hl7Forward := fs.String("hl7-forward", "", "forward every reading as HL7 ORU^R01 to this EHR MLLP endpoint (HOST:PORT); empty disables it")
	hl7ForwardCA := fs.String("hl7-forward-tls-ca", "", "PEM CA of the EHR's certificate: forward over TLS")
	hl7ForwardFacility := fs.String("hl7-forward-sending-facility", "", "MSH-4 sending facility of forwarded messages")
	hl7ForwardApp := fs.String("hl7-forward-receiving-app", "", "MSH-5 receiving application of forwarded messages")
	hl7ForwardRecvFacility := fs.String("hl7-forward-receiving-facility", "", "MSH-6 receiving facility of forwarded messages")
	hl7ADTBind := fs.Bool("hl7-adt-bind", false, "on HL7 ADT admit or transfer, bind the devices registered at the patient's location (PV1-3) to the patient; unbind on discharge or transfer away")
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
	tlsCert := fs.String("tls-cert", "", "PEM server certificate (with chain) for every listener: HTTPS, MQTT over TLS (--mqtt-tls) and MLLP over TLS; reloaded when the file changes")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	tlsClientCA := fs.String("tls-client-ca", "", "PEM CA: client certificates, when a client presents one, must be signed by it")
	caKeyFile := fs.String("ca-key-file", "", "file with the key given to tend ca init: lets this node issue device certificates (POST /api/v1/devices/{id}/certificates)")
	mqttTLSAddr := fs.String("mqtt-tls", ":8883", "MQTT over TLS listen address, used when --tls-cert is set; 'off' disables it")
	limitLoopback := fs.Bool("http-limit-loopback", false, "apply the HTTP limits to clients on loopback too (local tools, or a proxy on this host not listed in --trusted-proxy)")
	trustedProxy := fs.String("trusted-proxy", "", "reverse proxies (addresses or CIDRs, comma separated) whose X-Forwarded-For and X-Forwarded-Proto are believed")
	httpRate := fs.Float64("http-rate", 100, "HTTP requests per second per client (remote address); 0 disables the limit")
	httpBurst := fs.Int("http-burst", 200, "HTTP requests a client may send at once above --http-rate")
	httpConc := fs.Int("http-concurrency", 64, "concurrent HTTP requests per client; 0 disables the limit")
	ingestRate := fs.Float64("http-ingest-rate", 10000, "device ingest POSTs per second per client (a gateway may carry many devices); 0 disables the limit")
	ingestBurst := fs.Int("http-ingest-burst", 20000, "device ingest POSTs a client may send at once above --http-ingest-rate")
	ingestConc := fs.Int("http-ingest-concurrency", 2048, "concurrent device ingest POSTs per client; 0 disables the limit")
	httpStreams := fs.Int("http-streams", 32, "open event streams (SSE) per client; 0 disables the limit")
	httpMaxBody := fs.Int64("http-max-body", 16<<20, "largest HTTP request body in bytes (endpoints have their own, smaller limits)")
	natsKeyFile := fs.String("nats-encryption-key-file", "", "file holding the key that encrypts the embedded JetStream store at rest (or the key itself in TEND_NATS_ENCRYPTION_KEY)")
	publicURL := fs.String("public-url", "", "base URL clients reach Tend at, e.g. https://tend.example.org behind a proxy: the SMART token endpoint's audience and advertised URL, and links in notifications")
	sessionIdle := fs.Duration("session-idle", 15*time.Minute, "sign a dashboard user out after this long without a request (sessions end 12 h after sign-in regardless)")
	requireTOTP := fs.String("require-totp", "", "roles that must sign in with an authenticator app (TOTP), comma separated, e.g. admin,clinician")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	demoMode := fs.Bool("demo", false, "seed a demo organisation (users, 30 ward and 50 home patients with devices; reused on the next start) and run the device simulator against this node")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tend serve [flags]\n\nFlags (each also TEND_<FLAG>, e.g. TEND_HTTP=:9090):")
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output(), "\nTEND_BOOTSTRAP_TOKEN=<secret> registers that secret as an admin API token on a store with no admin yet.")
		fmt.Fprintln(fs.Output(), "TEND_SMTP_PASSWORD=<password> is the SMTP password (never a flag: flags show in process lists).")
		fmt.Fprintln(fs.Output(), "Any TEND_<NAME>_FILE=<path> gives TEND_<NAME> the contents of that file instead, e.g. TEND_BOOTSTRAP_TOKEN_FILE.")
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
	sec, err := serveSecrets(*natsKeyFile)
	if err != nil {
		fmt.Fprintln(stderr, "tend serve:", err)
		return 2
	}
	caKey, err := caKeyFromFile(*caKeyFile) // ca.go
	if err != nil {
		fmt.Fprintln(stderr, "tend serve:", err)
		return 2
	}
	totpRoles, err := parseRoles(*requireTOTP) // people.go
	if err != nil {
		fmt.Fprintf(stderr, "tend serve: --require-totp: %v\n", err)
		return 2
	}
	if *sessionIdle <= 0 {
		fmt.Fprintln(stderr, "tend serve: --session-idle must be positive, e.g. 15m")
		return 2
	}
	pubURL, err := parsePublicURL(*publicURL) // publicurl.go
	if err != nil {
		fmt.Fprintf(stderr, "tend serve: --public-url: %v\n", err)
		return 2
	}
	proxies, err := httpguard.ParseProxies(*trustedProxy)
	if err != nil {
		fmt.Fprintf(stderr, "tend serve: --trusted-proxy: %v\n", err)
		return 2
	}
	guard := httpguard.Config{
		API:     httpguard.Limit{Rate: *httpRate, Burst: *httpBurst, Concurrency: *httpConc},
		Ingest:  httpguard.Limit{Rate: *ingestRate, Burst: *ingestBurst, Concurrency: *ingestConc},
		Streams: *httpStreams, MaxBody: *httpMaxBody, TrustedProxies: proxies, LimitLoopback: *limitLoopback,
	}
	n := node.New(node.Config{
		DataDir: *data, HTTPAddr: *httpAddr, MQTTAddr: *mqttAddr, MLLPAddr: *mllpAddr, MLLPAutoRegister: *mllpAutoRegister,
		HL7ADTBind: *hl7ADTBind, HL7Forward: node.HL7Forward{Addr: *hl7Forward, TLSCA: *hl7ForwardCA, SendingFacility: *hl7ForwardFacility,
			ReceivingApp: *hl7ForwardApp, ReceivingFacility: *hl7ForwardRecvFacility},
		StoreURL: *storeURL, BootstrapToken: sec.bootstrapToken,
		NATSURLs: urls, NATSReplicas: *natsReplicas, NATSCreds: *natsCreds, NATSNKeySeed: *natsNKeySeed, NATSTLS: natsTLS,
		Logger: log, Console: stdout,
		TLS:         tlsconf.Files{CertFile: *tlsCert, KeyFile: *tlsKey, ClientCAFile: *tlsClientCA},
		MQTTTLSAddr: *mqttTLSAddr, HTTPGuard: guard, NATSEncryptionKey: sec.natsKey,
		SessionIdle: *sessionIdle, RequireTOTP: totpRoles, DeviceCAKey: caKey, PublicURL: pubURL,
		SMTP: node.SMTP{Addr: *smtpAddr, From: *smtpFrom, Username: *smtpUser, Password: sec.smtpPassword, StartTLS: *smtpTLS},
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
