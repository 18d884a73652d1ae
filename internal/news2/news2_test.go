package news2

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestScoreParamBoundaries(t *testing.T) {
	const (
		air = false
		o2  = true
	)
	tests := []struct {
		p     Param
		v     float64
		scale Scale
		o2    bool
		want  int
	}{
		// Respiration rate: <=8 3; 9-11 1; 12-20 0; 21-24 2; >=25 3.
		{RespirationRate, 0, Scale1, air, 3},
		{RespirationRate, 8, Scale1, air, 3},
		{RespirationRate, 9, Scale1, air, 1},
		{RespirationRate, 11, Scale1, air, 1},
		{RespirationRate, 12, Scale1, air, 0},
		{RespirationRate, 20, Scale1, air, 0},
		{RespirationRate, 21, Scale1, air, 2},
		{RespirationRate, 24, Scale1, air, 2},
		{RespirationRate, 25, Scale1, air, 3},
		{RespirationRate, 60, Scale1, air, 3},

		// SpO2 scale 1: <=91 3; 92-93 2; 94-95 1; >=96 0; oxygen irrelevant.
		{SpO2, 50, Scale1, air, 3},
		{SpO2, 91, Scale1, air, 3},
		{SpO2, 92, Scale1, air, 2},
		{SpO2, 93, Scale1, air, 2},
		{SpO2, 94, Scale1, air, 1},
		{SpO2, 95, Scale1, air, 1},
		{SpO2, 96, Scale1, air, 0},
		{SpO2, 100, Scale1, air, 0},
		{SpO2, 91, Scale1, o2, 3},
		{SpO2, 96, Scale1, o2, 0},
		{SpO2, 100, Scale1, o2, 0},

		// SpO2 scale 2 on air: <=83 3; 84-85 2; 86-87 1; >=88 0.
		{SpO2, 83, Scale2, air, 3},
		{SpO2, 84, Scale2, air, 2},
		{SpO2, 85, Scale2, air, 2},
		{SpO2, 86, Scale2, air, 1},
		{SpO2, 87, Scale2, air, 1},
		{SpO2, 88, Scale2, air, 0},
		{SpO2, 92, Scale2, air, 0},
		{SpO2, 93, Scale2, air, 0},
		{SpO2, 97, Scale2, air, 0},
		{SpO2, 100, Scale2, air, 0},

		// SpO2 scale 2 on oxygen: as on air up to 92; 93-94 1; 95-96 2; >=97 3.
		{SpO2, 83, Scale2, o2, 3},
		{SpO2, 84, Scale2, o2, 2},
		{SpO2, 85, Scale2, o2, 2},
		{SpO2, 86, Scale2, o2, 1},
		{SpO2, 87, Scale2, o2, 1},
		{SpO2, 88, Scale2, o2, 0},
		{SpO2, 92, Scale2, o2, 0},
		{SpO2, 93, Scale2, o2, 1},
		{SpO2, 94, Scale2, o2, 1},
		{SpO2, 95, Scale2, o2, 2},
		{SpO2, 96, Scale2, o2, 2},
		{SpO2, 97, Scale2, o2, 3},
		{SpO2, 100, Scale2, o2, 3},

		// Air or oxygen.
		{SupplementalOxygen, 0, Scale1, air, 0},
		{SupplementalOxygen, 1, Scale1, air, 2},

		// Systolic BP: <=90 3; 91-100 2; 101-110 1; 111-219 0; >=220 3.
		{SystolicBP, 60, Scale1, air, 3},
		{SystolicBP, 90, Scale1, air, 3},
		{SystolicBP, 91, Scale1, air, 2},
		{SystolicBP, 100, Scale1, air, 2},
		{SystolicBP, 101, Scale1, air, 1},
		{SystolicBP, 110, Scale1, air, 1},
		{SystolicBP, 111, Scale1, air, 0},
		{SystolicBP, 219, Scale1, air, 0},
		{SystolicBP, 220, Scale1, air, 3},
		{SystolicBP, 260, Scale1, air, 3},

		// Pulse: <=40 3; 41-50 1; 51-90 0; 91-110 1; 111-130 2; >=131 3.
		{Pulse, 30, Scale1, air, 3},
		{Pulse, 40, Scale1, air, 3},
		{Pulse, 41, Scale1, air, 1},
		{Pulse, 50, Scale1, air, 1},
		{Pulse, 51, Scale1, air, 0},
		{Pulse, 90, Scale1, air, 0},
		{Pulse, 91, Scale1, air, 1},
		{Pulse, 110, Scale1, air, 1},
		{Pulse, 111, Scale1, air, 2},
		{Pulse, 130, Scale1, air, 2},
		{Pulse, 131, Scale1, air, 3},
		{Pulse, 200, Scale1, air, 3},

		// Consciousness: A 0; C, V, P, U 3.
		{Consciousness, float64(Alert), Scale1, air, 0},
		{Consciousness, float64(NewConfusion), Scale1, air, 3},
		{Consciousness, float64(Voice), Scale1, air, 3},
		{Consciousness, float64(Pain), Scale1, air, 3},
		{Consciousness, float64(Unresponsive), Scale1, air, 3},

		// Temperature: <=35.0 3; 35.1-36.0 1; 36.1-38.0 0; 38.1-39.0 1; >=39.1 2.
		{Temperature, 30.0, Scale1, air, 3},
		{Temperature, 35.0, Scale1, air, 3},
		{Temperature, 35.1, Scale1, air, 1},
		{Temperature, 36.0, Scale1, air, 1},
		{Temperature, 36.1, Scale1, air, 0},
		{Temperature, 38.0, Scale1, air, 0},
		{Temperature, 38.1, Scale1, air, 1},
		{Temperature, 39.0, Scale1, air, 1},
		{Temperature, 39.1, Scale1, air, 2},
		{Temperature, 42.0, Scale1, air, 2},
	}
	for _, tt := range tests {
		got, ok := ScoreParam(tt.p, tt.v, tt.scale, tt.o2)
		if !ok || got != tt.want {
			t.Errorf("ScoreParam(%v, %v, %v, oxygen=%v) = %d, %v; want %d, true", tt.p, tt.v, tt.scale, tt.o2, got, ok, tt.want)
		}
	}
}

