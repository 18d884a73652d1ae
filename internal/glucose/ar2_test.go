package glucose

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// The golden file was computed independently of this package, with a
// separate implementation written from a reading of Nightscout's ar2.js and
// checked against a transcription of its arithmetic run under Node.js. Two
// values checked by hand: falling 120 -> 110 gives
// x = -0.723*ln(120/140) + 1.716*ln(110/140) = -0.30238, 140*e^x = 103.47 -> 103;
// flat 140 gives AvgLoss = 6/5 * log10(140/120)^2 = 0.005378.
type goldenCase struct {
	Name    string    `json:"name"`
	Prev    float64   `json:"prev"`
	Cur     float64   `json:"cur"`
	Points  []float64 `json:"points"`
	AvgLoss float64   `json:"avg_loss"`
}

func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ar2.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatalf("decode golden file: %v", err)
	}
	if len(cases) == 0 {
		t.Fatal("golden file has no cases")
	}
	return cases
}

func TestAR2Golden(t *testing.T) {
	for _, gc := range loadGolden(t) {
		t.Run(gc.Name, func(t *testing.T) {
			prev := Point{At: t0, MgDL: gc.Prev}
			cur := Point{At: t0.Add(5 * time.Minute), MgDL: gc.Cur}
			f, err := AR2(prev, cur, len(gc.Points))
			if err != nil {
				t.Fatal(err)
			}
			if f.From != cur {
				t.Errorf("From = %v; want %v", f.From, cur)
			}
			if len(f.Points) != len(gc.Points) {
				t.Fatalf("got %d points; want %d", len(f.Points), len(gc.Points))
			}
			for i, p := range f.Points {
				wantAt := cur.At.Add(time.Duration(i+1) * 5 * time.Minute)
				if p.MgDL != gc.Points[i] || !p.At.Equal(wantAt) {
					t.Errorf("point %d = %v at %v; want %v at %v", i, p.MgDL, p.At.Format(time.TimeOnly), gc.Points[i], wantAt.Format(time.TimeOnly))
				}
			}
			if math.Abs(f.AvgLoss-gc.AvgLoss) > 1e-12 {
				t.Errorf("AvgLoss = %.17g; want %.17g", f.AvgLoss, gc.AvgLoss)
			}
			if f.Level != LevelFor(gc.AvgLoss) {
				t.Errorf("Level = %v; want %v", f.Level, LevelFor(gc.AvgLoss))
			}
			// AvgLoss uses the first six predictions whatever the step count.
			short, err := AR2(prev, cur, 2)
			if err != nil || short.AvgLoss != f.AvgLoss || len(short.Points) != 2 || short.Points[1] != f.Points[1] {
				t.Errorf("AR2 with 2 steps = %+v, %v; inconsistent with 12 steps", short, err)
			}
		})
	}
}

func TestAR2Levels(t *testing.T) {
	tests := []struct {
		prev, cur float64
		want      Level
	}{
		{140, 140, LevelNone},   // 0.0054
		{150, 165, LevelNone},   // 0.0489
		{80, 65, LevelUrgent},   // 0.188
		{250, 250, LevelUrgent}, // 0.113
	}
	for _, tt := range tests {
		f, err := AR2(Point{t0, tt.prev}, Point{t0.Add(Step), tt.cur}, 6)
		if err != nil || f.Level != tt.want {
			t.Errorf("AR2(%v -> %v) level %v (loss %v), %v; want %v", tt.prev, tt.cur, f.Level, f.AvgLoss, err, tt.want)
		}
	}
	thresholds := []struct {
		loss float64
		want Level
	}{
		{0, LevelNone},
		{0.05, LevelNone},
		{math.Nextafter(0.05, 1), LevelWarn},
		{0.10, LevelWarn},
		{math.Nextafter(0.10, 1), LevelUrgent},
	}
	for _, tt := range thresholds {
		if got := LevelFor(tt.loss); got != tt.want {
			t.Errorf("LevelFor(%v) = %v; want %v", tt.loss, got, tt.want)
		}
	}
}

