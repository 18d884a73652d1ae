package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// storedMetric is the server histogram of publish→stored latency.
const storedMetric = "tend_publish_to_stored_seconds"

// runTend is the full run against Tend: setup, load, stored check, metrics.
func runTend(ctx context.Context, cfg Config) (Result, error) {
	res := Result{Proto: cfg.Proto, Devices: cfg.Devices, PerMessage: cfg.ReadingsPerMessage, Duration: cfg.Duration}
	api := newAPIClient(cfg.HTTPURL, cfg.Token, cfg.SetupConcurrency)
	defer api.close()

	if err := api.call(ctx, "check readiness", http.MethodGet, "/readyz", "", nil, nil, http.StatusOK); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	total := cfg.Devices
	if cfg.Alarms {
		total += cfg.Probes
	}
	fmt.Fprintf(cfg.Out, "bench: run %s: setting up %d patients and devices\n", cfg.RunID, total)
	setupStart := cfg.Now()
	all := make([]benchDevice, total)
	err := forEach(ctx, total, cfg.SetupConcurrency, func(ctx context.Context, i int) error {
		d, err := api.setupDevice(ctx, cfg.RunID, i)
		all[i] = d
		return err
	})
	if err != nil {
		return res, fmt.Errorf("bench: setup: %w", err)
	}
	fmt.Fprintf(cfg.Out, "bench: setup took %s\n", cfg.Now().Sub(setupStart).Round(time.Millisecond))
	devs := all[:cfg.Devices]

	var alarms *alarmScenario
	if cfg.Alarms {
		alarms = newAlarmScenario(cfg, api, all[cfg.Devices:])
		if err := alarms.connect(ctx); err != nil {
			return res, fmt.Errorf("bench: alarm scenario: %w", err)
		}
		defer alarms.close()
	}
	// Probes run alongside the load on the same phases. The live streams
	// close with them: left open through the store check, they would
	// report the no-data alarms of background devices that stopped.
	startProbes := func(p *phases) func() {
		if alarms == nil {
			return func() {}
		}
		wait := alarms.start(p)
		return func() {
			wait()
			alarms.close()
		}
	}

	// Scrape the histogram when the measured window opens, so warmup
	// observations can be subtracted.
	var before []byte
	var beforeErr error
	var beforeOnce sync.Once
	scrape := func() { beforeOnce.Do(func() { before, beforeErr = api.metrics(ctx) }) }

	var tallies []*tally
	var lead time.Duration
	label := "tend/" + cfg.Proto
	switch cfg.Proto {
	case "mqtt":
		m := &mqttLoad{cfg: cfg, targets: make([]mqttTarget, len(devs))}
		for i, d := range devs {
			m.targets[i] = mqttTarget{broker: cfg.brokerFor(i), clientID: d.device,
				username: d.device, password: d.secret, topic: "tend/v1/devices/" + d.device + "/obs"}
		}
		fmt.Fprintf(cfg.Out, "bench: connecting %d MQTT devices to %s\n", len(devs), cfg.MQTTAddr)
		if err := m.connect(ctx); err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
		if cfg.Warmup == 0 {
			scrape()
		}
		p, finish := startPhases(ctx, cfg, label, scrape)
		probesDone := startProbes(p)
		tallies, lead = m.run(p)
		probesDone()
		finish()
		m.disconnect()
	case "http":
		if cfg.Warmup == 0 {
			scrape()
		}
		h := newHTTPLoad(cfg, devs)
		p, finish := startPhases(ctx, cfg, label, scrape)
		probesDone := startProbes(p)
		tallies, lead = h.run(ctx, p)
		probesDone()
		finish()
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	s := summarise(tallies, cfg.Duration)
	res.Acked, res.AckedTotal, res.Rate, res.Errors = s.acked, s.ackedTotal, s.rate, s.errors
	res.AckP50, res.AckP99, res.AckMax = s.p50, s.p99, s.max
	res.TimeLead = lead
	if s.firstErr != nil {
		res.FirstError = s.firstErr.Error()
	}
	if res.AckedTotal == 0 {
		return res, fmt.Errorf("bench: no reading was acknowledged: %s", orNone(res.FirstError))
	}
	fmt.Fprintf(cfg.Out, "bench: %d readings acked in the window (%.0f/s), %d in all; waiting until all are stored\n", res.Acked, res.Rate, res.AckedTotal)
	if lead > time.Second {
		fmt.Fprintf(cfg.Out, "bench: note: reading times ran up to %s ahead of the clock (over 1000 readings/s per device and code)\n", lead.Round(time.Millisecond))
	}

	expect := make([]int64, len(devs))
	for i, t := range tallies {
		expect[i] = t.ackedTotal
	}
	stored, lost, err := waitStored(ctx, api, devs, expect, cfg)
	res.Stored, res.Lost = stored, lost
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}

	after, err := api.metrics(ctx)
	if err == nil && beforeErr == nil {
		res.StoredP50, res.StoredP99, err = storedQuantiles(before, after)
	} else if err == nil {
		err = beforeErr
	}
	if err != nil {
		fmt.Fprintf(cfg.Out, "bench: publish→stored latency unavailable: %v\n", err)
	}
	if alarms != nil {
		var b, a []byte
		if beforeErr == nil && after != nil {
			b, a = before, after
		}
		ar, err := alarms.result(cfg.Devices, b, a)
		res.Alarm = &ar
		if err != nil {
			fmt.Fprintf(cfg.Out, "bench: alarm scenario: %v\n", err)
		}
	}
	var errs []error
	if lost > 0 {
		errs = append(errs, fmt.Errorf("bench: %d of %d acknowledged readings were not stored within %s: %w", lost, res.AckedTotal, cfg.StoreTimeout, ErrLost))
	}
	if a := res.Alarm; a != nil && (a.Missed > 0 || a.RaisesSent == 0) {
		if a.RaisesSent == 0 {
			errs = append(errs, fmt.Errorf("bench: no probe raise was sent in the window: %w", ErrMissedAlarms))
		} else {
			errs = append(errs, fmt.Errorf("bench: %d probe alarms were not seen on the live stream within %s: %w", a.Missed, cfg.MissAfter, ErrMissedAlarms))
		}
	}
	return res, errors.Join(errs...)
}

