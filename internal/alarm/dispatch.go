package alarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/notify"
)

// Sender delivers one notification; notify.Mux satisfies it.
type Sender interface {
	Send(ctx context.Context, to notify.Recipient, m notify.Message) (notify.Receipt, error)
}

// Dispatcher defaults.
const (
	DefaultMaxAttempts   = 8 // 1+2+4+…+64 s ≈ 2 min of retries before "failed"
	defaultConcurrency   = 64
	perRecipientInFlight = 4
	sendTimeout          = 10 * time.Second
	closeGrace           = 2 * time.Second
	// claimLease > sendTimeout: a live dispatcher never loses a lease
	// mid-send; a dead one's claims are sent again this long after it died.
	claimLease = 15 * time.Second
	idlePoll   = time.Second
)

// Dispatcher delivers the outbox. Every send runs in its own goroutine with
// a timeout, at most a few at a time per recipient, so an endpoint that
// hangs or fails cannot hold up deliveries to anyone else.
type Dispatcher struct {
	Store   Store
	Service *Service // raises notification-failure alarms
	Sender  Sender
	// Resolve turns a recipient string (webhook:ID, email:ADDR, device:ID)
	// into where to send; an error marked notify.Permanent fails the
	// delivery at once.
	Resolve     func(ctx context.Context, recipient string) (notify.Recipient, error)
	Now         func() time.Time
	Logger      *slog.Logger
	MaxAttempts int // 0 means DefaultMaxAttempts
	Concurrency int // 0 means 64
	Metrics     *DispatchMetrics

	mu       sync.Mutex
	inflight map[string]int // by recipient
	running  int
	wg       sync.WaitGroup
	kick     chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
	// sends carries every send; Close cancels it after a grace period so a
	// hanging endpoint cannot hold up shutdown (the delivery is retried).
	sends     context.Context
	stopSends context.CancelFunc
}

// DispatchMetrics are the dispatcher's Prometheus metrics.
type DispatchMetrics struct {
	deliveries *prometheus.CounterVec
	latency    prometheus.Histogram
}

// NewDispatchMetrics registers the metrics with reg.
func NewDispatchMetrics(reg prometheus.Registerer) (*DispatchMetrics, error) {
	m := &DispatchMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tend_notification_attempts_total",
			Help: "Notification delivery attempts by recipient kind and result (delivered, retry, failed)."}, []string{"kind", "result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tend_notification_delivery_seconds",
			Help: "Time from outbox row creation to confirmed delivery.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 20)}),
	}
	for _, c := range []prometheus.Collector{m.deliveries, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (d *Dispatcher) init() {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MaxAttempts <= 0 {
		d.MaxAttempts = DefaultMaxAttempts
	}
	if d.Concurrency <= 0 {
		d.Concurrency = defaultConcurrency
	}
	if d.inflight == nil {
		d.inflight = map[string]int{}
	}
	if d.kick == nil {
		d.kick = make(chan struct{}, 1)
	}
	if d.sends == nil {
		d.sends, d.stopSends = context.WithCancel(context.Background())
	}
}

// Start delivers in the background until Close.
func (d *Dispatcher) Start(ctx context.Context) error {
	if d.Store == nil || d.Sender == nil || d.Resolve == nil {
		return errors.New("alarm: dispatcher needs Store, Sender and Resolve")
	}
	d.mu.Lock()
	d.init()
	ctx, d.cancel = context.WithCancel(ctx)
	d.done = make(chan struct{})
	d.mu.Unlock()
	go d.loop(ctx)
	return nil
}

// Kick wakes the dispatcher after deliveries were enqueued.
func (d *Dispatcher) Kick() {
	d.mu.Lock()
	d.init()
	k := d.kick
	d.mu.Unlock()
	select {
	case k <- struct{}{}:
	default:
	}
}

// Close stops claiming and waits for the sends in flight.
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	idle := make(chan struct{})
	go func() { d.wg.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(closeGrace):
		d.stopSends()
		<-idle
	}
	return nil
}

