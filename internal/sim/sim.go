// Package sim is Tend's device fleet simulator: virtual patients whose
// physiology follows a model (circadian rhythm, activity, meals, noise,
// artefacts, correlated signals), scripted clinical and technical scenarios
// mixed in at a rate, and devices that send what a real device would over
// Tend's real protocols with their own credentials. Every scenario episode
// goes to a ground-truth log, and Evaluate compares that log with Tend's
// alarm history: sensitivity, false alarms per patient-day and time to
// detection per scenario.
//
// A run is deterministic in its seed: the same seed, population and
// scenarios give the same readings, whatever the speed or concurrency. It
// runs on virtual time, either paced to real time (Speed 1, demos) or as
// fast as the server acknowledges (Speed 0, tests and load), in which case
// the server must share the virtual clock (see VirtualClock).
package sim

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sender delivers one device's payload (SenML JSON) to Tend and returns
// once Tend acknowledged it as durable. It is called concurrently for
// different devices, never concurrently for one device. MQTT and HTTP
// senders are here; an HL7 MLLP sender (ORU^R01 from a monitor gateway)
// plugs in the same way once HL7 ingest lands.
type Sender interface {
	Send(ctx context.Context, d *Device, payload []byte) error
}

// Config says what to simulate.
type Config struct {
	Patients  []Patient // registered: every device has an ID and a secret
	Seed      uint64
	Start     time.Time     // virtual start; zero = Now()
	Duration  time.Duration // virtual length of the run
	Speed     float64       // virtual seconds per real second; 0 = as fast as acknowledgements allow
	Scenarios []ScenarioSpec
	Sender    Sender
	// Truth receives the ground-truth log as JSON lines; nil keeps it
	// only in the Report.
	Truth io.Writer
	// Clock, when set, is moved to each step's virtual time before the
	// step's messages are sent, so a server sharing it sees the same time.
	Clock       *VirtualClock
	Concurrency int // sends in flight at once; default 256
	// Window is how much virtual time goes out in one round of sends when
	// running as fast as possible (default 10 s): the time resolution a
	// server sharing the clock sees.
	Window time.Duration
	Logger *slog.Logger
	Now    func() time.Time // wall clock for pacing; default time.Now
}

// Report is what a run did.
type Report struct {
	Start, End          time.Time // virtual
	Patients            int
	Messages, Readings  int64 // delivered
	UndeliveredMessages int64
	UndeliveredReadings int64
	FirstError          string
	Truth               []TruthEvent
	// Timeline maps wall-clock instants to virtual time, so that alarm
	// times stamped by a server's real clock can be compared with the
	// ground truth.
	Timeline []TimePoint
}

// maxDeviceWarnings bounds the per-device log lines when many devices fail
// at once (the server is down); a summary line follows every 30 s.
const maxDeviceWarnings = 20

// needsPoint reports whether the timeline needs a point at (wall,
// virtual): at most ten a second, and when paced only where the run
// strayed from its pace, so a long real-time run keeps a short timeline.
func (r *Report) needsPoint(wall, virtual time.Time, speed float64) bool {
	if len(r.Timeline) == 0 {
		return true
	}
	p := r.Timeline[len(r.Timeline)-1]
	if wall.Sub(p.Wall) < 100*time.Millisecond {
		return false
	}
	if speed == 0 {
		return true
	}
	expected := p.Virtual.Add(time.Duration(float64(wall.Sub(p.Wall)) * speed))
	return (virtual.Sub(expected)).Abs() > time.Duration(speed*float64(100*time.Millisecond))
}

// TimePoint pairs a wall-clock instant with the virtual time then.
type TimePoint struct{ Wall, Virtual time.Time }

// Virtual converts a wall-clock instant to virtual time by the run's
// timeline (identity when the run had none).
func (r *Report) Virtual(wall time.Time) time.Time {
	tl := r.Timeline
	if len(tl) == 0 {
		return wall
	}
	i, _ := slices.BinarySearchFunc(tl, wall, func(p TimePoint, w time.Time) int { return p.Wall.Compare(w) })
	switch {
	case i == 0:
		return tl[0].Virtual
	case i == len(tl):
		return tl[len(tl)-1].Virtual.Add(wall.Sub(tl[len(tl)-1].Wall))
	}
	a, b := tl[i-1], tl[i]
	f := float64(wall.Sub(a.Wall)) / float64(b.Wall.Sub(a.Wall))
	return a.Virtual.Add(time.Duration(f * float64(b.Virtual.Sub(a.Virtual))))
}

