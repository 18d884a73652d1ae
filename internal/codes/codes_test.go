package codes

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestLookup(t *testing.T) {
	tests := []struct {
		name string
		want string // LOINC; "" means not found
	}{
		{"8867-4", HeartRate},
		{"hr", HeartRate},
		{"HR", HeartRate},
		{" heart_rate ", HeartRate},
		{"MDC_ECG_HEART_RATE", HeartRate},
		{"mdc_ecg_heart_rate", HeartRate},
		{"147842", HeartRate},
		{"8889-8", PulseRate},
		{"pulse", PulseRate},
		{"149530", PulseRate},
		{"spo2", OxygenSaturation},
		{"SpO2", OxygenSaturation},
		{"2708-6", OxygenSaturation},
		{"MDC_PULS_OXIM_SAT_O2", OxygenSaturation},
		{"150456", OxygenSaturation},
		{"rr", RespiratoryRate},
		{"151562", RespiratoryRate},
		{"temp", BodyTemperature},
		{"150364", BodyTemperature},
		{"bp", BloodPressurePanel},
		{"sys", SystolicBP},
		{"150021", SystolicBP},
		{"dia", DiastolicBP},
		{"150022", DiastolicBP},
		{"map", MeanBP},
		{"MDC_PRESS_BLD_NONINV_MEAN", MeanBP},
		{"weight", BodyWeight},
		{"188736", BodyWeight},
		{"height", BodyHeight},
		{"188740", BodyHeight},
		{"bmi", BMI},
		{"188752", BMI},
		{"glucose", CapillaryGlucose},
		{"160368", CapillaryGlucose},
		{"cgm", InterstitialGlucose},
		{"MDC_CONC_GLU_ISF", InterstitialGlucose},
		{"steps", Steps},
		{"55423-8", Steps},
		{"hartrate", ""},
		{"", ""},
		{"0", ""},
		{"8867", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := Lookup(tt.name)
			if tt.want == "" {
				if ok {
					t.Fatalf("Lookup(%q) = %s, want not found", tt.name, c.LOINC)
				}
				return
			}
			if !ok || c.LOINC != tt.want {
				t.Fatalf("Lookup(%q) = %q, %v; want %q", tt.name, c.LOINC, ok, tt.want)
			}
		})
	}
}

func TestEveryAliasResolves(t *testing.T) {
	for _, c := range All() {
		for _, a := range c.Aliases {
			got, ok := Lookup(a)
			if !ok || got.LOINC != c.LOINC {
				t.Errorf("alias %q of %s resolves to %q, %v", a, c.LOINC, got.LOINC, ok)
			}
		}
		if c.MDC != "" {
			// MDC numeric codes are partition<<16 | term; vital signs here are
			// in SCADA (2) or the PHD partition 2 as well.
			if c.MDCCode>>16 != 2 {
				t.Errorf("%s: MDC code %d is not in partition 2", c.LOINC, c.MDCCode)
			}
		}
		if !c.IsPanel() && !(c.Min < c.Max) {
			t.Errorf("%s: bad range %v..%v", c.LOINC, c.Min, c.Max)
		}
		for _, comp := range c.Components {
			if _, ok := ByLOINC(comp); !ok {
				t.Errorf("%s: component %s is not in the table", c.LOINC, comp)
			}
		}
	}
}

func TestByLOINC(t *testing.T) {
	if _, ok := ByLOINC("2708-6"); ok {
		t.Error("ByLOINC accepted an alias; it must match primary codes only")
	}
	if _, ok := ByLOINC("hr"); ok {
		t.Error("ByLOINC accepted an alias")
	}
	c, ok := ByLOINC(BloodPressurePanel)
	if !ok || !c.IsPanel() || strings.Join(c.Components, ",") != "8480-6,8462-4,8478-0" {
		t.Errorf("BP panel = %+v, %v", c, ok)
	}
}

func TestAllIsACopy(t *testing.T) {
	a := All()
	a[0].LOINC = "changed"
	a[0].Aliases = nil
	if c, _ := ByLOINC(HeartRate); c.LOINC != HeartRate {
		t.Fatal("All exposed the table")
	}
}