// waitStored polls the observation count of every bench patient until it
// reaches what was acknowledged for its device, or the store made no
// progress for the store timeout (a store that is behind but catching up is
// not losing data). It returns the stored total and the shortfall.
func waitStored(ctx context.Context, api *apiClient, devs []benchDevice, expect []int64, cfg Config) (stored, lost int64, err error) {
	got := make([]int64, len(devs))
	deadline := cfg.Now().Add(cfg.StoreTimeout)
	var prev int64 = -1
	for {
		var mu sync.Mutex
		err := forEach(ctx, len(devs), cfg.SetupConcurrency, func(ctx context.Context, i int) error {
			mu.Lock()
			done := got[i] >= expect[i]
			mu.Unlock()
			if done {
				return nil
			}
			n, err := api.countObservations(ctx, devs[i].patient)
			if err != nil {
				return err
			}
			mu.Lock()
			got[i] = n
			mu.Unlock()
			return nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("check stored readings: %w", err)
		}
		stored, lost = 0, 0
		for i := range got {
			stored += got[i]
			lost += max(expect[i]-got[i], 0)
		}
		if stored > prev {
			prev, deadline = stored, cfg.Now().Add(cfg.StoreTimeout)
		}
		if lost == 0 || !cfg.Now().Before(deadline) {
			return stored, lost, nil
		}
		select {
		case <-ctx.Done():
			return stored, lost, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// storedQuantiles computes publish→stored p50/p99 from two scrapes.
func storedQuantiles(before, after []byte) (p50, p99 time.Duration, err error) {
	return histogramQuantiles(before, after, storedMetric)
}

// histogramQuantiles computes p50/p99 of histogram name over the
// observations made between two scrapes.
func histogramQuantiles(before, after []byte, name string) (p50, p99 time.Duration, err error) {
	a, err := parseHistogram(after, name)
	if err != nil {
		return 0, 0, err
	}
	if a == nil {
		return 0, 0, errors.New("the server does not expose " + name)
	}
	b, err := parseHistogram(before, name)
	if err != nil {
		return 0, 0, err
	}
	d := subtractBuckets(a, b)
	q50, q99 := histogramQuantile(0.50, d), histogramQuantile(0.99, d)
	if math.IsNaN(q50) || math.IsNaN(q99) {
		return 0, 0, errors.New(name + " has no observations in the window")
	}
	return seconds(q50), seconds(q99), nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// runBaseline sends the same MQTT load to a plain broker.
func runBaseline(ctx context.Context, cfg Config) (BaselineResult, error) {
	b := BaselineResult{Addr: cfg.Baseline}
	m := &mqttLoad{cfg: cfg, targets: make([]mqttTarget, cfg.Devices)}
	for i := range m.targets {
		id := "bench-" + cfg.RunID + "-" + strconv.Itoa(i)
		m.targets[i] = mqttTarget{broker: brokerURL(cfg.Baseline), clientID: id,
			topic: "bench/" + cfg.RunID + "/" + strconv.Itoa(i)}
	}
	fmt.Fprintf(cfg.Out, "bench: baseline: connecting %d MQTT clients to %s\n", cfg.Devices, cfg.Baseline)
	if err := m.connect(ctx); err != nil {
		return b, fmt.Errorf("bench: baseline: %w", err)
	}
	p, finish := startPhases(ctx, cfg, "baseline ", nil)
	tallies, _ := m.run(p)
	finish()
	m.disconnect()
	if err := ctx.Err(); err != nil {
		return b, fmt.Errorf("bench: baseline: %w", err)
	}
	s := summarise(tallies, cfg.Duration)
	if s.ackedTotal == 0 {
		return b, fmt.Errorf("bench: baseline: no message was acknowledged: %s", orNone(errText(s.firstErr)))
	}
	b.Acked, b.Rate, b.Errors = s.acked, s.rate, s.errors
	b.AckP50, b.AckP99, b.AckMax = s.p50, s.p99, s.max
	fmt.Fprintf(cfg.Out, "bench: baseline: %d readings acked in the window (%.0f/s)\n", b.Acked, b.Rate)
	return b, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func orNone(s string) string {
	if s == "" {
		return "no error was reported"
	}
	return "first error: " + s
}