// Run simulates until Duration of virtual time has passed or ctx ends.
// Undelivered messages are counted, not retried: a device that lost its
// connection reconnects (see the senders) and goes on with fresh readings.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.check(); err != nil {
		return Report{}, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := cfg.Start
	if start.IsZero() {
		start = now()
	}
	start = start.UTC().Truncate(time.Millisecond)
	end := start.Add(cfg.Duration)
	conc := cmp.Or(cfg.Concurrency, 256)

	subs := make([]*subject, len(cfg.Patients))
	for i := range cfg.Patients {
		subs[i] = newSubject(i, &cfg.Patients[i], cfg.Seed, start)
	}
	chosen := chooseShares(cfg.Scenarios, cfg.Patients, cfg.Seed)
	for _, s := range subs {
		s.schedule(cfg.Scenarios, chosen, start, cfg.Duration)
	}

	rep := Report{Start: start, End: end, Patients: len(subs)}
	var truthEnc *json.Encoder
	if cfg.Truth != nil {
		truthEnc = json.NewEncoder(cfg.Truth)
	}
	flushTruth := func() error {
		var evs []TruthEvent
		for _, s := range subs {
			evs = append(evs, s.truth...)
			s.truth = s.truth[:0]
		}
		slices.SortStableFunc(evs, func(a, b TruthEvent) int { return a.When.Compare(b.When) })
		rep.Truth = append(rep.Truth, evs...)
		if truthEnc != nil {
			for i := range evs {
				if err := truthEnc.Encode(&evs[i]); err != nil {
					return fmt.Errorf("write ground truth: %w", err)
				}
			}
		}
		return nil
	}

	failing := make(map[string]int) // device id → undelivered in a row
	var lastSummary time.Time
	wallStart := now()
	window := time.Duration(0)
	if cfg.Speed == 0 {
		window = cmp.Or(cfg.Window, 10*time.Second)
	}
	t := nextDue(subs, end)
	for t.Before(end) && ctx.Err() == nil {
		if cfg.Speed > 0 {
			wait := wallStart.Add(time.Duration(float64(t.Sub(start)) / cfg.Speed)).Sub(now())
			if wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
				if ctx.Err() != nil {
					break
				}
			}
		}
		// As fast as possible, a window of steps goes out at once (one
		// round trip instead of one per step); each device still sends
		// its messages in order.
		var msgs []message
		last := t
		for windowEnd := t.Add(window); ; {
			msgs = append(msgs, generate(subs, t, conc)...)
			last = t
			t = nextDue(subs, end)
			if !t.Before(windowEnd) || !t.Before(end) {
				break
			}
		}
		if window > 0 {
			msgs = mergePerDevice(msgs)
		}
		if cfg.Clock != nil {
			cfg.Clock.Set(last)
		}
		results := send(ctx, cfg.Sender, cfg.Patients, msgs, conc)
		for i, err := range results {
			m := &msgs[i]
			dev := &cfg.Patients[m.patient].Devices[m.device]
			if err == nil {
				rep.Messages++
				rep.Readings += int64(m.readings)
				if n := failing[dev.ID]; n > 0 {
					log.Info("simulated device delivers again", "device", dev.ID, "undelivered_messages", n)
					delete(failing, dev.ID)
				}
				continue
			}
			if ctx.Err() != nil {
				break
			}
			rep.UndeliveredMessages++
			rep.UndeliveredReadings += int64(m.readings)
			if rep.FirstError == "" {
				rep.FirstError = err.Error()
			}
			if failing[dev.ID] == 0 && len(failing) < maxDeviceWarnings {
				log.Warn("simulated device could not deliver", "device", dev.ID, "err", err)
			}
			failing[dev.ID]++
		}
		if w := now(); len(failing) > 0 && w.Sub(lastSummary) >= 30*time.Second {
			lastSummary = w
			log.Warn("simulated devices failing to deliver", "devices", len(failing),
				"undelivered_readings", rep.UndeliveredReadings, "first_error", rep.FirstError)
		}
		if err := flushTruth(); err != nil {
			return rep, err
		}
		if w := now(); rep.needsPoint(w, last, cfg.Speed) {
			rep.Timeline = append(rep.Timeline, TimePoint{Wall: w, Virtual: last})
		}
	}
	for _, s := range subs {
		s.logEpisodes(earliest(t, end))
	}
	if err := flushTruth(); err != nil {
		return rep, err
	}
	rep.Timeline = append(rep.Timeline, TimePoint{Wall: now(), Virtual: earliest(t, end)})
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return rep, err
	}
	return rep, nil
}