func TestConvert(t *testing.T) {
	must := func(loinc string) Code {
		c, ok := ByLOINC(loinc)
		if !ok {
			t.Fatalf("no code %s", loinc)
		}
		return c
	}
	tests := []struct {
		code  string
		value float64
		unit  string
		want  float64
	}{
		{HeartRate, 72, "", 72},
		{HeartRate, 72, "/min", 72},
		{HeartRate, 72, "1/min", 72},
		{HeartRate, 72, "beat/min", 72},
		{HeartRate, 72, "beats/min", 72},
		{HeartRate, 72, "bpm", 72},
		{HeartRate, 72, "{beats}/min", 72},
		{HeartRate, 1.2, "1/s", 72},
		{HeartRate, 1.2, "Hz", 72},
		{RespiratoryRate, 16, "breaths/min", 16},
		{OxygenSaturation, 97, "%", 97},
		{OxygenSaturation, 0.97, "/", 97},
		{OxygenSaturation, 0.97, "1", 97},
		{BodyTemperature, 37, "Cel", 37},
		{BodyTemperature, 98.6, "degF", 37},
		{BodyTemperature, 98.6, "[degF]", 37},
		{BodyTemperature, 310.15, "K", 37},
		{SystolicBP, 120, "mm[Hg]", 120},
		{SystolicBP, 120, "mmHg", 120},
		{SystolicBP, 16, "kPa", 120.00992},
		{DiastolicBP, 10666, "Pa", 80.001613},
		{BodyWeight, 70, "kg", 70},
		{BodyWeight, 70000, "g", 70},
		{BodyWeight, 154, "[lb_av]", 69.853225},
		{BodyWeight, 154, "lb", 69.853225},
		{BodyHeight, 180, "cm", 180},
		{BodyHeight, 1.8, "m", 180},
		{BodyHeight, 70, "[in_i]", 177.8},
		{BodyHeight, 70, "in", 177.8},
		{BMI, 22.5, "kg/m2", 22.5},
		{CapillaryGlucose, 100, "mg/dL", 100},
		{CapillaryGlucose, 100, "mg/dl", 100},
		{CapillaryGlucose, 5.5, "mmol/L", 99.1001},
		{InterstitialGlucose, 5.5, "mmol/l", 99.1001},
		{Steps, 1234, "{steps}", 1234},
		{Steps, 1234, "steps", 1234},
		{Steps, 1234, "count", 1234},
	}
	for _, tt := range tests {
		t.Run(tt.code+"/"+tt.unit, func(t *testing.T) {
			got, err := Convert(tt.value, tt.unit, must(tt.code))
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-tt.want) > 1e-6 {
				t.Fatalf("Convert(%v %q) = %v, want %v", tt.value, tt.unit, got, tt.want)
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	hr, _ := ByLOINC(HeartRate)
	glu, _ := ByLOINC(CapillaryGlucose)
	tests := []struct {
		value float64
		unit  string
		code  Code
		want  string
	}{
		{72, "mmHg", hr, `unit "mmHg" is not accepted for 8867-4 (Heart rate); use "/min"`},
		{5, "MMOL/L", glu, `unit "MMOL/L" is not accepted for 41653-7`},
		{math.NaN(), "", hr, "not a finite number"},
		{math.Inf(1), "/min", hr, "not a finite number"},
		{1e308, "1/s", hr, "overflows"},
		{1, strings.Repeat("x", 100), hr, `"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…"`},
		{1, "", Code{LOINC: "x-1", Unit: "furlong"}, "no unit conversions"},
	}
	for _, tt := range tests {
		_, err := Convert(tt.value, tt.unit, tt.code)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Convert(%v, %q, %s) error = %v, want it to contain %q", tt.value, tt.unit, tt.code.LOINC, err, tt.want)
		}
	}
}

func TestMarkdownTableGolden(t *testing.T) {
	got := MarkdownTable()
	path := filepath.Join("testdata", "codes.md.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("MarkdownTable changed; run go test -update and review the diff\n%s", got)
	}
	for _, c := range All() {
		if !strings.Contains(got, "| "+c.LOINC+" |") {
			t.Errorf("table misses %s", c.LOINC)
		}
	}
}
