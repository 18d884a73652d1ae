package glucose

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Model constants from Nightscout lib/plugins/ar2.js.
const (
	BGRef = 140.0 // mg/dL, central tendency the model reverts to
	BGMin = 36.0  // mg/dL, lowest input accepted and lowest value predicted
	BGMax = 400.0 // mg/dL, highest input accepted and highest value predicted

	Step          = 5 * time.Minute // model step, and the spacing of predicted points
	StepTolerance = time.Minute     // previous reading must be Step +/- this before the current one

	WarnLoss   = 0.05 // AvgLoss above this: Nightscout's warning
	UrgentLoss = 0.10 // AvgLoss above this: Nightscout's urgent alarm

	MaxSteps = 24 // 2 hours; the model means little beyond that

	lossSteps = 6 // AvgLoss always uses the first 6 predictions, whatever steps is
)

// AR coefficients for x[n-1] and x[n].
var arCoeff = [2]float64{-0.723, 1.716}

// Point is one glucose value.
type Point struct {
	At   time.Time
	MgDL float64
}

// Level is the alarm level Nightscout derives from AvgLoss.
type Level int

// Alarm levels.
const (
	LevelNone Level = iota
	LevelWarn
	LevelUrgent
)

// String returns "none", "warn" or "urgent".
func (l Level) String() string {
	switch l {
	case LevelNone:
		return "none"
	case LevelWarn:
		return "warn"
	case LevelUrgent:
		return "urgent"
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// LevelFor maps an AvgLoss to an alarm level (thresholds are exclusive).
func LevelFor(avgLoss float64) Level {
	switch {
	case avgLoss > UrgentLoss:
		return LevelUrgent
	case avgLoss > WarnLoss:
		return LevelWarn
	}
	return LevelNone
}

// Forecast is an AR2 prediction.
type Forecast struct {
	From    Point   // the current reading the forecast starts from
	Points  []Point // predicted values at From.At + Step, + 2*Step, ...
	AvgLoss float64 // Nightscout's alarm measure over the first 6 predictions
	Level   Level   // LevelFor(AvgLoss)
}

// Errors returned by AR2 (wrapped with details).
var (
	ErrSpacing    = errors.New("glucose: readings are not 5 minutes apart")
	ErrOutOfRange = errors.New("glucose: reading outside the forecastable range")
	ErrSteps      = errors.New("glucose: forecast steps out of range")
)

// AR2 forecasts steps points (0..MaxSteps), 5 minutes apart, from the
// current reading cur and the reading prev taken 5 minutes +/- StepTolerance
// before it. Both values must be within [BGMin, BGMax].
func AR2(prev, cur Point, steps int) (Forecast, error) {
	if steps < 0 || steps > MaxSteps {
		return Forecast{}, fmt.Errorf("%w: %d not in 0..%d", ErrSteps, steps, MaxSteps)
	}
	if err := checkRange(prev); err != nil {
		return Forecast{}, fmt.Errorf("previous reading: %w", err)
	}
	if err := checkRange(cur); err != nil {
		return Forecast{}, fmt.Errorf("current reading: %w", err)
	}
	if gap := cur.At.Sub(prev.At); gap < Step-StepTolerance || gap > Step+StepTolerance {
		return Forecast{}, fmt.Errorf("%w: %v between readings, want %v +/- %v", ErrSpacing, gap, Step, StepTolerance)
	}

	f := Forecast{From: cur, Points: make([]Point, steps)}
	before, now := math.Log(prev.MgDL/BGRef), math.Log(cur.MgDL/BGRef)
	var lossSum float64
	for i := range max(steps, lossSteps) {
		before, now = now, arCoeff[0]*before+arCoeff[1]*now
		mgdl := predicted(now)
		if i < steps {
			f.Points[i] = Point{At: cur.At.Add(time.Duration(i+1) * Step), MgDL: mgdl}
		}
		if i < lossSteps {
			d := math.Log(mgdl/120) / math.Ln10
			lossSum += d * d
		}
	}
	// Six terms over five, as Nightscout computes it (see package doc).
	f.AvgLoss = lossSum / (lossSteps - 1)
	f.Level = LevelFor(f.AvgLoss)
	return f, nil
}

func checkRange(p Point) error {
	if !(p.MgDL >= BGMin && p.MgDL <= BGMax) { // also rejects NaN
		return fmt.Errorf("%w: %v mg/dL not in [%v, %v]", ErrOutOfRange, p.MgDL, BGMin, BGMax)
	}
	return nil
}

// predicted converts a log-space state back to mg/dL the way Nightscout
// displays it: rounded to a whole number, clamped to [BGMin, BGMax]. The
// value is positive, so math.Round (halves away from zero) matches
// JavaScript's Math.round (halves up).
func predicted(x float64) float64 {
	v := math.Round(BGRef * math.Exp(x))
	return min(max(v, BGMin), BGMax)
}

// WillBeBelow returns the time of the first predicted point strictly below
// threshold no later than within after the forecast's current reading.
// Predictions never go below BGMin, so a threshold at or below BGMin is
// never crossed.
func WillBeBelow(f Forecast, threshold float64, within time.Duration) (at time.Time, ok bool) {
	for _, p := range f.Points {
		if p.At.Sub(f.From.At) > within {
			break
		}
		if p.MgDL < threshold {
			return p.At, true
		}
	}
	return time.Time{}, false
}

// RatePerMinute returns the change from prev to cur in mg/dL per minute.
// ok is false when cur is not after prev or a value is not finite.
func RatePerMinute(prev, cur Point) (rate float64, ok bool) {
	elapsed := cur.At.Sub(prev.At)
	if elapsed <= 0 {
		return 0, false
	}
	rate = (cur.MgDL - prev.MgDL) / elapsed.Minutes()
	if math.IsNaN(rate) || math.IsInf(rate, 0) {
		return 0, false
	}
	return rate, true
}
