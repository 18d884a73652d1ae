package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/tendhealth/tend/internal/codes"
)

// Sampling periods.
const (
	monitorEvery  = 5 * time.Second // 1 Hz HR and SpO2, sent in 5 s batches
	wearableEvery = time.Minute
	cgmEvery      = 5 * time.Minute
	statusEvery   = 6 * time.Hour // battery of devices that otherwise say little
)

// Artefact rates per patient-day.
const (
	probeOffPerDay = 3.0
	motionChance   = 0.004 // per SpO2 sample while active
)

// Daily measurement times (hours UTC) of home devices.
var (
	cuffHours        = []float64{8, 20}
	scaleHours       = []float64{7}
	thermometerHours = []float64{7.1}
	glucometerHours  = []float64{7.5, 12, 18, 22}
	// A dispenser offers a dose at 08:00 and 20:00 and reports at the end
	// of its 20-minute window whether the dose was taken.
	doseReportHours = []float64{8 + 1.0/3, 20 + 1.0/3}
	doseWindow      = 20 * time.Minute
)

// deviceState is the runtime state of one simulated device.
type deviceState struct {
	dev         *Device
	next        time.Time // next message
	nextSlow    time.Time // monitor: NIBP; wearable: steps
	nextTemp    time.Time // monitor temperature
	nextBattery time.Time
	sensorOff   bool      // last sensor-off state reported
	built       time.Time // when the device's last message was built
}

// message is one payload a device sends.
type message struct {
	patient  int
	device   int
	at       time.Time // virtual send time
	payload  []byte
	readings int
}

// subject is one patient while the simulation runs. It is used by one
// goroutine at a time; its random source makes it deterministic in the
// seed whatever the concurrency.
type subject struct {
	idx      int
	p        *Patient
	rng      *rand.Rand
	base     baseline
	activity float64
	actUntil time.Time
	devices  []deviceState
	episodes []*episode
	nextOff  time.Time // next probe-off artefact
	cgmErr   float64   // relative CGM error, drifting
	truth    []TruthEvent
}

func newSubject(idx int, p *Patient, seed uint64, start time.Time) *subject {
	s := &subject{idx: idx, p: p, rng: rand.New(rand.NewPCG(seed, uint64(idx)+1))}
	s.base = newBaseline(s.rng, p.Diabetic)
	s.devices = make([]deviceState, len(p.Devices))
	for i := range p.Devices {
		d := &s.devices[i]
		d.dev = &p.Devices[i]
		// Spread first messages over a minute so devices do not all send at once.
		first := start.Add(time.Second + time.Duration(s.rng.IntN(60))*time.Second)
		switch d.dev.Kind {
		case Monitor:
			first = start.Add(monitorEvery + time.Duration(s.rng.IntN(5))*time.Second)
			d.nextSlow, d.nextTemp = first, first
		case Wearable:
			d.nextSlow = first.Add(15 * time.Minute)
		case PillDispenser:
			first = nextDaily(start, doseReportHours) // it speaks when a dose window ends
		}
		d.next, d.nextBattery = first, first
	}
	if p.Has(Monitor) {
		s.nextOff = start.Add(s.expWait(probeOffPerDay))
	}
	return s
}

// expWait draws the wait to the next event of a Poisson process.
func (s *subject) expWait(perDay float64) time.Duration {
	return time.Duration(s.rng.ExpFloat64() / perDay * float64(24*time.Hour))
}

// schedule places the patient's scripted episodes.
func (s *subject) schedule(specs []ScenarioSpec, chosen map[string]map[int]bool, start time.Time, dur time.Duration) {
	for _, spec := range specs {
		k := scenarioKinds[spec.Name]
		if !s.p.Has(k.needs...) {
			continue
		}
		length := spec.Duration
		if length == 0 {
			length = k.duration
		}
		if chosen[spec.Name][s.idx] {
			s.addEpisode(spec.Name, start.Add(spec.At), length)
		}
		if spec.Rate > 0 {
			for at := start.Add(s.expWait(spec.Rate)); at.Before(start.Add(dur)); at = at.Add(length + s.expWait(spec.Rate)) {
				s.addEpisode(spec.Name, at, length)
			}
		}
	}
	slices.SortStableFunc(s.episodes, func(a, b *episode) int { return a.start.Compare(b.start) })
}

