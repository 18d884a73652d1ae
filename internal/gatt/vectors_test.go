package gatt

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// vectorsPath is the public vector file shared with the other adapters.
const vectorsPath = "../../../shared/testdata/ble/vectors.json"

type vectorFile struct {
	SFloat          []numberVector `json:"sfloat"`
	Float           []numberVector `json:"float"`
	Characteristics []struct {
		UUID   string         `json:"uuid"`
		Name   string         `json:"name"`
		Bytes  string         `json:"bytes"`
		Expect map[string]any `json:"expect"`
	} `json:"characteristics"`
}

type numberVector struct {
	Hex     string   `json:"hex"`
	Value   *float64 `json:"value"`
	Special string   `json:"special"`
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Skipf("vector file not beside the module: %v", err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("vectors.json: %v", err)
	}
	if len(v.SFloat) == 0 || len(v.Float) == 0 || len(v.Characteristics) == 0 {
		t.Fatal("vectors.json has an empty section")
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func checkNumber(t *testing.T, what string, got Number, v numberVector) {
	t.Helper()
	if v.Special != "" {
		if got.Special.String() != v.Special || got.Value != 0 {
			t.Errorf("%s %s: got %+v, want special %s", what, v.Hex, got, v.Special)
		}
		return
	}
	if v.Value == nil || !got.OK() || got.Value != *v.Value {
		t.Errorf("%s %s: got %+v, want %v", what, v.Hex, got, v.Value)
	}
}

func TestVectorsNumbers(t *testing.T) {
	v := loadVectors(t)
	for _, n := range v.SFloat {
		raw, err := strconv.ParseUint(n.Hex, 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		checkNumber(t, "SFLOAT", SFloat(uint16(raw)), n)
		// On the air the same value is little-endian.
		checkNumber(t, "SFLOAT bytes", SFloatBytes([2]byte{byte(raw), byte(raw >> 8)}), n)
	}
	for _, n := range v.Float {
		raw, err := strconv.ParseUint(n.Hex, 16, 32)
		if err != nil {
			t.Fatal(err)
		}
		checkNumber(t, "FLOAT", Float(uint32(raw)), n)
		checkNumber(t, "FLOAT bytes", FloatBytes([4]byte{byte(raw), byte(raw >> 8), byte(raw >> 16), byte(raw >> 24)}), n)
	}
}

func num(t *testing.T, e map[string]any, key string) float64 {
	t.Helper()
	f, ok := e[key].(float64)
	if !ok {
		t.Fatalf("expect.%s missing or not a number", key)
	}
	return f
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestVectorsCharacteristics(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Characteristics {
		t.Run(c.UUID, func(t *testing.T) {
			b, e := unhex(t, c.Bytes), c.Expect
			switch c.UUID {
			case "2A35":
				m, err := DecodeBloodPressure(b)
				if err != nil {
					t.Fatal(err)
				}
				if unit := map[bool]string{false: "mmHg", true: "kPa"}[m.KPa]; unit != e["unit"] {
					t.Errorf("unit %s, want %v", unit, e["unit"])
				}
				if m.Systolic.Value != num(t, e, "systolic") || m.Diastolic.Value != num(t, e, "diastolic") || m.Mean.Value != num(t, e, "mean") {
					t.Errorf("pressures %+v %+v %+v", m.Systolic, m.Diastolic, m.Mean)
				}
				if m.Time == nil || *m.Time != (DateTime{0, 4, 17, 20, 41, 59}) || m.Time.Known() {
					t.Errorf("time %+v, want %s", m.Time, e["timestamp"])
				}
				if m.Pulse == nil || m.Pulse.Value != num(t, e, "pulse") {
					t.Errorf("pulse %+v", m.Pulse)
				}
				if m.User == nil || float64(*m.User) != num(t, e, "user") {
					t.Errorf("user %v", m.User)
				}
				if m.Status == nil || "0x"+strconv.FormatUint(uint64(*m.Status)|0x10000, 16)[1:] != e["status"] {
					t.Errorf("status %v, want %v", m.Status, e["status"])
				}
			case "2A1C":
				m, err := DecodeTemperature(b)
				if err != nil {
					t.Fatal(err)
				}
				if m.Fahrenheit || e["unit"] != "Cel" || !near(m.Value.Value, num(t, e, "value")) {
					t.Errorf("temperature %+v", m)
				}
				if m.Time == nil || m.Time.String() != e["timestamp"] {
					t.Errorf("time %v, want %v", m.Time, e["timestamp"])
				}
				if m.Type == nil || float64(*m.Type) != num(t, e, "type") || TemperatureTypes[*m.Type] != e["type_name"] {
					t.Errorf("type %v", m.Type)
				}
			case "2A37":
				m, err := DecodeHeartRate(b)
				if err != nil {
					t.Fatal(err)
				}
				if float64(m.BPM) != num(t, e, "heart_rate") || m.ContactSupported != e["contact_supported"] || m.ContactDetected != e["contact_detected"] {
					t.Errorf("heart rate %+v", m)
				}
				if m.EnergyExpended == nil || float64(*m.EnergyExpended) != num(t, e, "energy_expended_kJ") {
					t.Errorf("energy %v", m.EnergyExpended)
				}
				want := e["rr_intervals_1_1024s"].([]any)
				if len(m.RRIntervals) != len(want) {
					t.Fatalf("RR %v, want %v", m.RRIntervals, want)
				}
				for i := range want {
					if float64(m.RRIntervals[i]) != want[i].(float64) {
						t.Errorf("RR %v, want %v", m.RRIntervals, want)
					}
				}
			case "2AA7":
				rs, err := DecodeCGM(b)
				if err != nil {
					t.Fatal(err)
				}
				if len(rs) != 1 {
					t.Fatalf("%d records, want 1", len(rs))
				}
				m := rs[0]
				if !near(m.Glucose.Value, num(t, e, "glucose_mg_dL")) || float64(m.TimeOffset) != num(t, e, "time_offset_min") {
					t.Errorf("record %+v", m)
				}
				if m.Trend == nil || !near(m.Trend.Value, num(t, e, "trend_mg_dL_per_min")) {
					t.Errorf("trend %v", m.Trend)
				}
				if m.Quality == nil || !near(m.Quality.Value, num(t, e, "quality_percent")) {
					t.Errorf("quality %v", m.Quality)
				}
				if m.CRC == nil {
					t.Error("E2E-CRC not recognised")
				}
			default:
				t.Fatalf("no check for characteristic %s (%s); add one", c.UUID, c.Name)
			}
		})
	}
}
