// Package evaluator runs the rule engine on the readings stream. It reads
// the stream itself, next to the store writer, so an alarm does not wait
// for the store: a reading is evaluated as soon as its group commit is
// durable.
//
// Partitions: patients are hashed into Partitions parts, each with its own
// engine, checkpoint and lease. A node evaluates the parts whose lease it
// holds (all of them when it is alone); when a node dies its parts move to
// the others, which restore them from their checkpoints. Each reading is
// evaluated in order, by the one node holding its patient's part.
//
// Exactly-once effect: the events of each message are applied together
// with the stream position they came from (alarm.Checkpoint.Applied, per
// part), and each part's engine state is snapshotted every 30 s with its
// position. After a crash or a move the part restarts from its snapshot,
// the stream replays what came after it, and events already applied are
// recognised by their position and skipped: every reading is evaluated for
// alarms once, even if two nodes briefly both believe they hold a part.
// The stream keeps every message some part's snapshot may still need
// (Floor).
package evaluator

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
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
	ConsumeOrdered(ctx context.Context, from uint64, maxBatch int, handle func(ctx context.Context, msgs []stream.Msg) error) error
}

// Committer makes derived readings (NEWS2 scores) durable like any other;
// *commit.Committer satisfies it.
type Committer interface {
	Commit(ctx context.Context, rs []reading.Reading) error
}

// Partitions is how many parts patients are hashed into: the most nodes
// that can share rule evaluation. Changing it moves patients between parts
// and so needs every node stopped first.
const Partitions = 16

// PartitionOf is the part evaluating a patient's readings.
func PartitionOf(patient string) int {
	h := fnv.New32a()
	h.Write([]byte(patient))
	return int(h.Sum32() % Partitions)
}

// PartName names a part: its lease and its checkpoint.
func PartName(p int) string { return fmt.Sprintf("rules-%02d", p) }

// PartNames are the names of all parts, in order.
func PartNames() []string {
	out := make([]string, Partitions)
	for p := range out {
		out[p] = PartName(p)
	}
	return out
}

func parsePart(name string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "rules-"))
	if err != nil || !strings.HasPrefix(name, "rules-") || n < 0 || n >= Partitions || PartName(n) != name {
		return 0, false
	}
	return n, true
}

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