// addEpisode adds an episode; device scenarios pick the device they
// concern.
func (s *subject) addEpisode(name string, at time.Time, length time.Duration) {
	e := &episode{scenario: name, start: at, end: at.Add(length), device: -1}
	switch name {
	case BatteryDrain, ClockSkew, ProbeOff, MotionArtefact:
		for i, d := range s.p.Devices {
			if slices.Contains(scenarioKinds[name].needs, d.Kind) {
				e.device = i
				break
			}
		}
	}
	s.episodes = append(s.episodes, e)
}

// deviceEpisode returns the active episode of a device scenario, if any.
func (s *subject) deviceEpisode(dev int, name string, t time.Time) *episode {
	for _, e := range s.episodes {
		if e.device == dev && e.scenario == name && e.activeAt(t) {
			return e
		}
	}
	return nil
}

// activeEpisode reports whether a patient scenario is under way at t.
func (s *subject) activeEpisode(name string, t time.Time) bool {
	for _, e := range s.episodes {
		if e.device < 0 && e.scenario == name && e.activeAt(t) {
			return true
		}
	}
	return false
}

// dueAt returns the earliest next message of the patient's devices.
func (s *subject) dueAt() time.Time {
	var t time.Time
	for i := range s.devices {
		if n := s.devices[i].next; t.IsZero() || n.Before(t) {
			t = n
		}
	}
	return t
}

// step moves the patient to virtual time t: logs episodes that started
// or ended and builds the messages of every device that is due.
func (s *subject) step(t time.Time, out []message) []message {
	if !s.nextOff.IsZero() && !t.Before(s.nextOff) {
		s.addEpisode(ProbeOff, s.nextOff, time.Duration(30+s.rng.IntN(61))*time.Second)
		s.nextOff = s.nextOff.Add(2*time.Minute + s.expWait(probeOffPerDay))
	}
	s.logEpisodes(t)
	for !t.Before(s.actUntil) {
		var d time.Duration
		s.activity, d = nextActivity(s.rng, t, s.p.Setting)
		s.actUntil = t.Add(d)
	}
	for i := range s.devices {
		d := &s.devices[i]
		if t.Before(d.next) {
			continue
		}
		if payload, n := s.build(i, d, t); n > 0 {
			out = append(out, message{patient: s.idx, device: i, at: t, payload: payload, readings: n})
		}
	}
	return out
}

// logEpisodes records starts and ends up to t in the ground truth.
func (s *subject) logEpisodes(t time.Time) {
	for _, e := range s.episodes {
		if !e.started && !t.Before(e.start) {
			e.started = true
			s.truth = append(s.truth, s.truthEvent(e, "start", e.start))
		}
		if e.started && !e.ended && !t.Before(e.end) {
			e.ended = true
			s.truth = append(s.truth, s.truthEvent(e, "end", e.end))
		}
	}
	// Ended episodes have no effect any more; dropping them keeps every
	// sample's cost flat over long runs.
	s.episodes = slices.DeleteFunc(s.episodes, func(e *episode) bool { return e.ended })
}

func (s *subject) truthEvent(e *episode, what string, at time.Time) TruthEvent {
	ev := TruthEvent{When: at.UTC(), Patient: s.p.ID, Label: s.p.Label, Scenario: e.scenario, What: what}
	if e.device >= 0 {
		ev.Device = s.p.Devices[e.device].ID
	}
	return ev
}

// pack appends SenML JSON records with absolute times.
type pack struct {
	buf []byte
	n   int
}

func (m *pack) add(code, unit string, v float64, at time.Time) {
	if m.n == 0 {
		m.buf = append(m.buf, '[')
	} else {
		m.buf = append(m.buf, ',')
	}
	m.buf = append(m.buf, `{"n":"`...)
	m.buf = append(m.buf, code...)
	m.buf = append(m.buf, `","u":"`...)
	m.buf = append(m.buf, unit...)
	m.buf = append(m.buf, `","v":`...)
	m.buf = strconv.AppendFloat(m.buf, v, 'f', -1, 64)
	m.buf = append(m.buf, `,"t":`...)
	ms := at.UnixMilli()
	m.buf = strconv.AppendFloat(m.buf, float64(ms)/1000, 'f', 3, 64)
	m.buf = append(m.buf, '}')
	m.n++
}

func (m *pack) bytes() []byte {
	if m.n == 0 {
		return nil
	}
	return append(m.buf, ']')
}

