// Package node wires one Tend process: store, durable stream, group commit,
// store writer, ingest pipeline, protocol listeners and the HTTP API. It is
// the only place that knows how the parts fit together.
package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/api"
	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/commit"
	"github.com/tendhealth/tend/internal/deviceca"
	"github.com/tendhealth/tend/internal/fhir"
	"github.com/tendhealth/tend/internal/hl7/inbound"
	"github.com/tendhealth/tend/internal/hl7/pcd"
	"github.com/tendhealth/tend/internal/httpguard"
	"github.com/tendhealth/tend/internal/ingest"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/mllp"
	"github.com/tendhealth/tend/internal/mqtt"
	"github.com/tendhealth/tend/internal/recorder"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/postgres"
	"github.com/tendhealth/tend/internal/store/sqlite"
	"github.com/tendhealth/tend/internal/stream"
	"github.com/tendhealth/tend/internal/tlsconf"
)

// Off disables a listener.
const Off = "off"

// Config is everything a node is started with (see `tend serve --help`).
type Config struct {
	DataDir        string
	HTTPAddr       string
	MQTTAddr       string
	MLLPAddr       string
	StoreURL       string     // "" = SQLite in DataDir
	NATSURLs       []string   // empty = embedded NATS JetStream
	NATSReplicas   int        // stream replicas; 0 = 1 embedded, 3 external
	NATSCreds      string     // .creds file for external NATS
	NATSNKeySeed   string     // NKey seed file for external NATS
	NATSTLS        stream.TLS // TLS to external NATS
	BootstrapToken string     // registered as an admin token on a store with no admin
	Logger         *slog.Logger
	Now            func() time.Time
	Console        io.Writer // where a first-start one-time password is printed
	SMTP           SMTP      // e-mail notifications; zero disables them

	// MLLPAutoRegister registers a device for an unknown HL7 equipment id
	// (OBX-18) instead of refusing the message.
	MLLPAutoRegister bool
	// HL7Forward sends readings to an EHR as HL7 ORU^R01; off when Addr is "".
	HL7Forward HL7Forward
	// HL7ADTBind binds the devices registered at a location to the patient
	// an ADT message puts there, and unbinds them when the patient leaves.
	HL7ADTBind bool

	// TLS is the server certificate of every listener; when set, HTTP and
	// MLLP speak TLS only, and MQTT over TLS listens on MQTTTLSAddr beside
	// plain MQTT.
	TLS         tlsconf.Files
	MQTTTLSAddr string           // "" or Off: no MQTT over TLS
	HTTPGuard   httpguard.Config // HTTP limits and timeouts; the zero value limits nothing
	// NATSEncryptionKey encrypts the embedded JetStream store at rest.
	NATSEncryptionKey string
	// SessionIdle signs a dashboard user out after this long without a
	// request (0: web.DefaultSessionIdle).
	SessionIdle time.Duration
	// RequireTOTP lists roles that must sign in with an authenticator app.
	RequireTOTP []store.Role
	// DeviceCAKey opens the organisations' device CA keys, so the API can
	// issue device certificates; nil: verify and revoke only (deviceca.go).
	DeviceCAKey *deviceca.Key
	// RevocationPoll is how often certificate revocations made elsewhere
	// are checked (0: deviceca.DefaultWatchInterval).
	RevocationPoll time.Duration
	// PublicURL is the base URL clients reach Tend at behind a proxy
	// (https://tend.example.org): the SMART token endpoint's audience and
	// advertised URL, and links in notifications. "" uses each request's own.
	PublicURL string
}

// Node is one running Tend process.
type Node struct {
	cfg Config

	store           store.Store
	stream          *stream.Stream
	commit          *commit.Committer
	work            *work
	recorderMetrics *recorder.Metrics
	pipeline        *ingest.Pipeline
	mqtt            *mqtt.Server
	mllp            *mllp.Server
	http            *http.Server
	httpLn          net.Listener
	registry        *prometheus.Registry
	alarms          *alarms
	hub             *live.Hub
	exporter        *fhir.Exporter    // FHIR Bulk Data $export jobs; nil without HTTP
	auditLog        *audit.Log        // the node's writer of the audit trail (audit.go)
	liveNC          *nats.Conn        // live fan-out between nodes; nil when embedded
	tls             *tlsconf.Reloader // nil when the listeners are plain
	forwarding      *hl7Fwd           // HL7 forwarding to an EHR; nil when off
	routes          []string          // HTTP route patterns, API then dashboard (web.go)

	// Device certificates for mutual TLS, and the watch that closes the
	// connections of certificates revoked elsewhere (deviceca.go).
	deviceCerts *deviceca.Verifier
	revocations *deviceca.Watcher

	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  bool
	mu     sync.Mutex
}

