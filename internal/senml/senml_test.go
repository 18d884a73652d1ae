package senml

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testNow is the receive time every case is decoded at.
var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// render is the golden form of a decode result.
func render(ms []Measurement, err error) string {
	if err != nil {
		var se *Error
		if !errors.As(err, &se) {
			return "untyped error: " + err.Error() + "\n"
		}
		return fmt.Sprintf("error: %s\nrecord: %d\nfield: %s\n", se.Error(), se.Record, se.Field)
	}
	b, jerr := json.MarshalIndent(ms, "", "  ")
	if jerr != nil {
		return "marshal: " + jerr.Error()
	}
	return string(b) + "\n"
}

// TestGolden decodes every testdata/cases/*.json and compares the result
// (measurements or the error) with the .golden file next to it. Files named
// err_* must fail and the others must succeed.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "cases", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			payload, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ms, derr := Decode(ContentTypeJSON, payload, testNow, DefaultLimits)
			if wantErr := strings.HasPrefix(name, "err_"); wantErr != (derr != nil) {
				t.Fatalf("error = %v, want error: %v", derr, wantErr)
			}
			if derr == nil {
				checkAccepted(t, ms, testNow, DefaultLimits)
			}
			got := render(ms, derr)
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("result differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// checkAccepted asserts the invariants of anything Decode accepts.
func checkAccepted(t *testing.T, ms []Measurement, now time.Time, lim Limits) {
	t.Helper()
	if len(ms) == 0 {
		t.Fatal("accepted a pack with no measurements")
	}
	for i, m := range ms {
		c, ok := codes.ByLOINC(m.Code)
		if !ok {
			t.Fatalf("measurement %d: unknown code %q", i, m.Code)
		}
		if m.Unit != c.Unit || m.MDC != c.MDC {
			t.Fatalf("measurement %d: unit %q mdc %q, want %q %q", i, m.Unit, m.MDC, c.Unit, c.MDC)
		}
		if m.Time.Before(now.Add(-lim.MaxPast)) || m.Time.After(now.Add(lim.MaxFuture)) {
			t.Fatalf("measurement %d: time %v outside limits", i, m.Time)
		}
		r := reading.Reading{Value: m.Value, HasValue: m.HasValue, Components: m.Components}
		if !r.Valid() {
			t.Fatalf("measurement %d: not a valid reading: %+v", i, m)
		}
		if c.IsPanel() {
			if m.HasValue || len(m.Components) < 2 {
				t.Fatalf("measurement %d: panel %+v", i, m)
			}
			for _, comp := range m.Components {
				cc, ok := codes.ByLOINC(comp.Code)
				if !ok || comp.Value < cc.Min || comp.Value > cc.Max {
					t.Fatalf("measurement %d: bad component %+v", i, comp)
				}
			}
			continue
		}
		if !m.HasValue || len(m.Components) != 0 || m.Value < c.Min || m.Value > c.Max {
			t.Fatalf("measurement %d: bad value %+v", i, m)
		}
	}
}

// jsonToCBOR re-encodes a SenML JSON pack as SenML CBOR with integer labels.
// Whole numbers become CBOR integers, as real encoders emit them.
func jsonToCBOR(payload []byte) ([]byte, bool) {
	var pack []map[string]any
	if err := json.Unmarshal(payload, &pack); err != nil {
		return nil, false
	}
	out := make([]map[any]any, len(pack))
	for i, rec := range pack {
		m := map[any]any{}
		for k, v := range rec {
			if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				v = int64(f)
			}
			if lbl, ok := cborLabelByName[k]; ok {
				if k == "vd" {
					v = []byte(fmt.Sprint(v))
				}
				m[lbl] = v
			} else {
				m[k] = v
			}
		}
		out[i] = m
	}
	b, err := cbor.Marshal(out)
	return b, err == nil
}

