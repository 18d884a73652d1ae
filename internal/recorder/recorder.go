// Package recorder is the store writer: it consumes reading batches from the
// durable stream and appends them to the store, acknowledging stream
// messages only after the store has committed them. A crash at any point
// therefore leads to redelivery, never loss; the store's idempotent Append
// absorbs the duplicates.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/reading"
)

// Appender stores readings; store.Store satisfies it.
type Appender interface {
	Append(ctx context.Context, rs []reading.Reading) (int, error)
}

// Consumer is the stream side; *stream.Stream satisfies it.
type Consumer interface {
	Consume(ctx context.Context, durable string, maxBatch int, handle func(ctx context.Context, msgs [][]byte) error) error
}

const (
	// DefaultDurable is the store writer's consumer name.
	DefaultDurable  = "tend-store-writer"
	defaultMaxBatch = 64
	maxRetryBackoff = 10 * time.Second
)

// Recorder moves readings from the stream into the store. Set the fields,
// then call Start.
type Recorder struct {
	Stream   Consumer
	Store    Appender
	Durable  string // consumer name; "" means "tend-store-writer"
	MaxBatch int    // stream messages per append; 0 means 64
	Logger   *slog.Logger
	Now      func() time.Time // nil means time.Now
	Metrics  *Metrics         // nil means no metrics
	// OnStored, when set, is called with every appended batch after the store
	// committed it (live fan-out, rules). It may see a reading again after a
	// redelivery. It runs on the consume path, so it must not block for long.
	OnStored func(rs []reading.Reading)
	// OnPoison, when set, receives every message that cannot be decoded so it
	// can be dead-lettered; the message is acknowledged afterwards either way
	// so one bad message never blocks the stream.
	OnPoison func(data []byte, err error)

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	started bool
}

// Start begins consuming in the background until ctx ends or Close.
func (r *Recorder) Start(ctx context.Context) error {
	if r.Stream == nil || r.Store == nil {
		return errors.New("recorder: Stream and Store are required")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("recorder: already started")
	}
	r.started = true
	if r.Durable == "" {
		r.Durable = DefaultDurable
	}
	if r.MaxBatch <= 0 {
		r.MaxBatch = defaultMaxBatch
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go r.run(ctx)
	return nil
}

// Close stops consuming and waits for the batch in hand to finish; an
// unacknowledged batch is redelivered on the next start.
func (r *Recorder) Close() error {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	return nil
}

// run keeps a consumer alive: Consume only returns early on a stream error
// (for example while the NATS cluster is unreachable), so it is restarted
// with backoff.
func (r *Recorder) run(ctx context.Context) {
	defer close(r.done)
	failures := 0
	for ctx.Err() == nil {
		err := r.Stream.Consume(ctx, r.Durable, r.MaxBatch, r.handle)
		if ctx.Err() != nil {
			return
		}
		failures++
		delay := retryDelay(failures)
		r.Logger.Error("stream consumer stopped; restarting", "durable", r.Durable, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func retryDelay(failures int) time.Duration {
	d := 200 * time.Millisecond
	for i := 1; i < failures && d < maxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, maxRetryBackoff)
}

// handle decodes one fetched set of messages and appends all their readings
// in a single store call. A returned error makes the stream redeliver the
// whole set later.
func (r *Recorder) handle(ctx context.Context, msgs [][]byte) error {
	var all []reading.Reading
	for _, m := range msgs {
		rs, err := reading.DecodeBatch(m)
		if err != nil {
			// Log size only: the payload may carry patient data.
			r.Logger.Error("undecodable stream message; dead-lettering", "bytes", len(m), "err", err)
			if r.Metrics != nil {
				r.Metrics.poison.Inc()
			}
			if r.OnPoison != nil {
				r.OnPoison(m, err)
			}
			continue
		}
		all = append(all, rs...)
	}
	if len(all) == 0 {
		return nil
	}
	n, err := r.Store.Append(ctx, all)
	if err != nil {
		if r.Metrics != nil {
			r.Metrics.appendErrors.Inc()
		}
		return fmt.Errorf("recorder: append %d readings: %w", len(all), err)
	}
	if r.Metrics != nil {
		r.Metrics.stored.Add(float64(n))
		now := r.Now()
		for i := range all {
			if !all[i].Received.IsZero() {
				r.Metrics.publishToStored.Observe(now.Sub(all[i].Received).Seconds())
			}
		}
	}
	if r.OnStored != nil {
		r.OnStored(all)
	}
	return nil
}

// Metrics are the store-writer metrics.
type Metrics struct {
	stored          prometheus.Counter
	publishToStored prometheus.Histogram
	poison          prometheus.Counter
	appendErrors    prometheus.Counter
}

// PublishToStoredBuckets are fine enough between 1 ms and 10 s for a p99
// to be read from the histogram.
var PublishToStoredBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1, 2, 5, 10}

// NewMetrics registers the recorder metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tend_recorder_stored_readings_total",
			Help: "Readings newly written to the store (redelivered duplicates are not counted).",
		}),
		publishToStored: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tend_publish_to_stored_seconds",
			Help:    "Time from a reading's receipt by Tend to its commit in the store.",
			Buckets: PublishToStoredBuckets,
		}),
		poison: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tend_recorder_poison_messages_total",
			Help: "Stream messages that could not be decoded and were dead-lettered.",
		}),
		appendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tend_recorder_append_errors_total",
			Help: "Failed store appends (the batch is redelivered).",
		}),
	}
	for _, c := range []prometheus.Collector{m.stored, m.publishToStored, m.poison, m.appendErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("recorder: register metrics: %w", err)
		}
	}
	return m, nil
}
