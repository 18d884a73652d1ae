package gatt

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// The flag-combination tests build each characteristic from its layout for
// every value of the flags field (reserved bits included, which a receiver
// must ignore), decode it and compare field by field. The builders are
// written from the specifications independently of the decoders.

type builder struct{ b []byte }

func (w *builder) u8(v uint8) *builder   { w.b = append(w.b, v); return w }
func (w *builder) u16(v uint16) *builder { w.b = binary.LittleEndian.AppendUint16(w.b, v); return w }
func (w *builder) u24(v uint32) *builder {
	w.b = append(w.b, byte(v), byte(v>>8), byte(v>>16))
	return w
}
func (w *builder) u32(v uint32) *builder { w.b = binary.LittleEndian.AppendUint32(w.b, v); return w }
func (w *builder) dt(d DateTime) *builder {
	return w.u16(d.Year).u8(d.Month).u8(d.Day).u8(d.Hours).u8(d.Minutes).u8(d.Seconds)
}

func ptr[T any](v T) *T { return &v }

var testTime = DateTime{2026, 11, 23, 8, 30, 15}

func TestHeartRateAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		w := (&builder{}).u8(flags)
		want := HeartRate{Flags: flags}
		if flags&0x01 != 0 {
			w.u16(300)
			want.BPM = 300
		} else {
			w.u8(72)
			want.BPM = 72
		}
		want.ContactSupported = flags&0x04 != 0
		want.ContactDetected = flags&0x06 == 0x06
		if flags&0x08 != 0 {
			w.u16(1234)
			want.EnergyExpended = ptr(uint16(1234))
		}
		if flags&0x10 != 0 {
			w.u16(1024).u16(980)
			want.RRIntervals = []uint16{1024, 980}
		}
		got, err := DecodeHeartRate(w.b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("flags %#02x: %+v %v, want %+v", flags, got, err, want)
		}
		checkTruncations(t, "2A37", w.b, func(b []byte) error { _, err := DecodeHeartRate(b); return err },
			flags&0x10 != 0) // RR-intervals are a list: dropping a whole one is valid
	}
}

// checkTruncations: every shorter value must fail, and so must one byte too
// many (unless the value ends in an open list, where a pair is fine).
func checkTruncations(t *testing.T, name string, b []byte, decode func([]byte) error, openList bool) {
	t.Helper()
	for n := 0; n < len(b); n++ {
		if openList && n >= len(b)-2 && (len(b)-n)%2 == 0 {
			continue
		}
		if openList && n == len(b)-4 { // both RR-intervals dropped
			continue
		}
		if err := decode(b[:n]); err == nil {
			t.Fatalf("%s: %d of %d bytes (% x) accepted", name, n, len(b), b)
		}
	}
	if err := decode(append(append([]byte(nil), b...), 0x00)); err == nil {
		t.Fatalf("%s: one byte too many accepted (% x)", name, b)
	}
}

func TestBloodPressureAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		w := (&builder{}).u8(flags).u16(0x0078).u16(0x0050).u16(0x07FF) // 120, 80, NaN
		want := BloodPressure{Flags: flags, KPa: flags&1 != 0, Systolic: finite(120), Diastolic: finite(80), Mean: Number{Special: NaN}}
		if flags&0x02 != 0 {
			w.dt(testTime)
			want.Time = ptr(testTime)
		}
		if flags&0x04 != 0 {
			w.u16(0xF2BC) // 700 × 10^-1 = 70
			want.Pulse = ptr(finite(70))
		}
		if flags&0x08 != 0 {
			w.u8(3)
			want.User = ptr(uint8(3))
		}
		if flags&0x10 != 0 {
			w.u16(0x003F)
			want.Status = ptr(uint16(0x003F))
		}
		got, err := DecodeBloodPressure(w.b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("flags %#02x: %+v %v, want %+v", flags, got, err, want)
		}
		checkTruncations(t, "2A35", w.b, func(b []byte) error { _, err := DecodeBloodPressure(b); return err }, false)
	}
}

func TestTemperatureAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		w := (&builder{}).u8(flags).u32(0xFF00016D) // 365 × 10^-1
		want := Temperature{Flags: flags, Fahrenheit: flags&1 != 0, Value: finite(36.5)}
		if flags&0x02 != 0 {
			w.dt(testTime)
			want.Time = ptr(testTime)
		}
		if flags&0x04 != 0 {
			w.u8(6)
			want.Type = ptr(uint8(6))
		}
		got, err := DecodeTemperature(w.b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("flags %#02x: %+v %v, want %+v", flags, got, err, want)
		}
		checkTruncations(t, "2A1C", w.b, func(b []byte) error { _, err := DecodeTemperature(b); return err }, false)
	}
}

func TestGlucoseAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		w := (&builder{}).u8(flags).u16(42).dt(testTime)
		want := Glucose{Flags: flags, Sequence: 42, BaseTime: testTime, MolPerL: flags&0x04 != 0, HasContext: flags&0x10 != 0}
		if flags&0x01 != 0 {
			w.u16(0xFFF6) // -10 minutes
			want.TimeOffset = ptr(int16(-10))
		}
		if flags&0x02 != 0 {
			w.u16(0xB05A).u8(0xF1) // 90 × 10^-5 kg/L, capillary whole blood, location not available
			want.Concentration = ptr(finite(90 / 1e5))
			want.Type, want.Location = 1, 15
		}
		if flags&0x08 != 0 {
			w.u16(0x0020)
			want.Status = ptr(uint16(0x0020))
		}
		got, err := DecodeGlucose(w.b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("flags %#02x: %+v %v, want %+v", flags, got, err, want)
		}
		checkTruncations(t, "2A18", w.b, func(b []byte) error { _, err := DecodeGlucose(b); return err }, false)
	}
}

func TestGlucoseContextAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		w := (&builder{}).u8(flags).u16(42)
		want := GlucoseContext{Flags: flags, Sequence: 42, MedicationLitres: flags&0x20 != 0}
		if flags&0x80 != 0 {
			w.u8(0)
			want.ExtendedFlags = ptr(uint8(0))
		}
		if flags&0x01 != 0 {
			w.u8(1).u16(0xD032) // breakfast, 50 × 10^-3 kg
			want.CarbID, want.Carbohydrate = ptr(uint8(1)), ptr(finite(0.05))
		}
		if flags&0x02 != 0 {
			w.u8(1)
			want.Meal = ptr(uint8(1))
		}
		if flags&0x04 != 0 {
			w.u8(0x21) // health 2, tester 1
			want.Tester, want.Health = ptr(uint8(1)), ptr(uint8(2))
		}
		if flags&0x08 != 0 {
			w.u16(1800).u8(60)
			want.ExerciseSecs, want.ExerciseLevel = ptr(uint16(1800)), ptr(uint8(60))
		}
		if flags&0x10 != 0 {
			w.u8(1).u16(0x07FE) // +INF
			want.MedicationID, want.Medication = ptr(uint8(1)), ptr(Number{Special: PosInf})
		}
		if flags&0x40 != 0 {
			w.u16(0xF041) // 65 × 10^-1 %
			want.HbA1c = ptr(finite(6.5))
		}
		got, err := DecodeGlucoseContext(w.b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("flags %#02x: %+v %v, want %+v", flags, got, err, want)
		}
		checkTruncations(t, "2A34", w.b, func(b []byte) error { _, err := DecodeGlucoseContext(b); return err }, false)
	}
}

func TestPLXSpotCheckAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		w := (&builder{}).u8(flags).u16(97).u16(0x0800) // 97 %, NRes
		want := PLXSpotCheck{Flags: flags, SpO2PR: SpO2PR{finite(97), Number{Special: NRes}}, ClockNotSet: flags&0x10 != 0}
		if flags&0x01 != 0 {
			w.dt(testTime)
			want.Time = ptr(testTime)
		}
		if flags&0x02 != 0 {
			w.u16(PLXValidated)
			want.Status = ptr(uint16(PLXValidated))
		}
		if flags&0x04 != 0 {
			w.u24(PLXLowPerfusion | 0xAB0000)
			want.DeviceStatus = ptr(uint32(PLXLowPerfusion | 0xAB0000))
		}
		if flags&0x08 != 0 {
			w.u16(0xF00F) // 1.5 %
			want.PulseAmplitude = ptr(finite(1.5))
		}
		got, err := DecodePLXSpotCheck(w.b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("flags %#02x: %+v %v, want %+v", flags, got, err, want)
		}
		checkTruncations(t, "2A5E", w.b, func(b []byte) error { _, err := DecodePLXSpotCheck(b); return err }, false)
	}
}

func TestPLXContinuousAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		w := (&builder{}).u8(flags).u16(97).u16(60)
		want := PLXContinuous{Flags: flags, Normal: SpO2PR{finite(97), finite(60)}}
		if flags&0x01 != 0 {
			w.u16(96).u16(61)
			want.Fast = &SpO2PR{finite(96), finite(61)}
		}
		if flags&0x02 != 0 {
			w.u16(98).u16(0x0802)
			want.Slow = &SpO2PR{finite(98), Number{Special: NegInf}}
		}
		if flags&0x04 != 0 {
			w.u16(PLXMeasuring)
			want.Status = ptr(uint16(PLXMeasuring))
		}
		if flags&0x08 != 0 {
			w.u24(PLXSensorDisplaced)
			want.DeviceStatus = ptr(uint32(PLXSensorDisplaced))
		}
		if flags&0x10 != 0 {
			w.u16(0x0801)
			want.PulseAmplitude = ptr(Number{Special: Reserved})
		}
		got, err := DecodePLXContinuous(w.b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("flags %#02x: %+v %v, want %+v", flags, got, err, want)
		}
		checkTruncations(t, "2A5F", w.b, func(b []byte) error { _, err := DecodePLXContinuous(b); return err }, false)
	}
}

func TestWeightAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		w := (&builder{}).u8(flags).u16(14000)
		want := Weight{Flags: flags, Imperial: flags&1 != 0, Raw: 14000}
		if flags&0x02 != 0 {
			w.dt(testTime)
			want.Time = ptr(testTime)
		}
		if flags&0x04 != 0 {
			w.u8(255)
			want.User = ptr(uint8(255))
		}
		if flags&0x08 != 0 {
			w.u16(229).u16(1750)
			want.BMI, want.Height = ptr(uint16(229)), ptr(uint16(1750))
		}
		got, err := DecodeWeight(w.b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("flags %#02x: %+v %v, want %+v", flags, got, err, want)
		}
		checkTruncations(t, "2A9D", w.b, func(b []byte) error { _, err := DecodeWeight(b); return err }, false)
	}
}

func TestBodyCompositionAllFlags(t *testing.T) {
	// 16 flag bits: every combination of the 13 defined ones, plus the
	// reserved bits on their own.
	for f := 0; f < 1<<13; f++ {
		testBodyComposition(t, uint16(f))
	}
	for _, f := range []uint16{0xE000, 0xFFFF} {
		testBodyComposition(t, f)
	}
}

func testBodyComposition(t *testing.T, flags uint16) {
	t.Helper()
	w := (&builder{}).u16(flags).u16(215)
	want := BodyComposition{Flags: flags, Imperial: flags&1 != 0, BodyFat: 215, MultiplePacket: flags&0x1000 != 0}
	if flags&0x0002 != 0 {
		w.dt(testTime)
		want.Time = ptr(testTime)
	}
	if flags&0x0004 != 0 {
		w.u8(1)
		want.User = ptr(uint8(1))
	}
	fields := []**uint16{&want.BasalMetabolism, &want.MusclePercent, &want.MuscleMass, &want.FatFreeMass,
		&want.SoftLeanMass, &want.BodyWaterMass, &want.Impedance, &want.Weight, &want.Height}
	for i, p := range fields {
		if flags&(0x0008<<i) != 0 {
			v := uint16(1000 + i)
			w.u16(v)
			*p = &v
		}
	}
	got, err := DecodeBodyComposition(w.b)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("flags %#04x: %+v %v, want %+v", flags, got, err, want)
	}
	if flags%64 == 0 { // truncation of every prefix is slow across 8192 cases
		checkTruncations(t, "2A9C", w.b, func(b []byte) error { _, err := DecodeBodyComposition(b); return err }, false)
	}
}