// New returns a node that does nothing until Start.
func New(cfg Config) *Node {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	return &Node{cfg: cfg}
}

// Addrs are the bound listener addresses ("" when off).
type Addrs struct {
	HTTP string `json:"http,omitempty"`
	MQTT string `json:"mqtt,omitempty"`
	MLLP string `json:"mllp,omitempty"`
	// MQTTTLS is MQTT over TLS.
	MQTTTLS string `json:"mqtt_tls,omitempty"`
}

// Start opens the store and stream, starts every listener, and writes
// DataDir/listen.json. On error everything started so far is closed.
func (n *Node) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	cfg := n.cfg
	log := cfg.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel

	n.registry = prometheus.NewRegistry()
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if n.store, err = openStore(ctx, cfg); err != nil {
		return err
	}

	if cfg.TLS.Enabled() {
		if n.tls, err = tlsconf.Load(cfg.TLS, tlsconf.Options{Logger: log, ClientVerifier: n.deviceCertVerifier()}); err != nil {
			return err
		}
	}
	if cfg.NATSEncryptionKey != "" && len(cfg.NATSURLs) > 0 {
		return errors.New("the NATS encryption key applies to embedded NATS only; encrypt external servers in their own configuration")
	}
	n.stream = stream.New(stream.Config{EncryptionKey: cfg.NATSEncryptionKey, Dir: filepath.Join(cfg.DataDir, "stream"), URLs: cfg.NATSURLs, Logger: log, Registerer: n.registry,
		Replicas: cfg.NATSReplicas, Credentials: cfg.NATSCreds, NKeySeedFile: cfg.NATSNKeySeed, TLS: cfg.NATSTLS,
		Durables: append([]string{recorder.DefaultDurable}, cfg.HL7Forward.durables()...)})
	if err := n.stream.Start(ctx); err != nil {
		if cfg.NATSEncryptionKey != "" {
			return fmt.Errorf("start stream (is the NATS encryption key the one this data directory was written with?): %w", err)
		}
		return fmt.Errorf("start stream: %w", err)
	}
	commitMetrics, err := commit.NewMetrics(n.registry)
	if err != nil {
		return err
	}
	n.commit = &commit.Committer{Pub: n.stream, Subject: stream.DefaultSubject, Metrics: commitMetrics}
	if err := n.commit.Start(runCtx); err != nil {
		return fmt.Errorf("start group commit: %w", err)
	}
	n.pipeline = ingest.NewPipeline(n.store, n.commit, cfg.Now, log, n.registry)
	n.pipeline.Certs = n.deviceCertVerifier()
	if n.recorderMetrics, err = recorder.NewMetrics(n.registry); err != nil {
		return err
	}
	n.hub = &live.Hub{}
	if err := n.startLiveFanOut(); err != nil {
		return err
	}

	mqttTLS := n.tls != nil && cfg.MQTTTLSAddr != "" && cfg.MQTTTLSAddr != Off
	if cfg.MQTTAddr != Off || mqttTLS {
		adapter := ingest.MQTT{P: n.pipeline}
		mm, err := mqtt.NewPrometheusMetrics(n.registry)
		if err != nil {
			return err
		}
		n.mqtt = &mqtt.Server{Addr: cfg.MQTTAddr, Auth: adapter, Handler: adapter, Logger: log, Now: cfg.Now, Metrics: mm}
		if cfg.MQTTAddr == Off {
			n.mqtt.Addr = "" // TLS only
		}
		if mqttTLS {
			n.mqtt.TLSAddr, n.mqtt.TLSConfig = cfg.MQTTTLSAddr, n.tls.ServerConfig()
		}
		if err := n.mqtt.Start(runCtx); err != nil {
			n.mqtt = nil
			if errors.Is(err, mqtt.ErrTLSListen) {
				return listenError("mqtt-tls", cfg.MQTTTLSAddr, err)
			}
			return listenError("mqtt", cfg.MQTTAddr, err)
		}
	}
	// After MQTT, so alarms can be sent down to patients' devices.
	if err := n.startAlarms(runCtx); err != nil {
		return err
	}
	// Then the leased work: rule partitions and the store writer.
	n.stream.AddFloor(n.alarms.evaluator.Floor)
	if err := n.prepareForwarding(); err != nil {
		return err
	}
	if err := n.startWork(runCtx); err != nil {
		return err
	}
	if cfg.MLLPAddr != Off {
		hm, err := inbound.NewMetrics(n.registry)
		if err != nil {
			return err
		}
		// Readings go through the pipeline's group commit, like every other
		// ingest path; refusals go to its dead-letter store.
		h := &inbound.Handler{Registry: n.store, Commit: n.commit, DeadLetters: n.pipeline, Alarms: n.alarms.service,
			AutoRegister: cfg.MLLPAutoRegister, Limits: pcd.DefaultLimits, Now: cfg.Now, Logger: log, Metrics: hm}
		if cfg.HL7ADTBind {
			h.Bind = &inbound.LocationBinder{Store: n.store, OnDeviceChanged: n.pipeline.InvalidateDevice, Logger: log}
		}
		n.pipeline.Replayers = map[string]func(context.Context, ingest.Request) (int, error){inbound.ContentType: h.Replay}
		n.mllp = &mllp.Server{Addr: cfg.MLLPAddr, Handler: h, Logger: log}
		if n.tls != nil {
			n.mllp.TLSConfig = n.tls.ServerConfig()
			if cfg.TLS.ClientCAFile != "" {
				// HL7 v2 has no authentication of its own: with a client CA,
				// the certificate is the sender's only credential.
				n.mllp.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
			}
		}
		if err := n.mllp.Start(runCtx); err != nil {
			n.mllp = nil
			return listenError("mllp", cfg.MLLPAddr, err)
		}
	}
	if cfg.HTTPAddr != Off {
		var kickers []api.Kicker
		if n.mqtt != nil {
			kickers = append(kickers, n.mqtt)
		}
		n.exporter = fhir.NewExporter(fhir.ExportConfig{Store: n.store, Access: access.New(n.store, cfg.Now), Now: cfg.Now, Logger: log, Workers: 2})
		if err := n.exporter.Start(runCtx); err != nil {
			return err
		}
		fh := fhir.NewHandler(fhir.Config{Store: n.store, Now: cfg.Now, Logger: log, OnDeviceChanged: n.pipeline.InvalidateDevice,
			Commit: n.commit, Access: access.New(n.store, cfg.Now), Export: n.exporter})
		checker, sessionKey, err := n.signInChecker() // people.go
		if err != nil {
			return err
		}
		h := api.New(api.Config{
			Store: n.store, Ingest: n.pipeline, FHIR: fh, Ready: n.readyErr, Kickers: kickers, Now: cfg.Now, Logger: log,
			Metrics: promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}),
			Alarms:  n.alarms.service, AlarmStore: n.alarms.db, Profiles: n.alarms.profiles, Live: n.hub,
			AuditEvents: n.auditEvents(),
			SignIn:      checker,
			DeviceCA:    n.deviceCA(),
			PublicURL:   cfg.PublicURL,
		})
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return listenError("http", cfg.HTTPAddr, err)
		}
		n.httpLn = ln
		root, err := n.withDashboard(h, kickers, checker, sessionKey)
		if err != nil {
			ln.Close()
			return err
		}
		guard := httpguard.New(cfg.HTTPGuard, n.auditing(root)) // every PHI request is audited, fail-closed
		n.http = &http.Server{Handler: guard, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		guard.ConfigureServer(n.http)
		if n.tls != nil {
			n.http.TLSConfig = n.tls.ServerConfig()
		}
		n.http.RegisterOnShutdown(n.hub.Close) // ends live streams so Shutdown need not wait for them
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			serve := n.http.Serve
			if n.tls != nil {
				// The certificate comes from TLSConfig; ServeTLS adds HTTP/2.
				serve = func(ln net.Listener) error { return n.http.ServeTLS(ln, "", "") }
			}
			if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("HTTP server stopped", "err", err)
			}
		}()
	}
	if err := n.startRevocationWatch(runCtx); err != nil {
		return err
	}
	// Only now, with every listener bound, may a first start create the
	// admin: a start that fails earlier must not use up the one-time password.
	if err := bootstrap(ctx, n.store, cfg); err != nil {
		return err
	}
	addrs := n.Addrs()
	if err := writeListenFile(cfg.DataDir, addrs); err != nil {
		return err
	}
	n.mu.Lock()
	n.ready = true
	n.mu.Unlock()
	log.Info("tend is listening", "http", orOff(addrs.HTTP), "mqtt", orOff(addrs.MQTT), "mllp", orOff(addrs.MLLP),
		"mqtt_tls", orOff(addrs.MQTTTLS), "tls", n.tls != nil, "data", cfg.DataDir)
	return nil
}