func (d *Dispatcher) loop(ctx context.Context) {
	defer close(d.done)
	for {
		if _, err := d.dispatch(ctx, false); err != nil && ctx.Err() == nil {
			d.Logger.Error("notification dispatch", "err", err)
		}
		wait := idlePoll
		if next, err := d.Store.NextDue(ctx); err == nil && !next.IsZero() {
			wait = min(wait, max(next.Sub(d.Now()), 10*time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-d.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// RunOnce claims what is due, sends it and waits for every send to finish
// (tests, and draining at shutdown). It returns how many it attempted.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	d.mu.Lock()
	d.init()
	d.mu.Unlock()
	return d.dispatch(ctx, true)
}

func (d *Dispatcher) dispatch(ctx context.Context, wait bool) (int, error) {
	d.mu.Lock()
	free := d.Concurrency - d.running
	d.mu.Unlock()
	if free <= 0 {
		return 0, nil
	}
	batch, err := d.Store.ClaimDeliveries(ctx, d.Now().UTC(), claimLease, free)
	if err != nil {
		return 0, fmt.Errorf("claim deliveries: %w", err)
	}
	var wg sync.WaitGroup
	for _, del := range batch {
		d.mu.Lock()
		busy := d.inflight[del.Recipient] >= perRecipientInFlight
		if !busy {
			d.inflight[del.Recipient]++
			d.running++
		}
		d.mu.Unlock()
		if busy {
			// Put it back for shortly, without counting an attempt.
			del.Due = d.Now().UTC().Add(time.Second)
			if err := d.finish(ctx, del); err != nil {
				return len(batch), err
			}
			continue
		}
		wg.Add(1)
		d.wg.Add(1)
		go func(del Delivery) {
			defer d.wg.Done()
			defer wg.Done()
			defer func() {
				d.mu.Lock()
				d.inflight[del.Recipient]--
				if d.inflight[del.Recipient] == 0 {
					delete(d.inflight, del.Recipient)
				}
				d.running--
				d.mu.Unlock()
			}()
			// A send that started is recorded even if the dispatcher is
			// closing: losing the record would resend it.
			if err := d.send(d.sends, del); err != nil {
				d.Logger.Error("record delivery", "delivery", del.ID, "err", err)
			}
		}(del)
	}
	if wait {
		wg.Wait()
	}
	return len(batch), nil
}

func (d *Dispatcher) finish(ctx context.Context, del Delivery) error {
	return d.Store.Update(ctx, func(tx Tx) error { return tx.FinishDelivery(del) })
}

func (d *Dispatcher) send(ctx context.Context, del Delivery) error {
	del.Attempts++
	kind, _, _ := strings.Cut(del.Recipient, ":")
	to, err := d.Resolve(ctx, del.Recipient)
	var receipt notify.Receipt
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, sendTimeout)
		receipt, err = d.Sender.Send(sctx, to, notify.Message{ID: del.ID, Event: del.Event, Subject: subject(del), Body: del.Body,
			Created: del.Created, Attempt: del.Attempts})
		cancel()
	}
	ctx = context.WithoutCancel(ctx) // the outcome is recorded even when sends were cancelled
	now := d.Now().UTC()
	switch {
	case err == nil:
		del.State, del.Receipt, del.Delivered, del.LastError = Delivered, receipt.Detail, now, ""
		d.count(kind, "delivered")
		if d.Metrics != nil {
			d.Metrics.latency.Observe(now.Sub(del.Created).Seconds())
		}
		if !episodeDelivery(del) {
			return d.finish(ctx, del)
		}
		return d.Store.Update(ctx, func(tx Tx) error {
			if err := tx.FinishDelivery(del); err != nil {
				return err
			}
			return tx.AddChange(Change{Alarm: del.Alarm, At: now, Action: "notified", By: "system", Detail: del.Recipient + ": " + receipt.Detail})
		})
	case notify.IsPermanent(err) || del.Attempts >= d.MaxAttempts:
		del.State, del.LastError = Failed, err.Error()
		d.count(kind, "failed")
		d.Logger.Warn("notification failed", "delivery", del.ID, "recipient_kind", kind, "attempts", del.Attempts, "err", err)
		if d.Service != nil && episodeDelivery(del) {
			return d.Service.deliveryFailed(ctx, del)
		}
		return d.finish(ctx, del)
	default:
		delay := notify.RetryDelay(del.ID, del.Attempts)
		if ra, ok := notify.RetryAfter(err); ok {
			delay = min(max(delay, ra), notify.MaxBackoff)
		}
		del.LastError, del.Due = err.Error(), now.Add(delay)
		d.count(kind, "retry")
		return d.finish(ctx, del)
	}
}

// episodeDelivery reports whether a delivery belongs to an alarm episode
// (and so gets history entries and notification-failure alarms).
func episodeDelivery(del Delivery) bool {
	return !strings.HasPrefix(del.Recipient, RecipientSubscription+":")
}

func (d *Dispatcher) count(kind, result string) {
	if d.Metrics != nil {
		d.Metrics.deliveries.WithLabelValues(kind, result).Inc()
	}
}

// subject is the one-line title: priority and rule name, no patient data.
func subject(d Delivery) string {
	verb := strings.TrimPrefix(d.Event, "alarm.")
	return "Tend alarm " + strings.ReplaceAll(verb, "_", " ")
}
