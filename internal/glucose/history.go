package glucose

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// HistorySize is how many points a History keeps: 16 covers the last
// 15 minutes even for a CGM sampling every minute.
const HistorySize = 16

// ErrNoData is returned when a History holds no points.
var ErrNoData = errors.New("glucose: no readings")

// History keeps the last HistorySize points of one glucose series, in time
// order. The zero value is empty and ready to use; it never allocates.
type History struct {
	pts  [HistorySize]Point // ring buffer
	next int                // index the next point is written to
	n    int                // number of points held
}

// Add appends p if it is newer than the latest point. Points at or before
// the latest time (duplicates, late arrivals), with a zero time or with a
// non-finite value are ignored; Add reports whether p was kept.
func (h *History) Add(p Point) bool {
	if p.At.IsZero() || math.IsNaN(p.MgDL) || math.IsInf(p.MgDL, 0) {
		return false
	}
	if latest, ok := h.Latest(); ok && !p.At.After(latest.At) {
		return false
	}
	h.pts[h.next] = p
	h.next = (h.next + 1) % HistorySize
	h.n = min(h.n+1, HistorySize)
	return true
}

// Len returns the number of points held.
func (h *History) Len() int { return h.n }

// At returns the i-th newest point: At(0) is the latest. It panics if i is
// not in [0, Len()).
func (h *History) At(i int) Point {
	if i < 0 || i >= h.n {
		panic("glucose: History.At index out of range")
	}
	return h.pts[(h.next-1-i+2*HistorySize)%HistorySize]
}

// Latest returns the newest point.
func (h *History) Latest() (Point, bool) {
	if h.n == 0 {
		return Point{}, false
	}
	return h.At(0), true
}

// FiveMinutesBefore returns the earlier point nearest to Step before the
// latest one, within StepTolerance: the "reading 5 minutes ago" that AR2
// needs. When two points are equally near, the newer one wins.
func (h *History) FiveMinutesBefore() (Point, bool) {
	if h.n < 2 {
		return Point{}, false
	}
	target := h.At(0).At.Add(-Step)
	var best Point
	bestDist := time.Duration(-1)
	for i := 1; i < h.n; i++ {
		p := h.At(i)
		d := p.At.Sub(target)
		if d < -StepTolerance {
			break // older points are only further away
		}
		if d > StepTolerance {
			continue
		}
		if d < 0 {
			d = -d
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = p, d
		}
	}
	return best, bestDist >= 0
}

// Forecast runs AR2 on the latest point and the point FiveMinutesBefore.
func (h *History) Forecast(steps int) (Forecast, error) {
	cur, ok := h.Latest()
	if !ok {
		return Forecast{}, ErrNoData
	}
	prev, ok := h.FiveMinutesBefore()
	if !ok {
		return Forecast{}, fmt.Errorf("%w: no reading %v +/- %v before %v", ErrSpacing, Step, StepTolerance, cur.At)
	}
	return AR2(prev, cur, steps)
}