func (c *Config) check() error {
	if len(c.Patients) == 0 {
		return errors.New("simulate: no patients")
	}
	if c.Sender == nil {
		return errors.New("simulate: no sender")
	}
	if c.Duration <= 0 {
		return errors.New("simulate: duration must be positive")
	}
	if math.IsNaN(c.Speed) || c.Speed < 0 {
		return errors.New("simulate: speed must be 0 (as fast as possible) or positive")
	}
	for i, p := range c.Patients {
		for j, d := range p.Devices {
			if d.ID == "" {
				return fmt.Errorf("simulate: patients[%d] (%s) devices[%d] (%s) has no id: register the fleet first", i, p.Label, j, d.Kind)
			}
		}
	}
	for _, s := range c.Scenarios {
		if err := s.validate(func(f string) string { return "scenario " + s.Name + ": " + f }); err != nil {
			return err
		}
	}
	return nil
}

// chooseShares picks, per scenario with a Share, which eligible patients
// get its one scheduled episode.
func chooseShares(specs []ScenarioSpec, ps []Patient, seed uint64) map[string]map[int]bool {
	out := map[string]map[int]bool{}
	for i, spec := range specs {
		if spec.Share == 0 {
			continue
		}
		var eligible []int
		for j := range ps {
			if ps[j].Has(scenarioKinds[spec.Name].needs...) {
				eligible = append(eligible, j)
			}
		}
		rng := rand.New(rand.NewPCG(seed, 0xc0ffee+uint64(i)))
		rng.Shuffle(len(eligible), func(a, b int) { eligible[a], eligible[b] = eligible[b], eligible[a] })
		n := int(math.Ceil(spec.Share * float64(len(eligible))))
		if out[spec.Name] == nil {
			out[spec.Name] = map[int]bool{}
		}
		for _, j := range eligible[:n] {
			out[spec.Name][j] = true
		}
	}
	return out
}

// generate steps every due patient to t, in parallel, and returns their
// messages in patient order.
func generate(subs []*subject, t time.Time, conc int) []message {
	per := make([][]message, len(subs))
	workers := min(max(1, conc/32), 8, len(subs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(subs) {
					return
				}
				if s := subs[i]; !s.dueAt().After(t) {
					per[i] = s.step(t, nil)
				}
			}
		}()
	}
	wg.Wait()
	var out []message
	for _, m := range per {
		out = append(out, m...)
	}
	return out
}

// send delivers the messages with at most conc in flight, each device's
// messages one after the other in order.
func send(ctx context.Context, snd Sender, ps []Patient, msgs []message, conc int) []error {
	errs := make([]error, len(msgs))
	type key struct{ patient, device int }
	var order []key
	byDevice := map[key][]int{}
	for i, m := range msgs {
		k := key{m.patient, m.device}
		if _, ok := byDevice[k]; !ok {
			order = append(order, k)
		}
		byDevice[k] = append(byDevice[k], i)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1) - 1)
				if j >= len(order) {
					return
				}
				k := order[j]
				for _, i := range byDevice[k] {
					errs[i] = snd.Send(ctx, &ps[k.patient].Devices[k.device], msgs[i].payload)
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

// Bounds of a merged payload, well within what Tend accepts in one.
const (
	mergeMaxRecords = 2000
	mergeMaxBytes   = 128 << 10
)

// mergePerDevice joins each device's consecutive SenML packs of one window
// into one, so that a window costs each device one acknowledgement.
func mergePerDevice(msgs []message) []message {
	type key struct{ patient, device int }
	at := map[key]int{}
	out := msgs[:0:0]
	for _, m := range msgs {
		k := key{m.patient, m.device}
		if i, ok := at[k]; ok && out[i].readings+m.readings <= mergeMaxRecords && len(out[i].payload)+len(m.payload) <= mergeMaxBytes {
			p := out[i].payload
			p = append(p[:len(p)-1:len(p)-1], ',')
			out[i].payload = append(p, m.payload[1:]...)
			out[i].readings += m.readings
			continue
		}
		at[k] = len(out)
		out = append(out, m)
	}
	return out
}

// nextDue is the earliest next message of any device, or end.
func nextDue(subs []*subject, end time.Time) time.Time {
	t := end
	for _, s := range subs {
		if d := s.dueAt(); d.Before(t) {
			t = d
		}
	}
	return t
}

// VirtualClock is a clock the simulator moves; give its Now to a node so
// that Tend and the simulated devices agree on the time.
type VirtualClock struct{ ns atomic.Int64 }

// NewVirtualClock returns a clock standing at t.
func NewVirtualClock(t time.Time) *VirtualClock {
	c := &VirtualClock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time.
func (c *VirtualClock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Set moves the clock to t; it never goes back.
func (c *VirtualClock) Set(t time.Time) {
	for {
		cur := c.ns.Load()
		if t.UnixNano() <= cur || c.ns.CompareAndSwap(cur, t.UnixNano()) {
			return
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
