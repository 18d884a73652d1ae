// Package stream is Tend's durable stream of readings: NATS JetStream, either
// embedded in the process (single node) or an external cluster (scale-out).
// Both modes use the same client code; only how the connection is made
// differs.
//
// Durability: a Publish returns only after the JetStream PubAck, that is
// after the message is stored. The embedded server runs with SyncAlways, so
// "stored" means fsynced — JetStream's default lazy fsync acknowledges writes
// it can lose on power failure.
//
// External cluster: Config.URLs lists one or more servers (the client also
// uses the servers the cluster advertises, and reconnects forever with a
// capped backoff). The stream then has 3 replicas unless Config.Replicas
// says otherwise, and the PubAck of a replicated stream means a quorum of
// the replicas (2 of 3) stored the message. Whether "stored" means on disk
// is the operator's configuration, which Tend cannot see from a client
// connection: set jetstream { sync_interval: always } on every server (the
// 2025 Jepsen analysis of NATS 2.12 found acknowledged writes lost with the
// default lazy fsync when several nodes lose power together), and place the
// servers in separate failure domains. Tend also cannot check the servers'
// clocks, disks, or that the replicas are on distinct machines. Credentials
// (a .creds file, an NKey seed file, or user:password in the URL) and TLS
// (CA, client certificate) are passed through; passwords never reach the log
// or an error message. Starting against a cluster with fewer JetStream
// servers than replicas fails with an error saying so.
//
// The stream and its durable consumers are created or updated in Start, so
// a changed Replicas, MaxAge or MaxBytes takes effect at the next start;
// consumers that already exist are left as they are (the store writer
// positions its durable at its acknowledgement floor).
//
// Retention: the stream holds the backlog, not history (at 100k readings/s,
// keeping consumed messages would cost hundreds of GB a day). Every
// CompactInterval the stream is purged below the ack floor of the slowest
// durable consumer named in Config.Durables (store writer, later rules and
// fan-out), which removes whole blocks at once. JetStream's interest
// retention would do the same per message, but with fsync on every write
// each removal costs an fsync, and the store writer then falls behind at a
// few hundred messages a second. The durables are created in Start, before
// anything can publish. Messages are kept at most MaxAge (7 days by default)
// and, when MaxBytes is set, new publishes are refused once the backlog is
// full (discard new) instead of silently dropping the oldest, unconsumed,
// messages. A refused publish is an error to the ingest path,
// which then does not acknowledge the device, so nothing acknowledged is
// ever lost short of a consumer being down longer than MaxAge.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Names of the stream and its subjects.
const (
	StreamName = "TEND_READINGS"
	Subjects   = "tend.readings.>"
	// DefaultSubject is where readings are published until patients are
	// partitioned across subjects in scale-out mode.
	DefaultSubject = "tend.readings.all"
)

// MaxMessageSize is the largest message the stream accepts (and the embedded
// server's max payload).
const MaxMessageSize = 8 << 20

const (
	defaultMaxAge = 7 * 24 * time.Hour
	// defaultConsumeBatch is the fetch size a consumer is created with.
	defaultConsumeBatch = 64
	maxAckPending       = 1 << 16
	duplicateWindow     = 2 * time.Minute
	defaultAckWait      = 30 * time.Second
	readyTimeout        = 2 * time.Second
	serverStartWait     = 30 * time.Second
	maxHandlerBackoff   = 5 * time.Second
	publishRetryWait    = 100 * time.Millisecond
	// pullExpiry bounds each pull request. A pull that reaches a clustered
	// consumer while its leader is being elected, or an ordered consumer
	// whose server died, is lost; the client notices only after two missed
	// heartbeats (half the expiry each), so the 30 s default stalls
	// delivery for half a minute after a fail-over.
	pullExpiry = 2 * time.Second
	// publishRetryAttempts covers a leader election (seconds); ctx, or the
	// client's default 5 s timeout, may end the retries sooner.
	publishRetryAttempts = 50
)