// TestCBORMatchesJSON decodes every case that is a JSON array of objects
// again as CBOR and expects the same measurements or the same error.
func TestCBORMatchesJSON(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "cases", "*.json"))
	compared := 0
	for _, f := range files {
		if strings.Contains(f, "duplicate_field") {
			continue // encoding/json keeps one of the duplicates; CBOR has its own test
		}
		payload, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cb, ok := jsonToCBOR(payload)
		if !ok {
			continue
		}
		compared++
		t.Run(filepath.Base(f), func(t *testing.T) {
			jm, jerr := Decode(ContentTypeJSON, payload, testNow, DefaultLimits)
			cm, cerr := Decode(ContentTypeCBOR, cb, testNow, DefaultLimits)
			if diff := cmp.Diff(render(jm, jerr), render(cm, cerr)); diff != "" {
				t.Errorf("CBOR differs from JSON (-json +cbor):\n%s", diff)
			}
		})
	}
	if compared < 30 {
		t.Fatalf("only %d cases compared", compared)
	}
}

// TestCBORIntegerKeys builds a pack by hand with cbor.Marshal of
// map[int]any, as a constrained device would, and checks every label.
func TestCBORIntegerKeys(t *testing.T) {
	pack := []map[int]any{
		{-1: 10, -2: "urn:dev:mac:0024befffe804ff1:", -3: 1795435200 - 60, -4: "mm[Hg]", -5: 0, 0: "sys", 2: 120},
		{0: "dia", 2: float32(80)},
		{0: "hr", 1: "beat/min", 2: 71.5, 6: 5, 7: 60},
		{-6: 100, 0: "steps", 1: "{steps}", 5: 23, 6: -30},
	}
	b, err := cbor.Marshal(pack)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode("application/senml+cbor", b, testNow, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	at := testNow.Add(-time.Minute)
	want := []Measurement{
		{Code: "85354-9", MDC: "MDC_PRESS_BLD_NONINV", Unit: "mm[Hg]", Time: at, Components: []reading.Component{
			{Code: "8480-6", MDC: "MDC_PRESS_BLD_NONINV_SYS", Value: 120, Unit: "mm[Hg]"},
			{Code: "8462-4", MDC: "MDC_PRESS_BLD_NONINV_DIA", Value: 80, Unit: "mm[Hg]"},
		}},
		{Code: "8867-4", MDC: "MDC_ECG_HEART_RATE", Value: 71.5, HasValue: true, Unit: "/min", Time: at.Add(5 * time.Second)},
		{Code: "55423-8", Value: 123, HasValue: true, Unit: "{steps}", Time: at.Add(-30 * time.Second)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCBORErrors(t *testing.T) {
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		payload []byte
		want    string
	}{
		{"not an array", enc(map[int]any{0: "hr", 2: 70}), "payload is not a SenML pack: a CBOR array of records is expected"},
		{"array of ints", enc([]int{1, 2}), "payload is not a SenML pack: a CBOR array of maps is expected"},
		{"indefinite array", []byte{0x9f, 0xa0, 0xff}, "indefinite-length array"},
		{"indefinite map", []byte{0x81, 0xbf, 0x00, 0x62, 'h', 'r', 0xff}, "indefinite lengths are not accepted"},
		{"truncated", enc([]map[int]any{{0: "hr", 2: 70}})[:5], "payload is not valid CBOR"},
		{"truncated head", []byte{0x99, 0x01}, "ends early"},
		{"duplicate key", []byte{0x81, 0xa2, 0x00, 0x62, 'h', 'r', 0x00, 0x62, 'h', 'r'}, "repeats a label"},
		{"tag", []byte{0x81, 0xa2, 0x00, 0x62, 'h', 'r', 0x02, 0xc1, 0x18, 70}, "tags are not accepted"},
		{"null value", enc([]map[int]any{{0: "hr", 2: nil}}), `record 0: field "v" must be a number`},
		{"string label", enc([]map[string]any{{"n": "hr", "v": 70}}), `record 0: field "n" must use its integer label 0`},
		{"NaN", enc([]map[int]any{{0: "hr", 2: math.NaN()}}), "record 0: value is not finite"},
		{"Inf time", enc([]map[int]any{{0: "hr", 2: 70, 6: math.Inf(-1)}}), "record 0: time (t) is not finite"},
		{"float key", []byte{0x81, 0xa1, 0xf9, 0x3c, 0x00, 0x01}, "neither an integer nor a text string"},
		{"deep nesting", enc([]map[int]any{{0: "hr", 2: 70, 9: []any{[]any{[]any{[]any{1}}}}}}), "nests too deeply"},
		{"empty", nil, "payload is empty"},
		{"too many records", enc(make([]map[int]any, 5000)), "pack has 5000 records; the limit is 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(ContentTypeCBOR, tt.payload, testNow, DefaultLimits)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not *senml.Error", err)
			}
		})
	}
}