func TestScoreParamRounding(t *testing.T) {
	tests := []struct {
		p     Param
		v     float64
		scale Scale
		o2    bool
		want  int
	}{
		{RespirationRate, 8.49, Scale1, false, 3},
		{RespirationRate, 8.5, Scale1, false, 1},
		{RespirationRate, 11.49, Scale1, false, 1},
		{RespirationRate, 11.5, Scale1, false, 0},
		{RespirationRate, 20.49, Scale1, false, 0},
		{RespirationRate, 20.5, Scale1, false, 2},
		{RespirationRate, 24.49, Scale1, false, 2},
		{RespirationRate, 24.5, Scale1, false, 3},
		{SpO2, 91.49, Scale1, false, 3},
		{SpO2, 91.5, Scale1, false, 2},
		{SpO2, 93.4, Scale1, false, 2},
		{SpO2, 93.6, Scale1, false, 1},
		{SpO2, 95.49, Scale1, false, 1},
		{SpO2, 95.5, Scale1, false, 0},
		{SpO2, 92.49, Scale2, true, 0},
		{SpO2, 92.5, Scale2, true, 1},
		{SpO2, 96.5, Scale2, true, 3},
		{SpO2, 87.5, Scale2, false, 0},
		{SystolicBP, 90.49, Scale1, false, 3},
		{SystolicBP, 90.5, Scale1, false, 2},
		{SystolicBP, 219.49, Scale1, false, 0},
		{SystolicBP, 219.5, Scale1, false, 3},
		{Pulse, 40.49, Scale1, false, 3},
		{Pulse, 40.5, Scale1, false, 1},
		{Pulse, 90.49, Scale1, false, 0},
		{Pulse, 90.5, Scale1, false, 1},
		{Pulse, 130.5, Scale1, false, 3},
		{Temperature, 35.04, Scale1, false, 3},
		{Temperature, 35.05, Scale1, false, 1},
		{Temperature, 36.04, Scale1, false, 1},
		{Temperature, 36.05, Scale1, false, 0},
		{Temperature, 38.04, Scale1, false, 0},
		{Temperature, 38.05, Scale1, false, 1},
		{Temperature, 39.04, Scale1, false, 1},
		{Temperature, 39.05, Scale1, false, 2},
	}
	for _, tt := range tests {
		got, ok := ScoreParam(tt.p, tt.v, tt.scale, tt.o2)
		if !ok || got != tt.want {
			t.Errorf("ScoreParam(%v, %v, %v, oxygen=%v) = %d, %v; want %d, true", tt.p, tt.v, tt.scale, tt.o2, got, ok, tt.want)
		}
	}
}