// ErrNotStarted is returned by methods called before Start or after Close.
var ErrNotStarted = errors.New("stream not started")

// Config configures a Stream.
type Config struct {
	Dir  string   // embedded store directory (embedded mode only)
	URLs []string // external NATS servers; empty means embedded
	// Replicas of the stream; 0 means 1 embedded and 3 with URLs (1 suits
	// a single external server).
	Replicas int
	MaxBytes int64         // stream size limit; 0 means unlimited (disk-bound)
	MaxAge   time.Duration // 0 means 7 days
	// AckWait is how long a delivered, unacknowledged message waits before
	// redelivery; 0 means 30 s. It must exceed the slowest store append.
	AckWait time.Duration
	// Durables are the consumers created in Start; messages are purged once
	// all of them have acknowledged them. Consume must use one of these names.
	Durables []string
	// CompactInterval is how often acknowledged messages are purged; 0 means
	// 5 s.
	CompactInterval time.Duration
	// Credentials is a NATS .creds file (user JWT and NKey seed) for
	// external servers; empty means none.
	Credentials string
	// NKeySeedFile holds an NKey user seed, for servers configured with
	// nkey users instead of JWTs; empty means none.
	NKeySeedFile string
	// TLS for external servers; the zero value means TLS only if a URL
	// says tls:// (verified against the system roots). User and password
	// may also be given in a URL.
	TLS TLS
	// EncryptionKey, when set, encrypts the embedded JetStream store at
	// rest (AES-GCM, keys derived from it by NATS). Losing it loses the
	// unconsumed stream; changing it needs the old one once. External
	// servers are configured by their operators.
	EncryptionKey string
	Logger        *slog.Logger
	// Registerer receives the stream metrics; nil means no metrics.
	Registerer prometheus.Registerer
}

// Stream is a connection to the readings stream.
type Stream struct {
	cfg Config
	log *slog.Logger

	publishSeconds prometheus.Histogram

	mu     sync.Mutex
	floors []func(ctx context.Context) (uint64, error)
	ns     *server.Server // nil in external mode
	nc     *nats.Conn
	js     jetstream.JetStream
	closed bool
	stop   chan struct{} // closed by Close: stops the compactor
	done   chan struct{} // closed when the compactor returned
}

// New returns an unstarted Stream; it has no side effects.
func New(cfg Config) *Stream {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
		if len(cfg.URLs) > 0 {
			cfg.Replicas = defaultClusterReplicas
		}
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = defaultMaxAge
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = defaultAckWait
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stream{cfg: cfg, log: log.With("component", "stream")}
}

// Start connects (starting the embedded server first in embedded mode) and
// creates or updates the stream.
func (s *Stream) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nc != nil {
		return errors.New("stream: already started")
	}
	if err := s.registerMetrics(); err != nil {
		return err
	}
	var nc *nats.Conn
	var ns *server.Server
	var err error
	if len(s.cfg.URLs) == 0 {
		ns, nc, err = s.startEmbedded()
	} else {
		nc, err = s.connectExternal()
	}
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err == nil && ns != nil {
		err = s.ensureStream(ctx, js)
	} else if err == nil {
		err = s.ensureStreamRetrying(ctx, js)
	}
	if err != nil {
		nc.Close()
		if ns != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
		return err
	}
	s.ns, s.nc, s.js = ns, nc, js
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.compactLoop(js)
	return nil
}

// compactLoop purges acknowledged messages every CompactInterval.
func (s *Stream) compactLoop(js jetstream.JetStream) {
	defer close(s.done)
	interval := s.cfg.CompactInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		if err := s.compact(ctx, js); err != nil {
			s.log.Warn("stream compaction", "err", err)
		}
		cancel()
	}
}