// Close stops everything in the reverse order of Start.
func (n *Node) Close() error {
	n.mu.Lock()
	n.ready = false
	n.mu.Unlock()
	var errs []error
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, n.http.Shutdown(ctx))
		cancel()
	}
	errs = append(errs, n.stopRevocationWatch())
	if n.exporter != nil { // before the store: a job cut short resumes when its lease ends
		errs = append(errs, n.exporter.Close())
	}
	if n.mqtt != nil {
		errs = append(errs, n.mqtt.Close())
	}
	if n.mllp != nil {
		errs = append(errs, n.mllp.Close())
	}
	// Handing the leases over saves the rule partitions and stops the
	// store writer; the evaluator commits derived readings, so it closes
	// before the commit.
	errs = append(errs, n.work.close())
	errs = append(errs, n.alarms.close())
	if n.commit != nil {
		errs = append(errs, n.commit.Close())
	}
	if n.hub != nil {
		n.hub.Close()
	}
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	if n.stream != nil {
		errs = append(errs, n.stream.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}

// newRecorder is a store writer; one runs while this node holds its lease.
func (n *Node) newRecorder() *recorder.Recorder {
	cfg := n.cfg
	return &recorder.Recorder{Stream: n.stream, Store: n.store, Logger: cfg.Logger, Now: cfg.Now, Metrics: n.recorderMetrics,
		OnStored: n.publishReadings,
		OnPoison: func(data []byte, perr error) {
			dl := &store.DeadLetter{Received: cfg.Now().UTC(), Source: "stream", ContentType: "application/x-tend-batch", Payload: data,
				Reason: "stream message could not be decoded: " + perr.Error()}
			if err := n.store.AddDeadLetter(context.Background(), dl); err != nil {
				cfg.Logger.Error("keep undecodable stream message", "err", err)
			}
		}}
}

func (n *Node) readyErr() error {
	n.mu.Lock()
	ready := n.ready
	n.mu.Unlock()
	if !ready {
		return errors.New("starting")
	}
	if err := n.stream.Ready(); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	return nil
}

// Store exposes the node's store (tests and operator commands).
func (n *Node) Store() store.Store { return n.store }

func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	u := cfg.StoreURL
	switch {
	case u == "":
		return sqlite.Open(filepath.Join(cfg.DataDir, "tend.db"))
	case strings.HasPrefix(u, "sqlite:"):
		return sqlite.Open(strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "//"))
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		s, err := postgres.Open(ctx, u, postgres.WithClock(cfg.Now), postgres.WithLogger(cfg.Logger))
		if err != nil {
			return nil, fmt.Errorf("--store %s: %w", postgres.Redact(u), err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("--store %q: use sqlite:PATH or postgres://...", postgres.Redact(u))
}

// listenError says which flag to change when a listener cannot bind.
func listenError(flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("--%s %s: the address is already in use (another server on that port?); choose another with --%s ADDR or disable it with --%s off", flag, addr, flag, flag)
	}
	return fmt.Errorf("--%s %s: %w", flag, addr, err)
}

// dialable turns a wildcard listen address into one a local client can dial.
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func orOff(s string) string {
	if s == "" {
		return Off
	}
	return s
}

// writeListenFile writes DIR/listen.json atomically so a reader never sees
// half a file.
func writeListenFile(dir string, a Addrs) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".listen.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write listen.json: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "listen.json"))
}

// Addrs returns the bound listener addresses.
func (n *Node) Addrs() Addrs {
	var a Addrs
	if n.httpLn != nil {
		a.HTTP = dialable(n.httpLn.Addr())
	}
	if n.mqtt != nil {
		if la := n.mqtt.ListenAddr(); la != nil {
			a.MQTT = dialable(la)
		}
		if la := n.mqtt.TLSListenAddr(); la != nil {
			a.MQTTTLS = dialable(la)
		}
	}
	if n.mllp != nil {
		a.MLLP = dialable(n.mllp.ListenAddr())
	}
	return a
}