func TestCGMAllFlags(t *testing.T) {
	for f := 0; f < 256; f++ {
		flags := uint8(f)
		for _, withCRC := range []bool{false, true} {
			body := (&builder{}).u8(flags).u16(0x0064).u16(15) // 100 mg/dL at 15 min
			want := CGM{Flags: flags, Glucose: finite(100), TimeOffset: 15}
			if flags&0x20 != 0 {
				body.u8(0x01)
				want.Status |= CGMBelowPatientLow
				want.StatusPresent = true
			}
			if flags&0x40 != 0 {
				body.u8(0x04)
				want.Status |= CGMCalRecommended
				want.StatusPresent = true
			}
			if flags&0x80 != 0 {
				body.u8(0x02)
				want.Status |= CGMBatteryLow
				want.StatusPresent = true
			}
			if flags&0x01 != 0 {
				body.u16(0xF00A) // 1.0 mg/dL/min
				want.Trend = ptr(finite(1))
			}
			if flags&0x02 != 0 {
				body.u16(0x005F)
				want.Quality = ptr(finite(95))
			}
			size := len(body.b) + 1
			if withCRC {
				size += 2
			}
			rec := append([]byte{byte(size)}, body.b...)
			if withCRC {
				crc := crc16MCRF4XX(rec)
				rec = binary.LittleEndian.AppendUint16(rec, crc)
				want.CRC = &crc
			}
			want.Size = uint8(size)
			got, err := DecodeCGM(append(append([]byte(nil), rec...), rec...)) // two records back to back
			if err != nil || len(got) != 2 || !reflect.DeepEqual(got[0], want) || !reflect.DeepEqual(got[1], want) {
				t.Fatalf("flags %#02x crc %v: %+v %v, want %+v", flags, withCRC, got, err, want)
			}
			if withCRC {
				bad := append([]byte(nil), rec...)
				bad[2] ^= 0x01
				if _, err := DecodeCGM(bad); err == nil || !strings.Contains(err.Error(), "E2E-CRC") {
					t.Fatalf("flags %#02x: corrupted record accepted: %v", flags, err)
				}
			}
			for n := 1; n < len(rec); n++ {
				if _, err := DecodeCGM(rec[:n]); err == nil {
					t.Fatalf("flags %#02x: %d of %d bytes accepted", flags, n, len(rec))
				}
			}
		}
	}
}

func TestDateTime(t *testing.T) {
	tests := []struct {
		b     []byte
		known bool
		err   string
	}{
		{[]byte{0xEA, 0x07, 11, 23, 8, 30, 15}, true, ""},
		{[]byte{0, 0, 11, 23, 8, 30, 15}, false, ""},      // year not known
		{[]byte{0xEA, 0x07, 0, 23, 8, 30, 15}, false, ""}, // month not known
		{[]byte{0xEA, 0x07, 13, 23, 8, 30, 15}, false, "month 13"},
		{[]byte{0xEA, 0x07, 11, 32, 8, 30, 15}, false, "day 32"},
		{[]byte{0xEA, 0x07, 11, 23, 24, 0, 0}, false, "time of day"},
		{[]byte{0xEA, 0x07, 11, 23, 8, 60, 0}, false, "time of day"},
		{[]byte{0x0A, 0x00, 11, 23, 8, 30, 15}, false, "year 10"},
	}
	for _, tc := range tests {
		r := reader{b: tc.b}
		d := r.dateTime("ts")
		err := r.end()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("% x: %v, want %q", tc.b, err, tc.err)
			}
			continue
		}
		if err != nil || d.Known() != tc.known {
			t.Errorf("% x: %+v known=%v %v", tc.b, d, d.Known(), err)
		}
	}
	if _, err := (DateTime{2026, 4, 31, 0, 0, 0}).In(nil); err == nil {
		t.Error("31 April accepted")
	}
}