// AddFloor registers a consumer that keeps its position outside the stream
// (ConsumeOrdered): floor returns the highest sequence it no longer needs,
// and compaction keeps everything after it.
func (s *Stream) AddFloor(floor func(ctx context.Context) (uint64, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.floors = append(s.floors, floor)
}

// compact purges every message that all durable consumers acknowledged and
// every floor has passed.
func (s *Stream) compact(ctx context.Context, js jetstream.JetStream) error {
	s.mu.Lock()
	floors := slices.Clone(s.floors)
	s.mu.Unlock()
	if len(s.cfg.Durables) == 0 && len(floors) == 0 {
		return nil
	}
	floor := uint64(math.MaxUint64)
	for _, d := range s.cfg.Durables {
		c, err := js.Consumer(ctx, StreamName, d)
		if err != nil {
			return fmt.Errorf("consumer %q: %w", d, err)
		}
		floor = min(floor, c.CachedInfo().AckFloor.Stream)
	}
	for _, f := range floors {
		seq, err := f(ctx)
		if err != nil {
			return fmt.Errorf("consumer floor: %w", err)
		}
		floor = min(floor, seq)
	}
	if floor == 0 {
		return nil
	}
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		return err
	}
	if st.CachedInfo().State.FirstSeq > floor {
		return nil // nothing acknowledged since the last purge
	}
	// Purge keeps floor+1 and later: everything below was acknowledged.
	return st.Purge(ctx, jetstream.WithPurgeSequence(floor+1))
}

func (s *Stream) registerMetrics() error {
	if s.cfg.Registerer == nil || s.publishSeconds != nil {
		return nil
	}
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tend_stream_publish_seconds",
		Help:    "Time from publish to JetStream acknowledgement (stored, and fsynced when embedded).",
		Buckets: []float64{0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	})
	if err := s.cfg.Registerer.Register(h); err != nil {
		return fmt.Errorf("stream: register metrics: %w", err)
	}
	s.publishSeconds = h
	return nil
}

func (s *Stream) startEmbedded() (*server.Server, *nats.Conn, error) {
	if s.cfg.Dir == "" {
		return nil, nil, errors.New("stream: embedded mode needs a store directory")
	}
	opts := &server.Options{
		ServerName: "tend-embedded",
		DontListen: true, // in-process connections only; no TCP port
		JetStream:  true,
		StoreDir:   s.cfg.Dir,
		SyncAlways: true, // fsync every write before the PubAck
		MaxPayload: MaxMessageSize,
		NoSigs:     true, // the host process owns signal handling
		NoLog:      true,
	}
	if s.cfg.EncryptionKey != "" {
		opts.JetStreamKey = s.cfg.EncryptionKey
		opts.JetStreamCipher = server.AES
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("stream: configure embedded server: %w", err)
	}
	ns.SetLoggerV2(serverLog{s.log.With("server", "nats")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(serverStartWait) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, nil, errors.New("stream: embedded server did not become ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("tend"))
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, nil, fmt.Errorf("stream: connect to embedded server: %w", err)
	}
	return ns, nc, nil
}

func (s *Stream) streamConfig() jetstream.StreamConfig {
	maxBytes := s.cfg.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Tend readings, durable before acknowledgement",
		Subjects:    []string{Subjects},
		Storage:     jetstream.FileStorage,
		Replicas:    s.cfg.Replicas,
		Retention:   jetstream.LimitsPolicy, // trimmed by compact, see the package doc
		Discard:     jetstream.DiscardNew,   // refuse rather than drop unconsumed data
		MaxAge:      s.cfg.MaxAge,
		MaxBytes:    maxBytes,
		MaxMsgs:     -1,
		MaxMsgSize:  MaxMessageSize,
		Duplicates:  duplicateWindow,
	}
}

func (s *Stream) consumerConfig(durable string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: durable,
		// One ack per batch: under interest retention every ack removes
		// messages from a store that fsyncs each write.
		AckPolicy:  jetstream.AckAllPolicy,
		AckWait:    s.cfg.AckWait,
		MaxDeliver: -1,
		// Generous: a consumer that acknowledges only at its checkpoints
		// (ConsumeManual) holds many messages unacknowledged meanwhile.
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: Subjects,
	}
}