// build makes device i's message at t and schedules its next one.
func (s *subject) build(i int, d *deviceState, t time.Time) ([]byte, int) {
	var m pack
	kind := d.dev.Kind
	skew := time.Duration(0)
	if s.deviceEpisode(i, ClockSkew, t) != nil {
		skew = 3 * time.Minute // under the 5 min Tend accepts ahead, over its 2 min alarm
	}
	drain := s.deviceEpisode(i, BatteryDrain, t)
	battery := s.battery(kind, t)
	if drain != nil {
		battery = 100 * (1 - float64(t.Sub(drain.start))/float64(drain.end.Sub(drain.start))/0.8)
		if battery < 2 {
			// Flat: the device says nothing until it is charged.
			d.next = s.nextTime(kind, d.next, t)
			return nil, 0
		}
	}
	at := func(x time.Time) time.Time { return x.Add(skew) }
	switch kind {
	case Monitor:
		off := s.deviceEpisode(i, ProbeOff, t) != nil
		if off != d.sensorOff {
			m.add(codes.SensorOff, "{flag}", b2f(off), at(t))
			d.sensorOff = off
		}
		for k := monitorEvery - time.Second; k >= 0; k -= time.Second {
			st := t.Add(-k)
			v := physiology(&s.base, s.activity, s.episodes, st)
			m.add(codes.HeartRate, "/min", measure(v.hr+2*s.rng.NormFloat64()+v.irregular*s.rng.NormFloat64(), 25, 250, 1), at(st))
			if !off {
				m.add(codes.OxygenSaturation, "%", s.spo2(i, v, st), at(st))
			}
		}
		v := physiology(&s.base, s.activity, s.episodes, t)
		m.add(codes.RespiratoryRate, "/min", measure(v.rr+s.rng.NormFloat64(), 4, 60, 1), at(t))
		if !t.Before(d.nextSlow) {
			s.addBP(&m, v, at(t))
			d.nextSlow = t.Add(15 * time.Minute)
		}
		if !t.Before(d.nextTemp) {
			m.add(codes.BodyTemperature, "Cel", measure(v.temp+0.1*s.rng.NormFloat64(), 30, 43, 0.1), at(t))
			d.nextTemp = t.Add(30 * time.Minute)
		}
	case Wearable:
		v := physiology(&s.base, s.activity, s.episodes, t)
		m.add(codes.HeartRate, "/min", measure(v.hr+2*s.rng.NormFloat64()+v.irregular*s.rng.NormFloat64(), 25, 250, 1), at(t))
		m.add(codes.OxygenSaturation, "%", s.spo2(i, v, t), at(t))
		for _, e := range s.episodes {
			if e.scenario == FallNoResponse && e.activeAt(t) && e.device < 0 && t.Sub(e.start) < wearableEvery {
				m.add(codes.Fall, "{flag}", 1, at(e.start))
			}
		}
		if !t.Before(d.nextSlow) {
			steps := math.Max(0, math.Round(v.activity*100*15+20*s.rng.NormFloat64()))
			if v.activity < 0.03 {
				steps = 0
			}
			m.add(codes.Steps, "{steps}", steps, at(t))
			d.nextSlow = t.Add(15 * time.Minute)
		}
	case BPCuff:
		v := physiology(&s.base, s.activity, s.episodes, t)
		s.addBP(&m, v, at(t))
		m.add(codes.PulseRate, "/min", measure(v.hr+2*s.rng.NormFloat64(), 25, 250, 1), at(t))
	case Scale:
		v := physiology(&s.base, s.activity, s.episodes, t)
		m.add(codes.BodyWeight, "kg", measure(v.weight+0.2*s.rng.NormFloat64(), 1, 600, 0.1), at(t))
	case Thermometer:
		v := physiology(&s.base, s.activity, s.episodes, t)
		m.add(codes.BodyTemperature, "Cel", measure(v.temp+0.1*s.rng.NormFloat64(), 30, 43, 0.1), at(t))
	case Glucometer:
		v := physiology(&s.base, s.activity, s.episodes, t)
		m.add(codes.CapillaryGlucose, "mg/dL", measure(v.glucose*(1+0.06*s.rng.NormFloat64()), 20, 600, 1), at(t))
	case CGM:
		v := physiology(&s.base, s.activity, s.episodes, t)
		// A CGM's error drifts slowly (sensor lag, calibration) rather than
		// jumping between readings; white noise would fake fast falls.
		s.cgmErr = 0.85*s.cgmErr + 0.012*s.rng.NormFloat64()
		m.add(codes.InterstitialGlucose, "mg/dL", measure(v.glucose*(1+s.cgmErr)+1.5*s.rng.NormFloat64(), 40, 400, 1), at(t))
	case PillDispenser:
		if s.activeEpisode(MissedDoses, t) {
			m.add(codes.DoseMissed, "{flag}", 1, at(t))
		} else {
			taken := t.Add(-doseWindow).Add(time.Duration(1+s.rng.IntN(15)) * time.Minute)
			m.add(codes.DoseTaken, "{flag}", 1, at(taken))
		}
	case PanicButton:
		for _, e := range s.episodes {
			if e.scenario == PanicPress && e.start.After(d.built) && !e.start.After(t) {
				m.add(codes.PanicButton, "{flag}", 1, at(e.start))
			}
		}
	}
	d.built = t
	if !t.Before(d.nextBattery) {
		m.add(codes.Battery, "%", measure(battery, 0, 100, 1), at(t))
		d.nextBattery = t.Add(batteryEvery(kind))
		if drain != nil {
			d.nextBattery = t.Add(5 * time.Minute)
		}
	}
	d.next = s.nextTime(kind, d.next, t)
	return m.bytes(), m.n
}

