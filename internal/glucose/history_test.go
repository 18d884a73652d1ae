package glucose

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"
)

// series builds points at the given offsets (from t0) with values 100, 101, ...
func series(offsets ...time.Duration) []Point {
	pts := make([]Point, len(offsets))
	for i, d := range offsets {
		pts[i] = Point{At: t0.Add(d), MgDL: 100 + float64(i)}
	}
	return pts
}

func minutes(ms ...float64) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m * float64(time.Minute))
	}
	return out
}

func TestHistoryFiveMinutesBefore(t *testing.T) {
	tests := []struct {
		name    string
		offsets []time.Duration
		want    time.Duration // offset of the expected point
		wantOK  bool
	}{
		{"regular 5-minute CGM", minutes(0, 5, 10, 15), 10 * time.Minute, true},
		{"1-minute sampling", minutes(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 5 * time.Minute, true},
		{"jitter picks nearest", minutes(0, 4.5, 5.7, 10), 4*time.Minute + 30*time.Second, true},
		{"jitter nearest is older", minutes(0, 4.7, 5.6, 10), 4*time.Minute + 42*time.Second, true},
		{"tie picks newer", minutes(0, 4, 6, 10), 6 * time.Minute, true},
		{"tolerance edge 6 min", minutes(0, 6), 0, true},
		{"tolerance edge 4 min", minutes(0, 4), 0, true},
		{"just past 6 min", append(minutes(0), 6*time.Minute+1), 0, false},
		{"just under 4 min", append(minutes(0), 4*time.Minute-1), 0, false},
		{"gap before latest", minutes(0, 5, 10, 25), 0, false},
		{"only 1-minute neighbours", minutes(0, 1, 2), 0, false},
		{"single point", minutes(0), 0, false},
		{"empty", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h History
			for _, p := range series(tt.offsets...) {
				if !h.Add(p) {
					t.Fatalf("Add(%v) refused", p)
				}
			}
			got, ok := h.FiveMinutesBefore()
			if ok != tt.wantOK {
				t.Fatalf("FiveMinutesBefore ok = %v; want %v (got %v)", ok, tt.wantOK, got)
			}
			if ok && !got.At.Equal(t0.Add(tt.want)) {
				t.Errorf("FiveMinutesBefore = %v; want offset %v", got.At.Sub(t0), tt.want)
			}
		})
	}
}

func TestHistoryAdd(t *testing.T) {
	var h History
	steps := []struct {
		p    Point
		want bool
	}{
		{Point{t0, 100}, true},
		{Point{t0, 100}, false},                  // duplicate
		{Point{t0, 105}, false},                  // same time, other value
		{Point{t0.Add(-time.Minute), 90}, false}, // older
		{Point{t0.Add(time.Minute), math.NaN()}, false},
		{Point{t0.Add(time.Minute), math.Inf(1)}, false},
		{Point{time.Time{}, 100}, false},            // no time
		{Point{t0.Add(time.Nanosecond), 101}, true}, // newer by the least amount
	}
	for i, s := range steps {
		if got := h.Add(s.p); got != s.want {
			t.Errorf("step %d: Add(%v) = %v; want %v", i, s.p, got, s.want)
		}
	}
	if h.Len() != 2 {
		t.Fatalf("Len = %d; want 2", h.Len())
	}
	if l, _ := h.Latest(); l.MgDL != 101 {
		t.Errorf("Latest = %v; want 101", l)
	}
}

func TestHistoryWrapsAround(t *testing.T) {
	var h History
	const n = 3*HistorySize + 5
	for i := range n {
		h.Add(Point{At: t0.Add(time.Duration(i) * time.Minute), MgDL: float64(i)})
	}
	if h.Len() != HistorySize {
		t.Fatalf("Len = %d; want %d", h.Len(), HistorySize)
	}
	for i := range HistorySize {
		if got := h.At(i).MgDL; got != float64(n-1-i) {
			t.Errorf("At(%d) = %v; want %v", i, got, n-1-i)
		}
	}
	p, ok := h.FiveMinutesBefore()
	if !ok || p.MgDL != n-1-5 {
		t.Errorf("FiveMinutesBefore = %v, %v; want %v", p, ok, n-1-5)
	}
}

