// Package evaluator runs the rule engine on the readings stream. It is a
// durable stream consumer of its own, next to the store writer, so an alarm
// does not wait for the store: a reading is evaluated as soon as its group
// commit is durable.
//
// Exactly-once effect: the events of each batch are applied together with
// the stream position they came from (alarm.Checkpoint.Applied), and the
// engine state is snapshotted every 30 s with its position. The
// stream is acknowledged only up to the last snapshot, so after a crash the
// engine restarts from the snapshot, the stream replays what came after it,
// and events already applied are recognised by their position and skipped:
// every reading is evaluated for alarms once.
package evaluator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/stream"
)

// Consumer is the stream side; *stream.Stream satisfies it.
type Consumer interface {
	ConsumeFrom(ctx context.Context, durable string, from uint64, maxBatch int, handle func(ctx context.Context, msgs []stream.Msg) error) error
}

// Committer makes derived readings (NEWS2 scores) durable like any other;
// *commit.Committer satisfies it.
type Committer interface {
	Commit(ctx context.Context, rs []reading.Reading) error
}

// DefaultDurable is the rule evaluator's consumer name.
const DefaultDurable = "tend-rules"

// Defaults.
const (
	// Encoding the state of 10,000 patients takes ~80 ms under the engine
	// lock; every 30 s keeps that pause out of the alarm latency p99, and a
	// restart replays at most 30 s of stream.
	defaultSnapshotEvery = 30 * time.Second
	defaultTickEvery     = time.Second
	maxBatch             = 64
	// backlogOn/Off: evaluation running this far behind ingest raises (and
	// this close clears) the system's ingest-backlog alarm.
	backlogOn  = 30 * time.Second
	backlogOff = 5 * time.Second
)

// Evaluator feeds the stream through a rules.Engine into the alarm service.
type Evaluator struct {
	Stream   Consumer
	Store    alarm.Store
	Alarms   *alarm.Service
	Profiles *alarm.Profiles
	Derived  Committer
	Durable  string // "" means DefaultDurable; also the checkpoint name
	Now      func() time.Time
	Logger   *slog.Logger
	Metrics  *Metrics
	// SnapshotEvery is how often engine state is saved (and the stream
	// acknowledged); 0 means 30 s. TickEvery drives no-data checks; 0 means 1 s.
	SnapshotEvery time.Duration
	TickEvery     time.Duration

	mu       sync.Mutex // guards the engine and what follows
	engine   *rules.Engine
	lastSeq  uint64
	lastMsg  stream.Msg
	lastSnap time.Time
	pending  rules.Output // computed but not yet applied (retried)
	backlog  bool

	cancel context.CancelFunc
	done   chan struct{}
}

// Metrics are the evaluator's Prometheus metrics.
type Metrics struct {
	readings     prometheus.Counter
	events       *prometheus.CounterVec
	toAlarm      prometheus.Histogram
	batchSeconds prometheus.Histogram
	patients     prometheus.GaugeFunc
}

// NewMetrics registers the metrics; patients reports the engine's size.
func NewMetrics(reg prometheus.Registerer, e *Evaluator) (*Metrics, error) {
	m := &Metrics{
		readings: prometheus.NewCounter(prometheus.CounterOpts{Name: "tend_rules_readings_total", Help: "Readings evaluated by the rule engine."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tend_rules_events_total",
			Help: "Rule condition changes applied, by type (start, update, clear)."}, []string{"type"}),
		toAlarm: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tend_reading_to_alarm_seconds",
			Help: "From a reading's arrival at Tend to its alarm change being committed.", Buckets: prometheus.ExponentialBuckets(0.0005, 1.25, 60)}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tend_rules_batch_seconds",
			Help: "Time to evaluate and apply one batch of stream messages.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		patients: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tend_rules_patients", Help: "Patients with rule state in memory."},
			func() float64 {
				e.mu.Lock()
				defer e.mu.Unlock()
				if e.engine == nil {
					return 0
				}
				return float64(e.engine.Patients())
			}),
	}
	for _, c := range []prometheus.Collector{m.readings, m.events, m.toAlarm, m.batchSeconds, m.patients} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Start restores the engine from the last checkpoint and consumes in the
