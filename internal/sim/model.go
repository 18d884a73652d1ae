package sim

import (
	"math"
	"math/rand/v2"
	"time"
)

// baseline is a patient's resting physiology.
type baseline struct {
	hr, spo2, rr, temp, sbp, dbp, weight, glucose float64
}

// vitals are the true physiological values at one instant, before the
// measurement noise of a device.
type vitals struct {
	hr, spo2, rr, temp, sbp, dbp, weight, glucose float64
	activity                                      float64 // 0 rest … 1 brisk walk
	irregular                                     float64 // beat-to-beat HR spread (AF)
}

// episode is one scenario or artefact in one patient; device is the index
// of the device it concerns, or -1 for the patient.
type episode struct {
	scenario   string
	start, end time.Time
	device     int
	started    bool // logged and applied
	ended      bool
}

func (e *episode) activeAt(t time.Time) bool { return !t.Before(e.start) && t.Before(e.end) }

// level ramps an effect in over rampIn and out over the last rampOut of
// the episode, so that changes are physiological rather than steps.
func level(e, d, rampIn, rampOut time.Duration) float64 {
	in, out := 1.0, 1.0
	if rampIn > 0 {
		in = min(1, float64(e)/float64(rampIn))
	}
	if rampOut > 0 {
		out = min(1, float64(d-e)/float64(rampOut))
	}
	return max(0, min(in, out))
}

// apply adds an active episode's physiological effect at time t.
func (e *episode) apply(v *vitals, b *baseline, t time.Time) {
	el, d := t.Sub(e.start), e.end.Sub(e.start)
	minutes := el.Minutes()
	switch e.scenario {
	case Sepsis:
		// Over hours: fever, tachycardia, tachypnoea, falling pressure.
		s := min(1, float64(el)/float64(4*time.Hour))
		v.hr += 45 * s
		v.rr += 12 * s
		v.temp += 2.2 * s
		v.sbp -= 45 * s
		v.dbp -= 22 * s
		v.spo2 -= 4 * s
	case Hypoxia:
		s := level(el, d, 3*time.Minute, 2*time.Minute)
		v.spo2 -= 15 * s
	case HypoglycaemiaFast:
		v.glucose -= min(3*minutes, b.glucose-45) * level(el, d, 0, 15*time.Minute)
	case HypoglycaemiaSlow:
		v.glucose -= min(0.45*minutes, b.glucose-58) * level(el, d, 0, 20*time.Minute)
	case AtrialFibrillation:
		s := level(el, d, time.Minute, 5*time.Minute)
		v.hr += 62 * s
		v.irregular += 18 * s
	case HypertensiveCrisis:
		s := level(el, d, 10*time.Minute, 10*time.Minute)
		v.sbp += 100 * s
		v.dbp += 45 * s
	case HFWeightGain:
		v.weight += 0.8 * el.Hours() / 24
	case FallNoResponse:
		v.activity = 0
	}
}

// physiology is the true state of a patient at t: baseline, circadian
// rhythm, meals, activity and the active episodes, with the correlations
// between signals (fever and hypoxia drive heart and breathing rates).
func physiology(b *baseline, activity float64, eps []*episode, t time.Time) vitals {
	h := float64(t.Hour()) + float64(t.Minute())/60
	// Lowest at 04:00, highest at 16:00.
	circ := -math.Cos(2 * math.Pi * (h - 4) / 24)
	v := vitals{hr: b.hr + 6*circ, spo2: b.spo2, rr: b.rr + 0.8*circ, temp: b.temp + 0.3*circ,
		sbp: b.sbp + 6*circ, dbp: b.dbp + 4*circ, weight: b.weight, glucose: b.glucose, activity: activity}
	for _, meal := range [...]float64{8, 13, 19} {
		x := (h - meal - 0.75) / 0.6
		v.glucose += 0.35 * b.glucose * math.Exp(-x*x)
	}
	for _, e := range eps {
		if e.activeAt(t) && e.device < 0 {
			e.apply(&v, b, t)
		}
	}
	v.hr += 35 * v.activity
	v.rr += 6 * v.activity
	v.sbp += 15 * v.activity
	if fever := v.temp - 37.2; fever > 0 {
		v.hr += 10 * fever
	}
	if drop := b.spo2 - v.spo2; drop > 0 {
		v.hr += 0.9 * drop
		v.rr += 0.6 * drop
	}
	v.glucose = max(v.glucose, 35)
	return v
}

// newBaseline draws a resting physiology.
func newBaseline(rng *rand.Rand, diabetic bool) baseline {
	n := func(mean, sd, lo, hi float64) float64 { return max(lo, min(hi, mean+sd*rng.NormFloat64())) }
	b := baseline{hr: n(74, 8, 56, 92), spo2: n(97, 0.8, 95, 99), rr: n(15, 1.2, 13, 18), temp: n(36.8, 0.15, 36.4, 37.1),
		sbp: n(124, 9, 105, 145), dbp: n(77, 6, 62, 90), weight: n(80, 15, 45, 150), glucose: n(100, 8, 85, 115)}
	if diabetic {
		b.glucose = n(140, 20, 110, 180)
	}
	return b
}

// activityAt draws the next activity block: asleep at night, otherwise
// mostly rest with some light activity and a little walking.
func nextActivity(rng *rand.Rand, t time.Time, setting string) (float64, time.Duration) {
	if h := t.Hour(); h >= 23 || h < 6 {
		return 0.02, 30 * time.Minute
	}
	var a float64
	switch r := rng.Float64(); {
	case r < 0.6:
		a = 0.05
	case r < 0.9:
		a = 0.3
	default:
		a = 0.8
	}
	if setting == Ward {
		a *= 0.4 // in bed or walking to the bathroom
	}
	return a, time.Duration(5+rng.IntN(16)) * time.Minute
}

// measure rounds a value the way a device reports it, within the range
// Tend accepts for the code.
func measure(v, lo, hi, step float64) float64 {
	v = max(lo, min(hi, v))
	return math.Round(v/step) * step
}