// Evaluator feeds the stream through rules engines into the alarm service.
type Evaluator struct {
	Stream   Consumer
	Store    alarm.Store
	Alarms   *alarm.Service
	Profiles *alarm.Profiles
	Derived  Committer
	Now      func() time.Time
	Logger   *slog.Logger
	Metrics  *Metrics
	// Leased: parts are handed to this evaluator by Acquire and taken away
	// by Release and Lost (a lease.Table's callbacks). false means it
	// evaluates every part, from Start.
	Leased bool
	// SnapshotEvery is how often engine state is saved; 0 means 30 s.
	// TickEvery drives no-data checks; 0 means 1 s.
	SnapshotEvery time.Duration
	TickEvery     time.Duration

	mu      sync.Mutex // guards what follows and every part
	parts   map[int]*part
	backlog bool
	// restart, when closed, stops the running consumer so that it starts
	// again from the lowest position of the parts held (a part was added).
	restart chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// part is one partition's engine and position.
type part struct {
	name    string
	engine  *rules.Engine
	seen    uint64 // last stream sequence evaluated
	snapSeq uint64 // position of the last snapshot written
	// live: the running consumer started at or before seen+1, so the
	// part may take its messages; a part added meanwhile waits for the
	// consumer's restart.
	live     bool
	lastSnap time.Time
	pending  rules.Output // computed but not yet applied (retried)
}

// Metrics are the evaluator's Prometheus metrics.
type Metrics struct {
	readings     prometheus.Counter
	events       *prometheus.CounterVec
	toAlarm      prometheus.Histogram
	batchSeconds prometheus.Histogram
	patients     prometheus.GaugeFunc
	parts        prometheus.GaugeFunc
}

// NewMetrics registers the metrics; patients reports the engines' size.
func NewMetrics(reg prometheus.Registerer, e *Evaluator) (*Metrics, error) {
	gauge := func(f func(*part) float64) func() float64 {
		return func() float64 {
			e.mu.Lock()
			defer e.mu.Unlock()
			sum := 0.0
			for _, pt := range e.parts {
				sum += f(pt)
			}
			return sum
		}
	}
	m := &Metrics{
		readings: prometheus.NewCounter(prometheus.CounterOpts{Name: "tend_rules_readings_total", Help: "Readings evaluated by the rule engine."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tend_rules_events_total",
			Help: "Rule condition changes applied, by type (start, update, clear)."}, []string{"type"}),
		toAlarm: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tend_reading_to_alarm_seconds",
			Help: "From a reading's arrival at Tend to its alarm change being committed.", Buckets: prometheus.ExponentialBuckets(0.0005, 1.25, 60)}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tend_rules_batch_seconds",
			Help: "Time to evaluate and apply one batch of stream messages.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		patients: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tend_rules_patients", Help: "Patients with rule state in memory on this node."},
			gauge(func(pt *part) float64 { return float64(pt.engine.Patients()) })),
		parts: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tend_rules_partitions", Help: "Rule evaluation partitions held by this node."},
			gauge(func(*part) float64 { return 1 })),
	}
	for _, c := range []prometheus.Collector{m.readings, m.events, m.toAlarm, m.batchSeconds, m.patients, m.parts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Start consumes in the background until Close; unless Leased, it first
// restores every part from its checkpoint.
func (e *Evaluator) Start(ctx context.Context) error {
	if e.Stream == nil || e.Store == nil || e.Alarms == nil || e.Profiles == nil {
		return errors.New("evaluator: Stream, Store, Alarms and Profiles are required")
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
	e.mu.Lock()
	e.parts = map[int]*part{}
	e.restart = make(chan struct{})
	e.mu.Unlock()
	if open, err := e.Store.Alarms(ctx, alarm.Filter{Patient: "", States: []alarm.State{alarm.Active, alarm.Acknowledged}}); err == nil {
		for _, a := range open {
			if a.Rule == backlogRule && a.Condition {
				e.backlog = true
			}
		}
	}
	if !e.Leased {
		for p := range Partitions {
			if err := e.acquire(ctx, PartName(p)); err != nil {
				return err
			}
		}
	}
	ctx, e.cancel = context.WithCancel(ctx)
	e.ctx = ctx
	e.done = make(chan struct{})
	go e.run(ctx)
	return nil
}

// Close stops consuming and saves a final snapshot of every part held.
func (e *Evaluator) Close() error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	<-e.done
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for _, pt := range e.parts {
		errs = append(errs, e.snapshot(ctx, pt))
	}
	return errors.Join(errs...)
}

// Acquire starts evaluating a part (its lease was taken): its engine is
// restored from its checkpoint and the stream is read again from there.
func (e *Evaluator) Acquire(name string) {
	ctx := e.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.acquire(ctx, name); err != nil {
		// The part stays unevaluated on this node until its lease is
		// handed over again; say so loudly.
		e.Logger.Error("rule evaluator: cannot take over partition", "partition", name, "err", err)
	}
}

func (e *Evaluator) acquire(ctx context.Context, name string) error {
	p, ok := parsePart(name)
	if !ok {
		return fmt.Errorf("evaluator: unknown partition %q", name)
	}
	cp, err := e.Store.Checkpoint(ctx, name)
	if err != nil {
		return fmt.Errorf("evaluator: load checkpoint %s: %w", name, err)
	}
	engine := rules.NewEngine(e.rulesFor)
	if cp.Snapshot != nil {
		if err := engine.Restore(cp.Snapshot); err != nil {
			return fmt.Errorf("evaluator: restore %s: %w", name, err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, held := e.parts[p]; held {
		return nil
	}
	e.parts[p] = &part{name: name, engine: engine, seen: cp.SnapSeq, snapSeq: cp.SnapSeq, lastSnap: e.Now()}
	close(e.restart)
	e.restart = make(chan struct{})
	return nil
}

// Release stops evaluating a part that is being handed to another node,
// after saving its state so the next holder need not replay.
func (e *Evaluator) Release(name string) {
	p, ok := parsePart(name)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	pt := e.parts[p]
	if pt == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.snapshot(ctx, pt); err != nil {
		e.Logger.Warn("snapshot before handing over a partition; the next holder replays more", "partition", name, "err", err)
	}
	delete(e.parts, p)
}

// Lost stops evaluating a part whose lease another node holds now.
func (e *Evaluator) Lost(name string) {
	if p, ok := parsePart(name); ok {
		e.mu.Lock()
		delete(e.parts, p)
		e.mu.Unlock()
	}
}

// Floor is the highest stream sequence that no part's snapshot needs
// again: the stream may drop everything up to it.
func (e *Evaluator) Floor(ctx context.Context) (uint64, error) {
	floor := uint64(math.MaxUint64)
	for p := range Partitions {
		cp, err := e.Store.Checkpoint(ctx, PartName(p))
		if err != nil {
			return 0, err
		}
		floor = min(floor, cp.SnapSeq)
	}
	return floor, nil
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
		from, restart := e.resumePoint()
		if from == 0 { // no part held: wait for one
			select {
			case <-ctx.Done():
			case <-restart:
			}
			continue
		}
		cctx, stop := context.WithCancel(ctx)
		go func() {
			select {
			case <-restart:
				stop()
			case <-cctx.Done():
			}
		}()
		err := e.Stream.ConsumeOrdered(cctx, from, maxBatch, e.handle)
		restarted := cctx.Err() != nil
		stop()
		if ctx.Err() != nil || (restarted && err == nil) {
			failures = 0
			continue
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

// resumePoint is where the stream must continue: after the least advanced
// part held (0 if none). Every part is live from there on.
func (e *Evaluator) resumePoint() (uint64, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.parts) == 0 {
		return 0, e.restart
	}
	from := uint64(math.MaxUint64)
	for _, pt := range e.parts {
		from = min(from, pt.seen+1)
		pt.live = true
	}
	return from, e.restart
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
	var out rules.Output
	now := e.Now()
	e.mu.Lock()
	for _, pt := range e.parts {
		if changed {
			pt.engine.Invalidate("")
		}
		pt.engine.Tick(now, &out)
	}
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
		rs, err := reading.DecodeBatch(m.Data)
		if err != nil {
			// The store writer dead-letters undecodable messages; here
			// they are simply passed over.
			e.Logger.Warn("skip undecodable stream message", "seq", m.Seq, "err", err)
		}
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Time.Before(rs[j].Time) })
		for _, r := range rs {
			pt := e.parts[PartitionOf(r.Patient)]
			if pt == nil || !pt.live || m.Seq <= pt.seen {
				continue // another node's, or evaluated before (replay)
			}
			pt.engine.Observe(r, m.Seq, &pt.pending)
			n++
			if r.Received.After(newest) {
				newest = r.Received
			}
		}
		for _, pt := range e.parts {
			if pt.live && m.Seq > pt.seen {
				pt.seen = m.Seq
				// An alarm does not wait for the rest of a backlog
				// batch: events are applied as soon as the message
				// that caused them is evaluated.
				if err := e.applyEvents(ctx, pt); err != nil {
					return err
				}
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
	for _, pt := range e.parts {
		if time.Since(pt.lastSnap) >= e.SnapshotEvery && pt.seen > pt.snapSeq {
			if err := e.snapshot(ctx, pt); err != nil {
				e.Logger.Warn("save rule engine snapshot", "partition", pt.name, "err", err) // retried at the next batch
			}
		}
	}
	if e.Metrics != nil {
		e.Metrics.batchSeconds.Observe(time.Since(start).Seconds())
	}
	return nil
}

// flush makes derived readings durable and applies the pending events with
// their positions; on failure everything stays pending for the retry.
func (e *Evaluator) flush(ctx context.Context) error {
	var derived []reading.Reading
	for _, pt := range e.parts {
		derived = append(derived, pt.pending.Derived...)
	}
	if len(derived) > 0 && e.Derived != nil {
		if err := e.Derived.Commit(ctx, derived); err != nil {
			return fmt.Errorf("store derived readings: %w", err)
		}
	}
	for _, pt := range e.parts {
		pt.pending.Derived = nil
		if err := e.applyEvents(ctx, pt); err != nil {
			return err
		}
	}
	return nil
}

// applyEvents applies a part's pending events with its position.
func (e *Evaluator) applyEvents(ctx context.Context, pt *part) error {
	evs := pt.pending.Events
	if len(evs) == 0 {
		// Nothing to apply: the position is recorded with the next events
		// or snapshot. A replay of these readings yields no events either
		// (the engine is deterministic), so no write is needed.
		return nil
	}
	if err := e.Alarms.Apply(ctx, alarm.Checkpoint{Name: pt.name, Applied: pt.seen}, evs); err != nil {
		return err
	}
	pt.pending.Events = nil
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

// snapshot saves a part's engine state at its position, unless events are
// still pending (the state is ahead of what was applied) or the stored
// snapshot is further on (another node holds the part now).
func (e *Evaluator) snapshot(ctx context.Context, pt *part) error {
	if len(pt.pending.Events) > 0 || len(pt.pending.Derived) > 0 || pt.seen <= pt.snapSeq {
		return nil
	}
	b, err := pt.engine.Snapshot()
	if err != nil {
		return err
	}
	stale := false
	err = e.Store.Update(ctx, func(tx alarm.Tx) error {
		cur, err := tx.Checkpoint(pt.name)
		if err != nil {
			return err
		}
		if stale = cur.SnapSeq > pt.seen; stale {
			return nil
		}
		return tx.SetCheckpoint(alarm.Checkpoint{Name: pt.name, Applied: max(cur.Applied, pt.seen), Snapshot: b, SnapSeq: pt.seen})
	})
	if err != nil {
		return err
	}
	if stale {
		e.Logger.Warn("partition snapshot behind the stored one; another node is evaluating it", "partition", pt.name)
	}
	pt.snapSeq, pt.lastSnap = pt.seen, time.Now()
	return nil
}

// checkBacklog raises or clears the system alarm for evaluation running
// behind ingest; the part of the system's (empty) patient id carries it.
func (e *Evaluator) checkBacklog(newest time.Time) {
	pt := e.parts[PartitionOf("")]
	if pt == nil {
		return
	}
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
	pt.pending.Events = append(pt.pending.Events, rules.Event{Type: typ, Rule: backlogRule, Name: "Ingest backlog",
		Kind: rules.KindNoData, Category: rules.CategoryTechnical, Priority: rules.PriorityMedium, Time: e.Now(),
		Message: fmt.Sprintf("Alarm evaluation is %s behind ingest", lag.Round(time.Second))})
}