func (s *Stream) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	if _, err := js.CreateOrUpdateStream(ctx, s.streamConfig()); err != nil {
		if tooFewServers(err) && len(s.cfg.URLs) == 0 {
			return fmt.Errorf("stream: embedded NATS is a single server and cannot hold %d replicas (--nats-replicas applies to --nats-url only): %w", s.cfg.Replicas, err)
		}
		if tooFewServers(err) {
			return fmt.Errorf("stream: %s needs %d replicas but the NATS cluster has fewer JetStream servers (set --nats-replicas to at most the number of servers, e.g. 1 for a single server): %w",
				StreamName, s.cfg.Replicas, err)
		}
		return fmt.Errorf("stream: create or update %s: %w", StreamName, err)
	}
	for _, d := range s.cfg.Durables {
		// Created once; the store writer re-creates its durable at a
		// start position, which an update here would refuse to change.
		if _, err := js.Consumer(ctx, StreamName, d); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("stream: look up consumer %q: %w", d, err)
		}
		if _, err := js.CreateConsumer(ctx, StreamName, s.consumerConfig(d)); err != nil {
			return fmt.Errorf("stream: create consumer %q: %w", d, err)
		}
	}
	return nil
}

func (s *Stream) jetStream() (jetstream.JetStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.js == nil || s.closed {
		return nil, ErrNotStarted
	}
	return s.js, nil
}

// Publish stores data on subject and returns after the JetStream
// acknowledgement. msgID deduplicates retries within the duplicate window.
func (s *Stream) Publish(ctx context.Context, subject string, data []byte, msgID string) error {
	js, err := s.jetStream()
	if err != nil {
		return err
	}
	start := time.Now()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	opts = append(opts, jetstream.WithExpectStream(StreamName))
	if len(s.cfg.URLs) > 0 {
		// "No responders" means no server took the message, which in a
		// cluster is usually a stream leader election: retrying is safe
		// (the message ID deduplicates) and rides it out. Embedded, it is
		// a real error.
		opts = append(opts, jetstream.WithRetryAttempts(publishRetryAttempts), jetstream.WithRetryWait(publishRetryWait))
	}
	if _, err := js.Publish(ctx, subject, data, opts...); err != nil {
		return fmt.Errorf("stream: publish to %s: %w", subject, err)
	}
	if s.publishSeconds != nil {
		s.publishSeconds.Observe(time.Since(start).Seconds())
	}
	return nil
}

// Consume reads the stream through the durable pull consumer named durable,
// handing handle up to maxBatch message bodies at a time: whatever is
// available, without waiting for a full batch. On a nil return every message
// of the batch is acknowledged; on an error the batch is retried in place
// with a growing delay, so a failing handler is retried but never spun on.
// Messages are never dropped (MaxDeliver is unlimited); unacknowledged ones
// are redelivered after AckWait or a restart. Consume returns nil once ctx
// is done.
func (s *Stream) Consume(ctx context.Context, durable string, maxBatch int, handle func(ctx context.Context, msgs [][]byte) error) error {
	bodies := make([][]byte, 0, maxBatch)
	return s.consumeDurable(ctx, durable, maxBatch, func(ctx context.Context, batch []Msg) error {
		bodies = bodies[:0]
		for _, m := range batch {
			bodies = append(bodies, m.Data)
		}
		return handle(ctx, bodies)
	})
}

// Msg is one message given to a ConsumeManual handler.
type Msg struct {
	Seq  uint64 // stream sequence: increases with every message stored
	Data []byte
	m    jetstream.Msg
}

// Ack acknowledges this message and every earlier one of the consumer.
func (m Msg) Ack() error {
	if m.m == nil {
		return errors.New("stream: nothing to acknowledge")
	}
	return m.m.Ack()
}