// spo2 measures saturation, with an occasional motion artefact (a short
// false dip) while the patient moves.
func (s *subject) spo2(dev int, v vitals, t time.Time) float64 {
	val := v.spo2 + 0.7*s.rng.NormFloat64()
	if v.activity > 0.2 && s.deviceEpisode(dev, MotionArtefact, t) == nil && s.rng.Float64() < motionChance {
		s.addEpisode(MotionArtefact, t, time.Duration(8+s.rng.IntN(10))*time.Second)
		s.episodes[len(s.episodes)-1].device = dev
	}
	if s.deviceEpisode(dev, MotionArtefact, t) != nil {
		val -= 9
	}
	return measure(val, 50, 100, 1)
}

func (s *subject) addBP(m *pack, v vitals, at time.Time) {
	sys := measure(v.sbp+5*s.rng.NormFloat64(), 50, 260, 1)
	dia := measure(math.Min(v.dbp+4*s.rng.NormFloat64(), sys-10), 30, 200, 1)
	m.add(codes.SystolicBP, "mm[Hg]", sys, at)
	m.add(codes.DiastolicBP, "mm[Hg]", dia, at)
	m.n-- // Tend stores the pair as one blood-pressure reading
}

// battery is a device's charge without a drain scenario: mains-powered
// monitors stay full; wearables are charged every evening at 22:00.
func (s *subject) battery(kind Kind, t time.Time) float64 {
	switch kind {
	case Monitor:
		return 100
	case Wearable:
		h := math.Mod(float64(t.Hour())+float64(t.Minute())/60-22+24, 24)
		return 100 - 1.5*h
	}
	return 90
}

func batteryEvery(kind Kind) time.Duration {
	switch kind {
	case Monitor:
		return 10 * time.Minute
	case Wearable:
		return 30 * time.Minute
	}
	return statusEvery
}

// nextTime schedules a device's next message after t.
func (s *subject) nextTime(kind Kind, prev, t time.Time) time.Time {
	switch kind {
	case Monitor:
		return prev.Add(monitorEvery)
	case Wearable:
		return prev.Add(wearableEvery)
	case CGM:
		return prev.Add(cgmEvery)
	case BPCuff:
		return nextDaily(t, cuffHours)
	case Scale:
		return nextDaily(t, scaleHours)
	case Thermometer:
		return nextDaily(t, thermometerHours)
	case Glucometer:
		return nextDaily(t, glucometerHours)
	case PillDispenser:
		return nextDaily(t, doseReportHours)
	case PanicButton:
		// A press is sent at once, between the periodic status messages.
		next := t.Add(statusEvery)
		for _, e := range s.episodes {
			if e.scenario == PanicPress && e.start.After(t) && e.start.Before(next) {
				next = e.start
			}
		}
		return next
	}
	return t.Add(statusEvery)
}

// nextDaily is the first of the daily times (hours UTC) after t.
func nextDaily(t time.Time, hours []float64) time.Time {
	day := t.UTC().Truncate(24 * time.Hour)
	for d := 0; d < 2; d++ {
		for _, h := range hours {
			c := day.Add(time.Duration(d)*24*time.Hour + time.Duration(h*float64(time.Hour)))
			if c.After(t) {
				return c
			}
		}
	}
	return t.Add(24 * time.Hour)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
