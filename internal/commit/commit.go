// Package commit makes readings durable in the stream with group commit:
// many concurrent callers share one stream message, hence one fsync, and all
// of them are acknowledged together. Per-message fsync caps a node at a few
// thousand readings per second; group commit lifts that by the batch size.
//
// Batching is natural rather than timed: there is no linger. While all
// MaxInflight publishes are waiting for their acknowledgement, new callers
// queue up, and the next free flusher takes everything queued (up to MaxBatch
// readings) as one message. An idle system therefore commits a lone reading
// at once, and a busy one commits in large batches.
//
// Ordering: readings of one Commit call stay in order, and a caller that
// waits for each Commit before the next keeps its order across calls. Calls
// that overlap in time may be published in either order, since up to
// MaxInflight messages are in flight at once.
package commit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/reading"
)

// Publisher stores one message durably; *stream.Stream satisfies it.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte, msgID string) error
}

// Errors callers can branch on.
var (
	ErrClosed  = errors.New("committer closed")
	ErrInvalid = errors.New("invalid reading")
)

const (
	defaultMaxBatch        = 4096
	defaultMaxInflight     = 4
	defaultPublishTimeout  = 10 * time.Second
	defaultMaxMessageBytes = 8 << 20
)

// Committer groups concurrent Commit calls into stream messages. Set the
// exported fields, then call Start, and do not change them afterwards; zero
// values of the numeric fields pick sensible defaults.
type Committer struct {
	Pub            Publisher
	Subject        string
	MaxBatch       int           // readings per message; 0 means 4096
	MaxInflight    int           // concurrent publishes; 0 means 4
	PublishTimeout time.Duration // per publish; 0 means 10 s
	// MaxMessageBytes caps an encoded message; 0 means 8 MiB, the stream's
	// limit. Larger groups are split, a single larger request fails.
	MaxMessageBytes int
	Metrics         *Metrics      // nil means no metrics
	NewID           func() string // message id for deduplication; nil means nuid

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*request
	started bool
	closed  bool
	runCtx  context.Context
	stopCtx func() bool
	wg      sync.WaitGroup
}

// request is one caller's chunk of readings waiting for its batch.
type request struct {
	ctx  context.Context
	rs   []reading.Reading
	done chan error // buffered: a flusher never blocks on a departed caller
}

// Start launches the flushers. Cancelling ctx aborts them; queued commits
// then fail. Use Close for an orderly stop that drains the queue.
func (c *Committer) Start(ctx context.Context) error {
	if c.Pub == nil || c.Subject == "" {
		return errors.New("commit: Pub and Subject are required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("commit: already started")
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = defaultMaxBatch
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = defaultMaxInflight
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = defaultPublishTimeout
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = defaultMaxMessageBytes
	}
	if c.NewID == nil {
		c.NewID = nuid.Next
	}
	c.cond = sync.NewCond(&c.mu)
	c.started = true
	c.runCtx = ctx
	// Wake sleeping flushers when ctx ends so they can fail the queue.
	c.stopCtx = context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	for range c.MaxInflight {
		c.wg.Add(1)
		go c.flusher()
	}
	return nil
}

// Close stops accepting commits, publishes everything already queued and
// waits for the flushers to finish.
func (c *Committer) Close() error {
	c.mu.Lock()
	if !c.started || c.closed {
		c.closed = true
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.wg.Wait()
	c.stopCtx()
	return nil
}

// Commit returns nil once every reading of rs is durable in the stream. On
// an error some or all of rs may still have been committed (for example when
// ctx ends while the publish is in flight); retrying is safe because the
// store deduplicates by reading key.
func (c *Committer) Commit(ctx context.Context, rs []reading.Reading) error {
	if len(rs) == 0 {
		return nil
	}
	for i := range rs {
		if !rs[i].Valid() {
			return fmt.Errorf("commit: reading %d: %w: no finite value", i, ErrInvalid)
		}
	}
	start := time.Now()

	c.mu.Lock()
	if !c.started || c.closed || c.runCtx.Err() != nil {
		c.mu.Unlock()
		return ErrClosed
	}
	maxBatch := c.MaxBatch
	var reqs []*request
	for len(rs) > 0 {
		n := min(len(rs), maxBatch)
		r := &request{ctx: ctx, rs: rs[:n], done: make(chan error, 1)}
		reqs = append(reqs, r)
		c.queue = append(c.queue, r)
		rs = rs[n:]
	}
	if len(reqs) == 1 {
		c.cond.Signal()
	} else {
		c.cond.Broadcast()
	}
	c.mu.Unlock()

	for _, r := range reqs {
		select {
		case err := <-r.done:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("commit: waiting for durability: %w", ctx.Err())
		}
	}
	if c.Metrics != nil {
		c.Metrics.commitSeconds.Observe(time.Since(start).Seconds())
	}
	return nil
}

// flusher publishes batches until the committer is closed and drained, or
// its context ends.
func (c *Committer) flusher() {
	defer c.wg.Done()
	for {
		batch, ok := c.next()
		if !ok {
			return
		}
		c.publish(batch)
	}
}

// next blocks for queued requests and takes up to MaxBatch readings' worth.
func (c *Committer) next() ([]*request, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) == 0 && !c.closed && c.runCtx.Err() == nil {
		c.cond.Wait()
	}
	if err := c.runCtx.Err(); err != nil {
		for _, r := range c.queue {
			r.done <- fmt.Errorf("commit: committer stopped: %w", err)
		}
		c.queue = nil
		return nil, false
	}
	if len(c.queue) == 0 { // closed and drained
		return nil, false
	}
	n, readings := 0, 0
	for n < len(c.queue) && (n == 0 || readings+len(c.queue[n].rs) <= c.MaxBatch) {
		readings += len(c.queue[n].rs)
		n++
	}
	batch := c.queue[:n:n]
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = nil // let the backing array go
	}
	return batch, true
}