// TestTemperatureHalfTenths checks every x.x5 degC from 30.05 to 44.95
// (values that are not exact in binary) rounds up to the next tenth.
func TestTemperatureHalfTenths(t *testing.T) {
	bandTenths := func(tenths int) int {
		switch {
		case tenths <= 350:
			return 3
		case tenths <= 360:
			return 1
		case tenths <= 380:
			return 0
		case tenths <= 390:
			return 1
		}
		return 2
	}
	for hundredths := 3005; hundredths < 4500; hundredths += 10 {
		v := float64(hundredths) / 100
		want := bandTenths((hundredths + 5) / 10)
		if got, _ := ScoreParam(Temperature, v, Scale1, false); got != want {
			t.Errorf("ScoreParam(Temperature, %v) = %d; want %d (as %.1f)", v, got, want, float64(hundredths+5)/100)
		}
	}
}

func TestScoreParamUnscorable(t *testing.T) {
	tests := []struct {
		name  string
		p     Param
		v     float64
		scale Scale
	}{
		{"NaN", Pulse, math.NaN(), Scale1},
		{"+Inf", RespirationRate, math.Inf(1), Scale1},
		{"-Inf", Temperature, math.Inf(-1), Scale1},
		{"level zero", Consciousness, 0, Scale1},
		{"level above U", Consciousness, 6, Scale1},
		{"fractional level", Consciousness, 1.5, Scale1},
		{"unknown param", Param(7), 80, Scale1},
		{"negative param", Param(-1), 80, Scale1},
		{"unknown scale", SpO2, 95, Scale(3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := ScoreParam(tt.p, tt.v, tt.scale, false); ok {
				t.Errorf("ScoreParam(%v, %v) = %d, true; want not ok", tt.p, tt.v, got)
			}
		})
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// normal is a complete, fresh, all-zero observation set taken at t0.
func normal() Input {
	return Input{
		RespRate:      Value{V: 16, At: t0, OK: true},
		SpO2:          Value{V: 97, At: t0, OK: true},
		OnOxygen:      BoolValue{V: false, At: t0, OK: true},
		SystolicBP:    Value{V: 125, At: t0, OK: true},
		Pulse:         Value{V: 72, At: t0, OK: true},
		Consciousness: LevelValue{V: Alert, At: t0, OK: true},
		TempC:         Value{V: 36.8, At: t0, OK: true},
	}
}

func setsOf(ps ...Param) ParamSet {
	var s ParamSet
	for _, p := range ps {
		s.add(p)
	}
	return s
}

func TestScore(t *testing.T) {
	all := setsOf(RespirationRate, SpO2, SupplementalOxygen, SystolicBP, Pulse, Consciousness, Temperature)
	tests := []struct {
		name     string
		edit     func(*Input)
		cfg      Config
		total    int
		band     Band
		single3  bool
		missing  ParamSet
		complete bool
	}{
		{"all normal", func(*Input) {}, Config{}, 0, BandNone, false, 0, true},
		{"one point", func(in *Input) { in.Pulse.V = 95 }, Config{}, 1, BandLow, false, 0, true},
		{"four points", func(in *Input) { in.Pulse.V = 95; in.OnOxygen.V = true; in.TempC.V = 38.5 }, Config{}, 4, BandLow, false, 0, true},
		{"single 3 alone", func(in *Input) { in.RespRate.V = 26 }, Config{}, 3, BandLowMedium, true, 0, true},
		{"single 3 and 1", func(in *Input) { in.Consciousness.V = NewConfusion; in.Pulse.V = 100 }, Config{}, 4, BandLowMedium, true, 0, true},
		{"single 3 reaching 5 is medium", func(in *Input) { in.SystolicBP.V = 85; in.OnOxygen.V = true }, Config{}, 5, BandMedium, true, 0, true},
		{"six points", func(in *Input) { in.OnOxygen.V = true; in.SpO2.V = 93; in.TempC.V = 39.5 }, Config{}, 6, BandMedium, false, 0, true},
		{"seven points", func(in *Input) { in.RespRate.V = 22; in.SpO2.V = 93; in.OnOxygen.V = true; in.Pulse.V = 95 }, Config{}, 7, BandHigh, false, 0, true},
		{"all maximal", func(in *Input) {
			*in = Input{
				RespRate: Value{V: 30, At: t0, OK: true}, SpO2: Value{V: 85, At: t0, OK: true},
				OnOxygen: BoolValue{V: true, At: t0, OK: true}, SystolicBP: Value{V: 80, At: t0, OK: true},
				Pulse: Value{V: 140, At: t0, OK: true}, Consciousness: LevelValue{V: Unresponsive, At: t0, OK: true},
				TempC: Value{V: 34, At: t0, OK: true},
			}
		}, Config{}, 20, BandHigh, true, 0, true},
		{"scale 2 on oxygen", func(in *Input) { in.OnOxygen.V = true }, Config{Scale: Scale2}, 2 + 3, BandMedium, true, 0, true},
		{"scale 2 on air", func(in *Input) {}, Config{Scale: Scale2}, 0, BandNone, false, 0, true},
		{"missing pulse", func(in *Input) { in.Pulse = Value{} }, Config{}, 0, BandNone, false, setsOf(Pulse), false},
		{"missing oxygen flag is not air", func(in *Input) { in.OnOxygen = BoolValue{} }, Config{}, 0, BandNone, false, setsOf(SupplementalOxygen), false},
		{"missing oxygen flag, scale 2 SpO2 scored as air", func(in *Input) { in.OnOxygen = BoolValue{} }, Config{Scale: Scale2}, 0, BandNone, false, setsOf(SupplementalOxygen), false},
		{"NaN counts as missing", func(in *Input) { in.RespRate.V = math.NaN() }, Config{}, 0, BandNone, false, setsOf(RespirationRate), false},
		{"unknown level counts as missing", func(in *Input) { in.Consciousness.V = 0 }, Config{}, 0, BandNone, false, setsOf(Consciousness), false},
		{"partial score is a lower bound", func(in *Input) { in.RespRate.V = 7; in.SpO2 = Value{}; in.TempC = Value{} }, Config{}, 3, BandLowMedium, true, setsOf(SpO2, Temperature), false},
		{"nothing observed", func(in *Input) { *in = Input{} }, Config{}, 0, BandNone, false, all, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := normal()
			tt.edit(&in)
			r := Score(in, tt.cfg, t0)
			if r.Total != tt.total || r.Band != tt.band || r.AnySingle3 != tt.single3 || r.Missing != tt.missing || r.Complete != tt.complete {
				t.Errorf("Score = total %d band %v single3 %v missing %v complete %v; want %d %v %v %v %v",
					r.Total, r.Band, r.AnySingle3, r.Missing, r.Complete, tt.total, tt.band, tt.single3, tt.missing, tt.complete)
			}
			if r.Stale != 0 {
				t.Errorf("Stale = %v; want none", r.Stale)
			}
			if got := r.Scored | r.Missing | r.Stale; got != all || r.Scored&r.Missing != 0 {
				t.Errorf("Scored %v, Missing %v, Stale %v do not partition the parameters", r.Scored, r.Missing, r.Stale)
			}
			sum := 0
			for p, pts := range r.Parts {
				sum += pts
				if pts != 0 && !r.Scored.Has(Param(p)) {
					t.Errorf("part %v = %d but not scored", Param(p), pts)
				}
			}
			if sum != r.Total {
				t.Errorf("parts sum to %d, total %d", sum, r.Total)
			}
		})
	}
}

func TestScoreFreshness(t *testing.T) {
	custom := Config{Fresh: map[Param]time.Duration{Pulse: 2 * time.Minute, SupplementalOxygen: 0}}
	cases := []struct {
		name  string
		cfg   Config
		p     Param
		age   time.Duration
		stale bool
	}{
		{"pulse at default edge", Config{}, Pulse, 15 * time.Minute, false},
		{"pulse 1ns past default edge", Config{}, Pulse, 15*time.Minute + 1, true},
		{"RR at edge", Config{}, RespirationRate, 15 * time.Minute, false},
		{"RR past edge", Config{}, RespirationRate, 15*time.Minute + 1, true},
		{"SpO2 at edge", Config{}, SpO2, 15 * time.Minute, false},
		{"SpO2 past edge", Config{}, SpO2, 15*time.Minute + 1, true},
		{"BP at edge", Config{}, SystolicBP, time.Hour, false},
		{"BP past edge", Config{}, SystolicBP, time.Hour + 1, true},
		{"temp at edge", Config{}, Temperature, time.Hour, false},
		{"temp past edge", Config{}, Temperature, time.Hour + 1, true},
		{"ACVPU at edge", Config{}, Consciousness, 4 * time.Hour, false},
		{"ACVPU past edge", Config{}, Consciousness, 4*time.Hour + 1, true},
		{"oxygen at edge", Config{}, SupplementalOxygen, 4 * time.Hour, false},
		{"oxygen past edge", Config{}, SupplementalOxygen, 4*time.Hour + 1, true},
		{"custom pulse at edge", custom, Pulse, 2 * time.Minute, false},
		{"custom pulse past edge", custom, Pulse, 2*time.Minute + 1, true},
		{"custom map falls back to default", custom, SystolicBP, time.Hour, false},
		{"zero window: same instant fresh", custom, SupplementalOxygen, 0, false},
		{"zero window: 1ns old stale", custom, SupplementalOxygen, 1, true},
		{"future observation is fresh", Config{}, Pulse, -time.Hour, false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			in := normal()
			now := t0.Add(tt.age)
			// Every other parameter is observed at now, so only tt.p ages.
			for _, at := range []*time.Time{&in.RespRate.At, &in.SpO2.At, &in.OnOxygen.At, &in.SystolicBP.At, &in.Pulse.At, &in.Consciousness.At, &in.TempC.At} {
				*at = now
			}
			// Make the aged parameter score non-zero, so staleness visibly drops points.
			in.Pulse.V, in.SystolicBP.V, in.TempC.V = 140, 80, 34
			in.RespRate.V, in.SpO2.V, in.OnOxygen.V, in.Consciousness.V = 30, 85, true, Voice
			switch tt.p {
			case RespirationRate:
				in.RespRate.At = t0
			case SpO2:
				in.SpO2.At = t0
			case SupplementalOxygen:
				in.OnOxygen.At = t0
			case SystolicBP:
				in.SystolicBP.At = t0
			case Pulse:
				in.Pulse.At = t0
			case Consciousness:
				in.Consciousness.At = t0
			case Temperature:
				in.TempC.At = t0
			}
			r := Score(in, tt.cfg, now)
			if got := r.Stale.Has(tt.p); got != tt.stale {
				t.Fatalf("Stale.Has(%v) = %v; want %v (stale set %v)", tt.p, got, tt.stale, r.Stale)
			}
			if tt.stale {
				if r.Stale != setsOf(tt.p) || r.Scored.Has(tt.p) || r.Parts[tt.p] != 0 || r.Complete || r.Missing != 0 {
					t.Errorf("stale %v: result %+v", tt.p, r)
				}
			} else if !r.Complete || r.Parts[tt.p] == 0 {
				t.Errorf("fresh %v: result %+v", tt.p, r)
			}
		})
	}
}