func TestHistoryAtPanics(t *testing.T) {
	var h History
	h.Add(Point{t0, 100})
	for _, i := range []int{-1, 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("At(%d) did not panic", i)
				}
			}()
			h.At(i)
		}()
	}
}

func TestHistoryForecast(t *testing.T) {
	var h History
	if _, err := h.Forecast(6); !errors.Is(err, ErrNoData) {
		t.Errorf("empty Forecast error %v; want ErrNoData", err)
	}
	// 1-minute CGM falling 2 mg/dL per minute: 120 at t0 ... 110 at t0+5m.
	for i := range 6 {
		h.Add(Point{At: t0.Add(time.Duration(i) * time.Minute), MgDL: 120 - 2*float64(i)})
	}
	f, err := h.Forecast(3)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := AR2(Point{t0, 120}, Point{t0.Add(Step), 110}, 3)
	if f.Points[0].MgDL != 103 || f.AvgLoss != want.AvgLoss {
		t.Errorf("Forecast = %+v; want %+v", f, want)
	}
	h.Add(Point{At: t0.Add(30 * time.Minute), MgDL: 100})
	if _, err := h.Forecast(3); !errors.Is(err, ErrSpacing) {
		t.Errorf("Forecast after a gap: error %v; want ErrSpacing", err)
	}
}

func TestHistoryDoesNotAllocate(t *testing.T) {
	var h History
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		h.Add(Point{At: t0.Add(time.Duration(i) * time.Minute), MgDL: 100})
		i++
		h.FiveMinutesBefore()
	})
	if allocs != 0 {
		t.Errorf("Add + FiveMinutesBefore allocate %v times", allocs)
	}
}

// FuzzHistory feeds arbitrary sequences of (time step, value) to a History
// and checks it against a plain slice of every accepted point.
func FuzzHistory(f *testing.F) {
	f.Add([]byte{0, 60, 100, 0, 60, 101, 1, 44, 102})
	f.Add([]byte{0, 0, 1, 255, 255, 2, 0, 240, 3, 1, 44, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		var h History
		var accepted []Point
		at := t0
		for len(data) >= 3 {
			// Signed step in seconds, so duplicates and older points occur.
			step := time.Duration(int16(binary.BigEndian.Uint16(data))) * time.Second
			val := float64(data[2])
			data = data[3:]
			at = at.Add(step)
			p := Point{At: at, MgDL: val}
			wantAccept := len(accepted) == 0 || p.At.After(accepted[len(accepted)-1].At)
			if got := h.Add(p); got != wantAccept {
				t.Fatalf("Add(%v) = %v; want %v", p.At.Sub(t0), got, wantAccept)
			}
			if wantAccept {
				accepted = append(accepted, p)
			}
			kept := accepted[max(0, len(accepted)-HistorySize):]
			if h.Len() != len(kept) {
				t.Fatalf("Len = %d; want %d", h.Len(), len(kept))
			}
			for i := range h.Len() {
				if h.At(i) != kept[len(kept)-1-i] {
					t.Fatalf("At(%d) = %v; want %v", i, h.At(i), kept[len(kept)-1-i])
				}
			}
			got, ok := h.FiveMinutesBefore()
			want, wantOK := nearestFiveMinutesBefore(kept)
			if ok != wantOK || got != want {
				t.Fatalf("FiveMinutesBefore = %v, %v; want %v, %v", got, ok, want, wantOK)
			}
			if ok {
				gap := kept[len(kept)-1].At.Sub(got.At)
				if gap < Step-StepTolerance || gap > Step+StepTolerance {
					t.Fatalf("FiveMinutesBefore is %v before the latest", gap)
				}
			}
		}
	})
}

// nearestFiveMinutesBefore is a brute-force FiveMinutesBefore over points
// in time order.
func nearestFiveMinutesBefore(pts []Point) (Point, bool) {
	if len(pts) < 2 {
		return Point{}, false
	}
	target := pts[len(pts)-1].At.Add(-Step)
	var best Point
	found := false
	var bestDist time.Duration
	for _, p := range pts[:len(pts)-1] {
		d := p.At.Sub(target)
		if d < 0 {
			d = -d
		}
		if d > StepTolerance {
			continue
		}
		if !found || d <= bestDist { // <=: later points win ties
			best, bestDist, found = p, d, true
		}
	}
	return best, found
}