// background until Close.
func (e *Evaluator) Start(ctx context.Context) error {
	if e.Stream == nil || e.Store == nil || e.Alarms == nil || e.Profiles == nil {
		return errors.New("evaluator: Stream, Store, Alarms and Profiles are required")
	}
	if e.Durable == "" {
		e.Durable = DefaultDurable
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.SnapshotEvery <= 0 {
		e.SnapshotEvery = defaultSnapshotEvery
	}
	if e.TickEvery <= 0 {
		e.TickEvery = defaultTickEvery
	}
	e.engine = rules.NewEngine(e.rulesFor)
	cp, err := e.Store.Checkpoint(ctx, e.Durable)
	if err != nil {
		return fmt.Errorf("evaluator: load checkpoint: %w", err)
	}
	if cp.Snapshot != nil {
		if err := e.engine.Restore(cp.Snapshot); err != nil {
			return fmt.Errorf("evaluator: %w", err)
		}
	}
	e.lastSeq = cp.SnapSeq
	e.lastSnap = e.Now()
	if open, err := e.Store.Alarms(ctx, alarm.Filter{Patient: "", States: []alarm.State{alarm.Active, alarm.Acknowledged}}); err == nil {
		for _, a := range open {
			if a.Rule == backlogRule && a.Condition {
				e.backlog = true
			}
		}
	}
	ctx, e.cancel = context.WithCancel(ctx)
	e.done = make(chan struct{})
	go e.run(ctx)
	return nil
}

// Close stops consuming and saves a final snapshot.
func (e *Evaluator) Close() error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	<-e.done
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lastMsg.Seq == 0 || len(e.pending.Events) > 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.snapshot(ctx)
}

// rulesFor loads a patient's rules. If they cannot be read the care
// setting's built-in defaults apply until the next refresh: evaluating
// with the defaults is safer than evaluating with nothing.
func (e *Evaluator) rulesFor(patient string) []rules.Rule {
	rs, err := e.Profiles.Rules(context.Background(), patient)
	if err != nil {
		e.Logger.Error("load rules; using the ward defaults until the next refresh", "err", err)
		def, _ := rules.Defaults(rules.SettingWard)
		eff, _ := rules.Effective(def, rules.Profile{})
		return eff
	}
	return rs
}

func (e *Evaluator) run(ctx context.Context) {
	defer close(e.done)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.tickLoop(ctx)
	}()
	failures := 0
	for ctx.Err() == nil {
		from, err := e.resumePoint(ctx)
		if err == nil {
			err = e.Stream.ConsumeFrom(ctx, e.Durable, from, maxBatch, e.handle)
		}
		if ctx.Err() != nil {
			break
		}
		failures++
		delay := min(time.Duration(failures)*time.Second, 10*time.Second)
		e.Logger.Error("rule evaluator stopped; restarting", "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	wg.Wait()
}

// resumePoint is where the stream must continue: after what the engine has
// seen. A consumer restarted within the process first snapshots, so the
// re-created consumer's acknowledgement floor never passes the snapshot a
// crash would restart from.
func (e *Evaluator) resumePoint(ctx context.Context) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lastMsg.Seq != 0 && len(e.pending.Events) == 0 && len(e.pending.Derived) == 0 {
		if err := e.snapshot(ctx); err != nil {
			return 0, fmt.Errorf("snapshot before resuming: %w", err)
		}
	}
	return e.lastSeq + 1, nil
}

func (e *Evaluator) tickLoop(ctx context.Context) {
	t := time.NewTicker(e.TickEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.Tick(ctx); err != nil && ctx.Err() == nil {
			e.Logger.Error("rule timers", "err", err)
		}
	}
}

// Tick reloads changed rules and runs the time-driven rules (no data).
func (e *Evaluator) Tick(ctx context.Context) error {
	changed, err := e.Profiles.Refresh(ctx)
	if err != nil {
		return fmt.Errorf("refresh rules: %w", err)
	}
	e.mu.Lock()
	if changed {
		e.engine.Invalidate("")
	}
	var out rules.Output
	e.engine.Tick(e.Now(), &out)
	e.mu.Unlock()
	if len(out.Events) == 0 {
		return nil
	}
	e.count(out.Events)
	return e.Alarms.Apply(ctx, alarm.Checkpoint{}, out.Events)
}

const backlogRule = "ingest-backlog"