func TestLimitsAndContentType(t *testing.T) {
	hr := []byte(`[{"n":"hr","v":70}]`)
	tests := []struct {
		name    string
		ct      string
		payload []byte
		lim     Limits
		want    string
		record  int
	}{
		{"too big", ContentTypeJSON, bytes.Repeat([]byte(" "), 300000), DefaultLimits, "payload is 300000 bytes; the limit is 262144", -1},
		{"too many json records", ContentTypeJSON, []byte(`[{"n":"hr","v":70,"t":-2},{"n":"hr","v":71,"t":-1},{"n":"hr","v":72}]`),
			Limits{MaxBytes: 1000, MaxRecords: 2, MaxFuture: time.Minute, MaxPast: time.Hour}, "pack has more than 2 records; the limit is 2", -1},
		{"tighter past", ContentTypeJSON, []byte(`[{"n":"hr","v":70,"t":-7200}]`),
			Limits{MaxBytes: 1000, MaxRecords: 2, MaxFuture: time.Minute, MaxPast: time.Hour}, "record 0: time 2026-11-23T10:00:00Z is more than 1h0m0s in the past", 0},
		{"unsupported type", "application/json", hr, DefaultLimits, `content type "application/json" is not supported`, -1},
		{"invalid type", "senml/", hr, DefaultLimits, `content type "senml/" is not valid`, -1},
		{"empty type", "", hr, DefaultLimits, `content type "" is not valid`, -1},
		{"empty payload", ContentTypeJSON, nil, DefaultLimits, "payload is empty", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.ct, tt.payload, testNow, tt.lim)
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error = %v (%T), want *Error", err, err)
			}
			if se.Error() != tt.want && !strings.HasPrefix(se.Error(), tt.want) {
				t.Errorf("error = %q, want %q", se.Error(), tt.want)
			}
			if se.Record != tt.record {
				t.Errorf("record = %d, want %d", se.Record, tt.record)
			}
		})
	}
	// Parameters on the content type are allowed.
	if _, err := Decode("application/senml+json; charset=utf-8", hr, testNow, DefaultLimits); err != nil {
		t.Errorf("charset parameter: %v", err)
	}
}

func TestErrorKeepsCause(t *testing.T) {
	_, err := Decode(ContentTypeJSON, []byte(`[{"n":"hr","v":1e400}]`), testNow, DefaultLimits)
	if errors.Unwrap(err) == nil {
		t.Fatal("number range error lost its cause")
	}
	_, err = Decode(ContentTypeJSON, []byte(`[{"n":"hr","u":"mmHg","v":70}]`), testNow, DefaultLimits)
	var se *Error
	if !errors.As(err, &se) || se.Field != "u" || errors.Unwrap(err) == nil {
		t.Fatalf("unit error = %#v", err)
	}
}