func TestAR2Rejects(t *testing.T) {
	ok := func(gap time.Duration, prev, cur float64, steps int) error {
		_, err := AR2(Point{t0, prev}, Point{t0.Add(gap), cur}, steps)
		return err
	}
	tests := []struct {
		name  string
		gap   time.Duration
		prev  float64
		cur   float64
		steps int
		want  error // nil: accepted
	}{
		{"exactly 5 min", 5 * time.Minute, 100, 100, 6, nil},
		{"4 min, tolerance edge", 4 * time.Minute, 100, 100, 6, nil},
		{"6 min, tolerance edge", 6 * time.Minute, 100, 100, 6, nil},
		{"1ns under 4 min", 4*time.Minute - 1, 100, 100, 6, ErrSpacing},
		{"1ns over 6 min", 6*time.Minute + 1, 100, 100, 6, ErrSpacing},
		{"1-minute sampling", time.Minute, 100, 100, 6, ErrSpacing},
		{"10-minute gap", 10 * time.Minute, 100, 100, 6, ErrSpacing},
		{"same time", 0, 100, 100, 6, ErrSpacing},
		{"reversed", -5 * time.Minute, 100, 100, 6, ErrSpacing},
		{"at BG_MIN", Step, 36, 36, 6, nil},
		{"at BG_MAX", Step, 400, 400, 6, nil},
		{"prev below BG_MIN", Step, 35.9, 100, 6, ErrOutOfRange},
		{"cur below BG_MIN", Step, 100, 35.9, 6, ErrOutOfRange},
		{"cur above BG_MAX", Step, 100, 400.1, 6, ErrOutOfRange},
		{"NaN", Step, math.NaN(), 100, 6, ErrOutOfRange},
		{"+Inf", Step, 100, math.Inf(1), 6, ErrOutOfRange},
		{"zero steps", Step, 100, 100, 0, nil},
		{"max steps", Step, 100, 100, MaxSteps, nil},
		{"negative steps", Step, 100, 100, -1, ErrSteps},
		{"too many steps", Step, 100, 100, MaxSteps + 1, ErrSteps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ok(tt.gap, tt.prev, tt.cur, tt.steps)
			if tt.want == nil && err != nil {
				t.Fatalf("AR2 error %v; want none", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("AR2 error %v; want %v", err, tt.want)
			}
		})
	}
}

func TestWillBeBelow(t *testing.T) {
	// 80 -> 65 forecasts 56, 51, 48, 46, 45, 45 (see golden file).
	f, err := AR2(Point{t0, 80}, Point{t0.Add(Step), 65}, 6)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(Step)
	tests := []struct {
		threshold float64
		within    time.Duration
		wantAfter time.Duration // from now; 0: not crossed
	}{
		{70, time.Hour, 5 * time.Minute},
		{56, time.Hour, 10 * time.Minute},        // 56 is not below 56
		{56.5, time.Hour, 5 * time.Minute},       // 56 is below 56.5
		{55, 10 * time.Minute, 10 * time.Minute}, // within is inclusive
		{55, 10*time.Minute - 1, 0},
		{46, time.Hour, 25 * time.Minute},
		{45, time.Hour, 0},
		{BGMin, time.Hour, 0},
		{70, 0, 0},
	}
	for _, tt := range tests {
		at, ok := WillBeBelow(f, tt.threshold, tt.within)
		if tt.wantAfter == 0 {
			if ok {
				t.Errorf("WillBeBelow(%v, %v) = %v; want no crossing", tt.threshold, tt.within, at.Sub(now))
			}
			continue
		}
		if !ok || !at.Equal(now.Add(tt.wantAfter)) {
			t.Errorf("WillBeBelow(%v, %v) = %v, %v; want %v", tt.threshold, tt.within, at.Sub(now), ok, tt.wantAfter)
		}
	}
}

func TestRatePerMinute(t *testing.T) {
	tests := []struct {
		name   string
		gap    time.Duration
		from   float64
		to     float64
		want   float64
		wantOK bool
	}{
		{"rising 10 in 5 min", 5 * time.Minute, 100, 110, 2, true},
		{"falling 15 in 5 min", 5 * time.Minute, 80, 65, -3, true},
		{"flat", 5 * time.Minute, 120, 120, 0, true},
		{"1-minute sampling", time.Minute, 100, 97, -3, true},
		{"30 seconds", 30 * time.Second, 100, 101, 2, true},
		{"long gap", 20 * time.Minute, 200, 150, -2.5, true},
		{"same time", 0, 100, 110, 0, false},
		{"reversed", -time.Minute, 100, 110, 0, false},
		{"NaN", time.Minute, math.NaN(), 110, 0, false},
		{"Inf", time.Minute, 100, math.Inf(-1), 0, false},
	}
	for _, tt := range tests {
		got, ok := RatePerMinute(Point{t0, tt.from}, Point{t0.Add(tt.gap), tt.to})
		if ok != tt.wantOK || math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%s: RatePerMinute = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

func BenchmarkAR2(b *testing.B) {
	prev, cur := Point{t0, 120}, Point{t0.Add(Step), 110}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AR2(prev, cur, 6); err != nil {
			b.Fatal(err)
		}
	}
}