// ConsumeOrdered hands handle every message from stream sequence from on,
// in order, through an ephemeral ordered consumer: nothing is acknowledged,
// the caller keeps its own position (and registers it with AddFloor so
// compaction waits for it). A lost delivery or a server failure makes the
// client re-create the consumer after the last message it handed over. It
// returns nil when ctx ends.
func (s *Stream) ConsumeOrdered(ctx context.Context, from uint64, maxBatch int, handle func(ctx context.Context, msgs []Msg) error) error {
	js, err := s.jetStream()
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	var cons jetstream.Consumer
	err = s.retryTransient(ctx, "create ordered consumer", func(ctx context.Context) (err error) {
		cons, err = js.OrderedConsumer(ctx, StreamName, cfg)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("stream: create ordered consumer at %d: %w", from, err)
	}
	return s.consume(ctx, cons, "ordered", from, maxBatch, handle, false)
}

// consumeDurable consumes the durable from just after its acknowledgement
// floor. A durable resumes after what it last *delivered*: messages handed
// to a process that died before acknowledging them would otherwise come
// back only after AckWait, and meanwhile an acknowledgement of a later
// message (AckAll) would cover them, losing them. Re-creating the durable
// at the floor delivers them again first, in order.
func (s *Stream) consumeDurable(ctx context.Context, durable string, maxBatch int, handle func(ctx context.Context, msgs []Msg) error) error {
	js, err := s.jetStream()
	if err != nil {
		return err
	}
	if durable == "" {
		return errors.New("stream: consume needs a durable name")
	}
	from := uint64(1)
	err = s.retryTransient(ctx, "look up consumer "+durable, func(ctx context.Context) error {
		c, err := js.Consumer(ctx, StreamName, durable)
		switch {
		case err == nil:
			from = c.CachedInfo().AckFloor.Stream + 1
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			from = 1
		default:
			return err
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("stream: look up consumer %q: %w", durable, err)
	}
	cons, err := s.createAt(ctx, js, durable, from)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return s.consume(ctx, cons, durable, from, maxBatch, handle, true)
}

// createAt (re)creates a durable that delivers from stream sequence from.
func (s *Stream) createAt(ctx context.Context, js jetstream.JetStream, durable string, from uint64) (jetstream.Consumer, error) {
	err := s.retryTransient(ctx, "reset consumer "+durable, func(ctx context.Context) error {
		if err := js.DeleteConsumer(ctx, StreamName, durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stream: reset consumer %q: %w", durable, err)
	}
	cfg := s.consumerConfig(durable)
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	var cons jetstream.Consumer
	err = s.retryTransient(ctx, "create consumer "+durable, func(ctx context.Context) (err error) {
		cons, err = js.CreateConsumer(ctx, StreamName, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("stream: create consumer %q at %d: %w", durable, from, err)
	}
	if len(s.cfg.URLs) > 0 {
		awaitConsumerLeader(ctx, cons)
	}
	return cons, nil
}

func (s *Stream) consume(ctx context.Context, cons jetstream.Consumer, durable string, from uint64, maxBatch int, handle func(ctx context.Context, msgs []Msg) error, autoAck bool) error {
	if maxBatch <= 0 {
		maxBatch = defaultConsumeBatch
	}

	// The client prefetches into msgs; the loop below takes the first message
	// blocking and then only what is already there, so a lone reading is
	// handled at once and a backlog is handled in large batches.
	msgs := make(chan jetstream.Msg, maxBatch)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(2*maxBatch), jetstream.PullExpiry(pullExpiry), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		s.log.Debug("consume", "durable", durable, "err", err)
	}))
	if err != nil {
		return fmt.Errorf("stream: consume %q: %w", durable, err)
	}
	defer cc.Stop()

	// next is the stream sequence the consumer must see next. Acknowledging
	// acknowledges everything before (AckAll), so a message the client
	// never handed over (a delivery lost between the server and the client)
	// would be acknowledged by the one after it and lost. A gap therefore
	// stops the batch before it: what came before is handled and
	// acknowledged, and Consume returns ErrGap so the caller starts again
	// and the server redelivers from the gap.
	next := max(from, 1)
	batch := make([]Msg, 0, maxBatch)
	var held *Msg // the message after a gap
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			batch = append(batch, toMsg(m))
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case m := <-msgs:
				batch = append(batch, toMsg(m))
			default:
				break fill
			}
		}
		for i, m := range batch {
			if m.Seq > next && !s.expiredBefore(ctx, m.Seq) {
				held, batch = &batch[i], batch[:i]
				break
			}
			next = max(next, m.Seq+1) // a redelivery (m.Seq < next) leaves next as it is
		}
		if len(batch) > 0 {
			// A failed batch is retried here, in order, until it is
			// handled: the ack below acknowledges everything delivered
			// before it, so no later message may be acknowledged while an
			// earlier one is pending.
			for failures := 1; ; failures++ {
				err := handle(ctx, batch)
				if err == nil {
					break
				}
				delay := backoff(failures)
				s.log.Warn("batch handler failed; retrying", "durable", durable, "messages", len(batch), "retry_in", delay, "err", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(delay):
				}
			}
			if autoAck {
				if err := batch[len(batch)-1].Ack(); err != nil {
					s.log.Debug("ack", "err", err) // redelivered after AckWait; consumers deduplicate
				}
			}
		}
		if held != nil {
			s.log.Warn("stream delivery skipped a message; restarting the consumer", "durable", durable, "want", next, "got", held.Seq)
			return fmt.Errorf("%w: %s expected %d, got %d", ErrGap, durable, next, held.Seq)
		}
	}
}

// ErrGap: a consumer saw a stream sequence skipped and stopped before it;
// start it again.
var ErrGap = errors.New("stream: delivery skipped a message")

// expiredBefore reports whether everything before seq has left the stream
// (aged out, or purged once every consumer had it), so a jump to seq is not
// a lost delivery.
func (s *Stream) expiredBefore(ctx context.Context, seq uint64) bool {
	js, err := s.jetStream()
	if err != nil {
		return false
	}
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		return false
	}
	return st.CachedInfo().State.FirstSeq >= seq
}