func TestTimes(t *testing.T) {
	// now with a monotonic reading and a non-UTC zone must not leak into
	// results: relative and absolute times of one instant must be equal.
	loc := time.FixedZone("X", 3600)
	now := time.Now().In(loc).Truncate(time.Second)
	abs := float64(now.Unix() - 10)
	payload := fmt.Sprintf(`[{"n":"hr","v":70,"t":-10},{"n":"hr","v":71,"t":%d}]`, int64(abs))
	_, err := Decode(ContentTypeJSON, []byte(payload), now, DefaultLimits)
	if err == nil || !strings.Contains(err.Error(), "repeats 8867-4 at the same time as record 0") {
		t.Fatalf("relative and absolute forms of one instant were not seen as equal: %v", err)
	}
	ms, err := Decode(ContentTypeJSON, []byte(`[{"n":"hr","v":70,"t":1795435199.123456789}]`), testNow, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 23, 11, 59, 59, 123457000, time.UTC); !ms[0].Time.Equal(want) || ms[0].Time.Location() != time.UTC {
		t.Errorf("time = %v, want %v in UTC", ms[0].Time, want)
	}
}

// BenchmarkDecodeJSON decodes a 10-record pack, the ingest hot path.
func BenchmarkDecodeJSON(b *testing.B) {
	payload := []byte(`[{"bn":"urn:dev:mac:0024befffe804ff1:","bt":1795435140,"bu":"/min","n":"hr","v":72},` +
		`{"n":"hr","t":1,"v":73},{"n":"spo2","u":"%","v":97},{"n":"rr","v":16},{"n":"temp","u":"Cel","v":36.8},` +
		`{"n":"sys","u":"mm[Hg]","v":120},{"n":"dia","u":"mm[Hg]","v":80},{"n":"map","u":"mm[Hg]","v":93},` +
		`{"n":"pulse","t":2,"v":71},{"n":"glucose","u":"mmol/L","v":5.5}]`)
	if _, err := DecodeJSON(payload, testNow, DefaultLimits); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := DecodeJSON(payload, testNow, DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDuplicatesInLargePack covers the map-based duplicate check used for
// packs of more than 16 readings.
func TestDuplicatesInLargePack(t *testing.T) {
	for _, dup := range []bool{false, true} {
		var b strings.Builder
		b.WriteString("[")
		for i := range 20 {
			if i > 0 {
				b.WriteString(",")
			}
			ts := -i
			if dup && i == 19 {
				ts = -3
			}
			fmt.Fprintf(&b, `{"n":"hr","v":%d,"t":%d}`, 60+i, ts)
		}
		b.WriteString("]")
		ms, err := Decode(ContentTypeJSON, []byte(b.String()), testNow, DefaultLimits)
		if !dup {
			if err != nil || len(ms) != 20 {
				t.Fatalf("got %d, %v", len(ms), err)
			}
			continue
		}
		if err == nil || err.Error() != "record 19: repeats 8867-4 at the same time as record 3" {
			t.Fatalf("error = %v", err)
		}
	}
}

// BenchmarkDecodeCBOR decodes the 10-record pack of BenchmarkDecodeJSON as
// SenML CBOR.
func BenchmarkDecodeCBOR(b *testing.B) {
	js := []byte(`[{"bn":"urn:dev:mac:0024befffe804ff1:","bt":1795435140,"bu":"/min","n":"hr","v":72},` +
		`{"n":"hr","t":1,"v":73},{"n":"spo2","u":"%","v":97},{"n":"rr","v":16},{"n":"temp","u":"Cel","v":36.8},` +
		`{"n":"sys","u":"mm[Hg]","v":120},{"n":"dia","u":"mm[Hg]","v":80},{"n":"map","u":"mm[Hg]","v":93},` +
		`{"n":"pulse","t":2,"v":71},{"n":"glucose","u":"mmol/L","v":5.5}]`)
	payload, ok := jsonToCBOR(js)
	if !ok {
		b.Fatal("encode")
	}
	if _, err := DecodeCBOR(payload, testNow, DefaultLimits); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := DecodeCBOR(payload, testNow, DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}
