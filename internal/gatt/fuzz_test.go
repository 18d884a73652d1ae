package gatt

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/senml"
)

// Seeds live in testdata/fuzz/<target>; the vectors and table tests supply
// the valid shapes the fuzzer mutates from.

func checkNumbers(t *testing.T, v any) {
	t.Helper()
	var walk func(reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Struct:
			if n, ok := v.Interface().(Number); ok {
				if n.OK() && (math.IsNaN(n.Value) || math.IsInf(n.Value, 0)) || !n.OK() && n.Value != 0 {
					t.Fatalf("number %+v: a special value carries a number or a finite one is not", n)
				}
				return
			}
			for i := 0; i < v.NumField(); i++ {
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(v))
}

func FuzzSFloat(f *testing.F) {
	for _, raw := range []uint16{0x0002, 0xF014, 0xE0C8, 0x0B2E, 0x07FF, 0x07FE, 0x0802, 0x0800, 0x0801, 0x8800, 0x77FF} {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw uint16) {
		n := SFloat(raw)
		checkNumbers(t, n)
		_, special := sfloatSpecial[raw]
		if special == n.OK() {
			t.Fatalf("%#04x: special=%v but %+v", raw, special, n)
		}
		if n.OK() && math.Abs(n.Value) > 2048e7 {
			t.Fatalf("%#04x: %v is beyond the SFLOAT range", raw, n.Value)
		}
	})
}

func FuzzFloat(f *testing.F) {
	for _, raw := range []uint32{0x00000002, 0xFF000014, 0xFE0000C8, 0x00FFFB2E, 0x007FFFFF, 0x007FFFFE, 0x00800002, 0x00800000, 0x00800001, 0x80800000, 0x7F7FFFFF} {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw uint32) {
		n := Float(raw)
		checkNumbers(t, n)
		_, special := floatSpecial[raw]
		if special == n.OK() {
			t.Fatalf("%#08x: special=%v but %+v", raw, special, n)
		}
	})
}

// fuzzDecoder runs one characteristic decoder: it must not panic, must be
// deterministic, and must never turn a special value into a number.
func fuzzDecoder[T any](f *testing.F, decode func([]byte) (T, error)) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		checkNumbers(t, m)
		again, _ := decode(b)
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("decode is not deterministic: %+v then %+v", m, again)
		}
	})
}

func FuzzHeartRate(f *testing.F)       { fuzzDecoder(f, DecodeHeartRate) }
func FuzzBloodPressure(f *testing.F)   { fuzzDecoder(f, DecodeBloodPressure) }
func FuzzTemperature(f *testing.F)     { fuzzDecoder(f, DecodeTemperature) }
func FuzzGlucose(f *testing.F)         { fuzzDecoder(f, DecodeGlucose) }
func FuzzGlucoseContext(f *testing.F)  { fuzzDecoder(f, DecodeGlucoseContext) }
func FuzzPLXSpotCheck(f *testing.F)    { fuzzDecoder(f, DecodePLXSpotCheck) }
func FuzzPLXContinuous(f *testing.F)   { fuzzDecoder(f, DecodePLXContinuous) }
func FuzzWeight(f *testing.F)          { fuzzDecoder(f, DecodeWeight) }
func FuzzBodyComposition(f *testing.F) { fuzzDecoder(f, DecodeBodyComposition) }
func FuzzCGM(f *testing.F)             { fuzzDecoder(f, DecodeCGM) }

// FuzzDecode runs whole envelopes: whatever is accepted must be finite, in
// the code's canonical unit and range, and inside the time window.
func FuzzDecode(f *testing.F) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, payload []byte) {
		res, err := Decode(payload, now, senml.DefaultLimits)
		if err != nil {
			return
		}
		for _, m := range res.Measurements {
			c, ok := codes.ByLOINC(m.Code)
			if !ok || m.Unit != c.Unit {
				t.Fatalf("measurement %+v: code or unit not from the table", m)
			}
			vals := []float64{m.Value}
			if !m.HasValue {
				vals = nil
				for _, p := range m.Components {
					vals = append(vals, p.Value)
				}
			}
			if len(vals) == 0 {
				t.Fatalf("measurement %+v carries no number", m)
			}
			for _, v := range vals {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("measurement %+v is not finite", m)
				}
			}
			if m.HasValue && (m.Value < c.Min || m.Value > c.Max) {
				t.Fatalf("measurement %+v outside %v–%v", m, c.Min, c.Max)
			}
			if d := m.Time.Sub(now); d > senml.DefaultLimits.MaxFuture || -d > senml.DefaultLimits.MaxPast {
				t.Fatalf("measurement %+v outside the time window", m)
			}
		}
	})
}

// TestFuzzSeedsDecode keeps the seed corpora useful: every seed of a
// decoder target is a valid value, so the fuzzer starts from real shapes.
func TestFuzzSeedsDecode(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"FuzzHeartRate":       func(b []byte) error { _, err := DecodeHeartRate(b); return err },
		"FuzzBloodPressure":   func(b []byte) error { _, err := DecodeBloodPressure(b); return err },
		"FuzzTemperature":     func(b []byte) error { _, err := DecodeTemperature(b); return err },
		"FuzzGlucose":         func(b []byte) error { _, err := DecodeGlucose(b); return err },
		"FuzzGlucoseContext":  func(b []byte) error { _, err := DecodeGlucoseContext(b); return err },
		"FuzzPLXSpotCheck":    func(b []byte) error { _, err := DecodePLXSpotCheck(b); return err },
		"FuzzPLXContinuous":   func(b []byte) error { _, err := DecodePLXContinuous(b); return err },
		"FuzzWeight":          func(b []byte) error { _, err := DecodeWeight(b); return err },
		"FuzzBodyComposition": func(b []byte) error { _, err := DecodeBodyComposition(b); return err },
		"FuzzCGM":             func(b []byte) error { _, err := DecodeCGM(b); return err },
		"FuzzDecode": func(b []byte) error {
			_, err := Decode(b, time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), senml.DefaultLimits)
			return err
		},
	}
	for target, decode := range decoders {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", target, "seed*"))
		if len(files) == 0 {
			t.Errorf("%s has no seeds", target)
		}
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			lit, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "go test fuzz v1\n[]byte(")
			s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
			if !ok || err != nil {
				t.Fatalf("%s: not a []byte corpus entry", name)
			}
			if err := decode([]byte(s)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}