func (e *Evaluator) handle(ctx context.Context, msgs []stream.Msg) error {
	start := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	var newest time.Time
	n := 0
	for _, m := range msgs {
		if m.Seq <= e.lastSeq {
			continue // evaluated before this delivery (redelivery or replay)
		}
		rs, err := reading.DecodeBatch(m.Data)
		if err != nil {
			// The store writer dead-letters undecodable messages; here
			// they are simply passed over.
			e.Logger.Warn("skip undecodable stream message", "seq", m.Seq, "err", err)
		}
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Time.Before(rs[j].Time) })
		for _, r := range rs {
			e.engine.Observe(r, m.Seq, &e.pending)
			if r.Received.After(newest) {
				newest = r.Received
			}
		}
		n += len(rs)
		e.lastSeq, e.lastMsg = m.Seq, m
		// An alarm does not wait for the rest of a backlog batch: events are
		// applied as soon as the message that caused them is evaluated.
		if len(e.pending.Events) > 0 {
			if err := e.applyEvents(ctx); err != nil {
				return err
			}
		}
	}
	if e.Metrics != nil {
		e.Metrics.readings.Add(float64(n))
	}
	if !newest.IsZero() {
		e.checkBacklog(newest)
	}
	if err := e.flush(ctx); err != nil {
		return err
	}
	if time.Since(e.lastSnap) >= e.SnapshotEvery && e.lastMsg.Seq != 0 {
		if err := e.snapshot(ctx); err != nil {
			e.Logger.Warn("save rule engine snapshot", "err", err) // retried at the next batch
		}
	}
	if e.Metrics != nil {
		e.Metrics.batchSeconds.Observe(time.Since(start).Seconds())
	}
	return nil
}

// flush makes derived readings durable and applies the pending events with
// the stream position; on failure everything stays pending for the retry.
func (e *Evaluator) flush(ctx context.Context) error {
	if len(e.pending.Derived) > 0 && e.Derived != nil {
		if err := e.Derived.Commit(ctx, e.pending.Derived); err != nil {
			return fmt.Errorf("store derived readings: %w", err)
		}
		e.pending.Derived = nil
	}
	return e.applyEvents(ctx)
}

// applyEvents applies the pending events with the stream position.
func (e *Evaluator) applyEvents(ctx context.Context) error {
	evs := e.pending.Events
	if len(evs) == 0 {
		// Nothing to apply: the position is recorded with the next events
		// or snapshot. A replay of these readings yields no events either
		// (the engine is deterministic), so no write is needed.
		return nil
	}
	if err := e.Alarms.Apply(ctx, alarm.Checkpoint{Name: e.Durable, Applied: e.lastSeq}, evs); err != nil {
		return err
	}
	e.pending.Events = nil
	e.count(evs)
	if e.Metrics != nil {
		now := time.Now()
		for _, ev := range evs {
			if ev.Type == rules.Start && !ev.Received.IsZero() {
				e.Metrics.toAlarm.Observe(now.Sub(ev.Received).Seconds())
			}
		}
	}
	return nil
}

func (e *Evaluator) count(evs []rules.Event) {
	if e.Metrics == nil {
		return
	}
	for _, ev := range evs {
		e.Metrics.events.WithLabelValues(string(ev.Type)).Inc()
	}
}

// snapshot saves the engine state at lastSeq and then acknowledges the
// stream up to there.
func (e *Evaluator) snapshot(ctx context.Context) error {
	b, err := e.engine.Snapshot()
	if err != nil {
		return err
	}
	cp := alarm.Checkpoint{Name: e.Durable, Applied: e.lastSeq, Snapshot: b, SnapSeq: e.lastSeq}
	if err := e.Store.Update(ctx, func(tx alarm.Tx) error { return tx.SetCheckpoint(cp) }); err != nil {
		return err
	}
	e.lastSnap = time.Now()
	if err := e.lastMsg.Ack(); err != nil {
		e.Logger.Debug("ack rule stream", "err", err) // replayed and skipped after a restart
	}
	return nil
}

// checkBacklog raises or clears the system alarm for evaluation running
// behind ingest.
func (e *Evaluator) checkBacklog(newest time.Time) {
	lag := e.Now().Sub(newest)
	var typ rules.EventType
	switch {
	case lag > backlogOn && !e.backlog:
		typ, e.backlog = rules.Start, true
	case lag < backlogOff && e.backlog:
		typ, e.backlog = rules.Clear, false
	default:
		return
	}
	e.pending.Events = append(e.pending.Events, rules.Event{Type: typ, Rule: backlogRule, Name: "Ingest backlog",
		Kind: rules.KindNoData, Category: rules.CategoryTechnical, Priority: rules.PriorityMedium, Time: e.Now(),
		Message: fmt.Sprintf("Alarm evaluation is %s behind ingest", lag.Round(time.Second))})
}