func TestBandFor(t *testing.T) {
	tests := []struct {
		total   int
		single3 bool
		want    Band
	}{
		{0, false, BandNone},
		{1, false, BandLow},
		{4, false, BandLow},
		{3, true, BandLowMedium},
		{4, true, BandLowMedium},
		{5, false, BandMedium},
		{5, true, BandMedium},
		{6, true, BandMedium},
		{7, false, BandHigh},
		{7, true, BandHigh},
		{20, true, BandHigh},
	}
	for _, tt := range tests {
		if got := BandFor(tt.total, tt.single3); got != tt.want {
			t.Errorf("BandFor(%d, %v) = %v; want %v", tt.total, tt.single3, got, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	params := map[Param]string{
		RespirationRate: "respiration_rate", SpO2: "spo2", SupplementalOxygen: "supplemental_oxygen",
		SystolicBP: "systolic_bp", Pulse: "pulse", Consciousness: "consciousness", Temperature: "temperature",
	}
	for p, want := range params {
		if p.String() != want {
			t.Errorf("%d.String() = %q; want %q", int(p), p.String(), want)
		}
		var back Param
		if err := back.UnmarshalText([]byte(want)); err != nil || back != p {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", want, back, err, p)
		}
	}
	bands := map[Band]string{BandNone: "none", BandLow: "low", BandLowMedium: "low-medium", BandMedium: "medium", BandHigh: "high"}
	for b, want := range bands {
		if b.String() != want {
			t.Errorf("%d.String() = %q; want %q", int(b), b.String(), want)
		}
	}
	for i, s := range []string{"A", "C", "V", "P", "U"} {
		l, err := ParseLevel(s)
		if err != nil || l != Level(i+1) || l.String() != s {
			t.Errorf("ParseLevel(%q) = %v, %v", s, l, err)
		}
	}
	if _, err := ParseLevel("X"); err == nil {
		t.Error("ParseLevel(X) succeeded")
	}
	if _, err := Param(9).MarshalText(); err == nil {
		t.Error("Param(9).MarshalText succeeded")
	}
}

func TestResultJSONGolden(t *testing.T) {
	in := normal()
	in.RespRate.V = 23
	in.OnOxygen.V = true
	in.TempC = Value{}
	in.Pulse.At = t0.Add(-time.Hour)
	got, err := json.MarshalIndent(Score(in, Config{Scale: Scale2}, t0), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "result.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("JSON mismatch (run with -update to accept)\ngot:\n%s\nwant:\n%s", got, want)
	}
}

func TestScoreDoesNotAllocate(t *testing.T) {
	in := normal()
	cfg := Config{Fresh: DefaultFreshness()}
	allocs := testing.AllocsPerRun(100, func() { _ = Score(in, cfg, t0) })
	if allocs != 0 {
		t.Errorf("Score allocates %v times per call", allocs)
	}
}

func BenchmarkScore(b *testing.B) {
	in := normal()
	in.RespRate.V = 22.4
	cfg := Config{Scale: Scale2}
	b.ReportAllocs()
	for b.Loop() {
		_ = Score(in, cfg, t0)
	}
}

func FuzzScoreParam(f *testing.F) {
	f.Add(int(Temperature), 35.05, int(Scale1), false)
	f.Add(int(SpO2), 93.0, int(Scale2), true)
	f.Add(int(Consciousness), 3.0, int(Scale1), false)
	f.Fuzz(func(t *testing.T, p int, v float64, scale int, onOxygen bool) {
		pts, ok := ScoreParam(Param(p), v, Scale(scale), onOxygen)
		if !ok {
			if pts != 0 {
				t.Fatalf("not ok but points %d", pts)
			}
			return
		}
		if pts < 0 || pts > 3 {
			t.Fatalf("ScoreParam(%d, %v) = %d out of 0..3", p, v, pts)
		}
	})
}

func FuzzParseLevel(f *testing.F) {
	for _, s := range []string{"A", "c", "U", "", "AV", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLevel(s)
		if err != nil {
			return
		}
		back, err := ParseLevel(l.String())
		if err != nil || back != l {
			t.Fatalf("ParseLevel(%q) = %v does not round-trip: %v, %v", s, l, back, err)
		}
	})
}

func FuzzParamUnmarshalText(f *testing.F) {
	for _, s := range paramNames {
		f.Add(s)
	}
	f.Add("SPO2")
	f.Fuzz(func(t *testing.T, s string) {
		var p Param
		if err := p.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("UnmarshalText(%q) = %v", s, p)
		}
	})
}