func toMsg(m jetstream.Msg) Msg {
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	return Msg{Seq: seq, Data: m.Data(), m: m}
}

// backoff is 100 ms doubling per consecutive failure, capped.
func backoff(failures int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < failures && d < maxHandlerBackoff; i++ {
		d *= 2
	}
	return min(d, maxHandlerBackoff)
}

// Ready reports nil when connected and the stream exists.
func (s *Stream) Ready() error {
	s.mu.Lock()
	nc, js, closed := s.nc, s.js, s.closed
	s.mu.Unlock()
	if nc == nil || closed {
		return ErrNotStarted
	}
	if !nc.IsConnected() {
		return errors.New("stream: not connected to NATS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if _, err := js.Stream(ctx, StreamName); err != nil {
		return fmt.Errorf("stream: %s unavailable: %w", StreamName, err)
	}
	return nil
}

// Close disconnects and, in embedded mode, shuts the server down. It is safe
// to call more than once.
func (s *Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.stop != nil {
		close(s.stop)
		s.mu.Unlock()
		<-s.done
		s.mu.Lock()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
	return nil
}

// JetStream is the connection's JetStream context, for other state kept in
// the same NATS (the lease bucket).
func (s *Stream) JetStream() (jetstream.JetStream, error) { return s.jetStream() }

// Replicas is the stream's replica count; other JetStream state uses the
// same.
func (s *Stream) Replicas() int { return s.cfg.Replicas }

// Conn is the NATS connection, for core NATS subjects beside the stream.
func (s *Stream) Conn() (*nats.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nc == nil || s.closed {
		return nil, ErrNotStarted
	}
	return s.nc, nil
}

// Pending is how many messages the durable has not yet acknowledged
// (waiting plus delivered and unacknowledged).
func (s *Stream) Pending(ctx context.Context, durable string) (uint64, error) {
	js, err := s.jetStream()
	if err != nil {
		return 0, err
	}
	c, err := js.Consumer(ctx, StreamName, durable)
	if err != nil {
		return 0, fmt.Errorf("stream: consumer %q: %w", durable, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream: consumer %q: %w", durable, err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}