// publish writes batch as one message and completes its callers.
func (c *Committer) publish(batch []*request) {
	live := batch[:0:0]
	total := 0
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err // the caller has already given up
			continue
		}
		live = append(live, r)
		total += len(r.rs)
	}
	if total == 0 {
		return
	}
	c.publishGroup(live, total)
}

// publishGroup publishes reqs as one message, halving the group when its
// encoding exceeds MaxMessageBytes (only possible with unusually long
// identifiers), so each caller's outcome is that of its own message.
func (c *Committer) publishGroup(reqs []*request, total int) {
	rs := make([]reading.Reading, 0, total)
	for _, r := range reqs {
		rs = append(rs, r.rs...)
	}
	data := reading.EncodeBatch(rs)
	if len(data) > c.MaxMessageBytes && len(reqs) > 1 {
		half := len(reqs) / 2
		c.publishGroup(reqs[:half], countReadings(reqs[:half]))
		c.publishGroup(reqs[half:], countReadings(reqs[half:]))
		return
	}
	var err error
	if len(data) > c.MaxMessageBytes {
		err = fmt.Errorf("commit: %d readings encode to %d bytes, over the %d-byte message limit", total, len(data), c.MaxMessageBytes)
	} else {
		ctx, cancel := context.WithTimeout(c.runCtx, c.PublishTimeout)
		err = c.Pub.Publish(ctx, c.Subject, data, c.NewID())
		cancel()
		if err != nil {
			err = fmt.Errorf("commit: publish batch of %d readings: %w", total, err)
		} else if c.Metrics != nil {
			c.Metrics.batchReadings.Observe(float64(total))
		}
	}
	for _, r := range reqs {
		r.done <- err
	}
}

func countReadings(reqs []*request) int {
	n := 0
	for _, r := range reqs {
		n += len(r.rs)
	}
	return n
}

// Metrics are the group-commit metrics.
type Metrics struct {
	batchReadings prometheus.Histogram
	commitSeconds prometheus.Histogram
}

// NewMetrics registers the commit metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		batchReadings: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tend_commit_batch_readings",
			Help:    "Readings per committed stream message (group-commit batch size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 … 8192
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tend_commit_seconds",
			Help:    "Latency of a successful Commit: from call until the readings are durable.",
			Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1, 2, 5, 10},
		}),
	}
	for _, c := range []prometheus.Collector{m.batchReadings, m.commitSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("commit: register metrics: %w", err)
		}
	}
	return m, nil
}
