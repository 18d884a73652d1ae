package gatt

import (
	"fmt"
)

// The decoders below follow the Bluetooth SIG service specifications (HRS,
// BLS, HTS, GLS, PLXS, WSS, BCS, CGMS): a flags field says which optional
// fields follow, in the order the specification lists them. Bits the
// specification reserves are ignored, as it requires of a receiver; a value
// shorter or longer than its flags announce is refused.

// HeartRate is the Heart Rate Measurement characteristic (0x2A37).
type HeartRate struct {
	Flags            uint8
	BPM              uint16   // beats per minute
	ContactSupported bool     // the sensor can tell whether it touches the skin
	ContactDetected  bool     // meaningful only when ContactSupported
	EnergyExpended   *uint16  // kilojoules since the last reset
	RRIntervals      []uint16 // 1/1024 s each, oldest first
}

// DecodeHeartRate decodes a Heart Rate Measurement value.
func DecodeHeartRate(b []byte) (HeartRate, error) {
	r := reader{b: b}
	var m HeartRate
	m.Flags = r.u8("flags")
	if m.Flags&0x01 != 0 {
		m.BPM = r.u16("heart rate (uint16)")
	} else {
		m.BPM = uint16(r.u8("heart rate (uint8)"))
	}
	m.ContactSupported = m.Flags&0x04 != 0
	m.ContactDetected = m.ContactSupported && m.Flags&0x02 != 0
	if m.Flags&0x08 != 0 {
		e := r.u16("energy expended")
		m.EnergyExpended = &e
	}
	if m.Flags&0x10 != 0 {
		if r.err == nil && (len(b)-r.off)%2 != 0 {
			return m, fmt.Errorf("RR-intervals take an odd number of bytes (%d)", len(b)-r.off)
		}
		for r.err == nil && r.off < len(b) {
			m.RRIntervals = append(m.RRIntervals, r.u16("RR-interval"))
		}
	}
	return m, r.end()
}

// Blood pressure measurement status bits (BLS §3.1.1.6).
const (
	BPBodyMovement     = 1 << 0
	BPCuffLoose        = 1 << 1
	BPIrregularPulse   = 1 << 2
	BPPulseRangeMask   = 3 << 3 // 0 within range, 1 above, 2 below, 3 reserved
	BPImproperPosition = 1 << 5
)

// BloodPressure is the Blood Pressure Measurement (0x2A35) and the
// Intermediate Cuff Pressure (0x2A36) characteristic; they share a layout.
// In an intermediate cuff pressure Systolic holds the current cuff pressure
// and Diastolic and Mean are NaN.
type BloodPressure struct {
	Flags                     uint8
	KPa                       bool // values are in kPa, else mmHg
	Systolic, Diastolic, Mean Number
	Time                      *DateTime
	Pulse                     *Number // beats per minute
	User                      *uint8  // 255 = unknown user
	Status                    *uint16 // BP* bits
}

// DecodeBloodPressure decodes a Blood Pressure Measurement or Intermediate
// Cuff Pressure value.
func DecodeBloodPressure(b []byte) (BloodPressure, error) {
	r := reader{b: b}
	var m BloodPressure
	m.Flags = r.u8("flags")
	m.KPa = m.Flags&0x01 != 0
	m.Systolic = r.sfloat("systolic")
	m.Diastolic = r.sfloat("diastolic")
	m.Mean = r.sfloat("mean arterial pressure")
	if m.Flags&0x02 != 0 {
		t := r.dateTime("time stamp")
		m.Time = &t
	}
	if m.Flags&0x04 != 0 {
		p := r.sfloat("pulse rate")
		m.Pulse = &p
	}
	if m.Flags&0x08 != 0 {
		u := r.u8("user id")
		m.User = &u
	}
	if m.Flags&0x10 != 0 {
		s := r.u16("measurement status")
		m.Status = &s
	}
	return m, r.end()
}

// TemperatureTypes names the Temperature Type values (HTS §3.1.1.4, 0x2A1D).
var TemperatureTypes = map[uint8]string{
	1: "armpit", 2: "body", 3: "ear", 4: "finger", 5: "gastro-intestinal tract",
	6: "mouth", 7: "rectum", 8: "toe", 9: "tympanum",
}

// Temperature is the Temperature Measurement characteristic (0x2A1C).
type Temperature struct {
	Flags      uint8
	Fahrenheit bool
	Value      Number
	Time       *DateTime
	Type       *uint8 // see TemperatureTypes
}

// DecodeTemperature decodes a Temperature Measurement value.
func DecodeTemperature(b []byte) (Temperature, error) {
	r := reader{b: b}
	var m Temperature
	m.Flags = r.u8("flags")
	m.Fahrenheit = m.Flags&0x01 != 0
	m.Value = r.float("temperature")
	if m.Flags&0x02 != 0 {
		t := r.dateTime("time stamp")
		m.Time = &t
	}
	if m.Flags&0x04 != 0 {
		ty := r.u8("temperature type")
		m.Type = &ty
	}
	return m, r.end()
}

// Glucose sample types (GLS §3.106, low nibble of type-sample location).
const (
	GlucoseCapillaryWholeBlood = 1
	GlucoseISF                 = 9
	GlucoseControlSolution     = 10
)

// Glucose sensor status annunciation bits (GLS §3.106).
const (
	GlucoseBatteryLow         = 1 << 0
	GlucoseSensorMalfunction  = 1 << 1
	GlucoseSampleInsufficient = 1 << 2
	GlucoseStripInsertion     = 1 << 3
	GlucoseStripType          = 1 << 4
	GlucoseResultTooHigh      = 1 << 5
	GlucoseResultTooLow       = 1 << 6
	GlucoseTempTooHigh        = 1 << 7
	GlucoseTempTooLow         = 1 << 8
	GlucoseReadInterrupted    = 1 << 9
	GlucoseDeviceFault        = 1 << 10
	GlucoseTimeFault          = 1 << 11
)

// glucoseInvalid are the annunciations after which the meter's number is
// not a measurement of the patient.
const glucoseInvalid = GlucoseSensorMalfunction | GlucoseSampleInsufficient | GlucoseStripInsertion |
	GlucoseStripType | GlucoseReadInterrupted | GlucoseDeviceFault

// Glucose is the Glucose Measurement characteristic (0x2A18).
type Glucose struct {
	Flags      uint8
	Sequence   uint16
	BaseTime   DateTime
	TimeOffset *int16 // minutes added to BaseTime
	// Concentration is in kg/L, or mol/L when MolPerL; present with Type
	// and Location.
	Concentration *Number
	MolPerL       bool
	Type          uint8 // sample type, low nibble
	Location      uint8 // sample location, high nibble (15 = not available)
	Status        *uint16
	HasContext    bool // a Glucose Measurement Context with the same Sequence follows
}

// DecodeGlucose decodes a Glucose Measurement value.
func DecodeGlucose(b []byte) (Glucose, error) {
	r := reader{b: b}
	var m Glucose
	m.Flags = r.u8("flags")
	m.Sequence = r.u16("sequence number")
	m.BaseTime = r.dateTime("base time")
	if m.Flags&0x01 != 0 {
		o := int16(r.u16("time offset"))
		m.TimeOffset = &o
	}
	m.MolPerL = m.Flags&0x04 != 0
	if m.Flags&0x02 != 0 {
		c := r.sfloat("glucose concentration")
		m.Concentration = &c
		tl := r.u8("type-sample location")
		m.Type, m.Location = tl&0x0F, tl>>4
	}
	if m.Flags&0x08 != 0 {
		s := r.u16("sensor status annunciation")
		m.Status = &s
	}
	m.HasContext = m.Flags&0x10 != 0
	return m, r.end()
}

// GlucoseContext is the Glucose Measurement Context characteristic (0x2A34).
type GlucoseContext struct {
	Flags            uint8
	Sequence         uint16
	ExtendedFlags    *uint8
	CarbID           *uint8
	Carbohydrate     *Number // kg
	Meal             *uint8  // 1 preprandial, 2 postprandial, 3 fasting, 4 casual, 5 bedtime
	Tester           *uint8  // 1 self, 2 health care professional, 3 lab test, 15 not available
	Health           *uint8
	ExerciseSecs     *uint16 // 65535 = overrun
	ExerciseLevel    *uint8  // percent
	MedicationID     *uint8
	Medication       *Number // kg, or litres when MedicationLitres
	MedicationLitres bool
	HbA1c            *Number // percent
}

// DecodeGlucoseContext decodes a Glucose Measurement Context value.
func DecodeGlucoseContext(b []byte) (GlucoseContext, error) {
	r := reader{b: b}
	var m GlucoseContext
	m.Flags = r.u8("flags")
	m.Sequence = r.u16("sequence number")
	if m.Flags&0x80 != 0 {
		x := r.u8("extended flags")
		m.ExtendedFlags = &x
	}
	if m.Flags&0x01 != 0 {
		id := r.u8("carbohydrate id")
		c := r.sfloat("carbohydrate")
		m.CarbID, m.Carbohydrate = &id, &c
	}
	if m.Flags&0x02 != 0 {
		v := r.u8("meal")
		m.Meal = &v
	}
	if m.Flags&0x04 != 0 {
		th := r.u8("tester-health")
		t, h := th&0x0F, th>>4
		m.Tester, m.Health = &t, &h
	}
	if m.Flags&0x08 != 0 {
		d := r.u16("exercise duration")
		l := r.u8("exercise intensity")
		m.ExerciseSecs, m.ExerciseLevel = &d, &l
	}
	m.MedicationLitres = m.Flags&0x20 != 0
	if m.Flags&0x10 != 0 {
		id := r.u8("medication id")
		v := r.sfloat("medication")
		m.MedicationID, m.Medication = &id, &v
	}
	if m.Flags&0x40 != 0 {
		v := r.sfloat("HbA1c")
		m.HbA1c = &v
	}
	return m, r.end()
}

// PLX measurement status bits (PLXS §3.1.1.3).
const (
	PLXMeasuring      = 1 << 5
	PLXEarlyEstimate  = 1 << 6
	PLXValidated      = 1 << 7
	PLXFullyQualified = 1 << 8
	PLXFromStorage    = 1 << 9
	PLXDemonstration  = 1 << 10
	PLXTesting        = 1 << 11
	PLXCalibrating    = 1 << 12
	PLXUnavailable    = 1 << 13
	PLXQuestionable   = 1 << 14
	PLXInvalid        = 1 << 15
)

// PLX device and sensor status bits (PLXS §3.1.1.4).
const (
	PLXEquipmentMalfunction = 1 << 1
	PLXSignalIrregular      = 1 << 2
	PLXInadequateSignal     = 1 << 3
	PLXPoorSignal           = 1 << 4
	PLXLowPerfusion         = 1 << 5
	PLXErraticSignal        = 1 << 6
	PLXNonpulsatile         = 1 << 7
	PLXQuestionablePulse    = 1 << 8
	PLXSignalAnalysis       = 1 << 9
	PLXInterference         = 1 << 10
	PLXSensorUnconnected    = 1 << 11
	PLXUnknownSensor        = 1 << 12
	PLXSensorDisplaced      = 1 << 13
	PLXSensorMalfunction    = 1 << 14
	PLXSensorDisconnected   = 1 << 15
)

// SpO2PR is one oxygen saturation (percent) and pulse rate (per minute) pair.
type SpO2PR struct{ SpO2, PR Number }

// PLXSpotCheck is the PLX Spot-Check Measurement characteristic (0x2A5E).
type PLXSpotCheck struct {
	Flags uint8
	SpO2PR
	Time           *DateTime
	Status         *uint16 // PLX measurement status bits
	DeviceStatus   *uint32 // PLX device and sensor status bits (24 bits)
	PulseAmplitude *Number // percent
	ClockNotSet    bool    // the device says its clock is not set
}

// DecodePLXSpotCheck decodes a PLX Spot-Check Measurement value.
func DecodePLXSpotCheck(b []byte) (PLXSpotCheck, error) {
	r := reader{b: b}
	var m PLXSpotCheck
	m.Flags = r.u8("flags")
	m.SpO2 = r.sfloat("SpO2")
	m.PR = r.sfloat("pulse rate")
	if m.Flags&0x01 != 0 {
		t := r.dateTime("time stamp")
		m.Time = &t
	}
	if m.Flags&0x02 != 0 {
		s := r.u16("measurement status")
		m.Status = &s
	}
	if m.Flags&0x04 != 0 {
		s := r.u24("device and sensor status")
		m.DeviceStatus = &s
	}
	if m.Flags&0x08 != 0 {
		p := r.sfloat("pulse amplitude index")
		m.PulseAmplitude = &p
	}
	m.ClockNotSet = m.Flags&0x10 != 0
	return m, r.end()
}

// PLXContinuous is the PLX Continuous Measurement characteristic (0x2A5F).
type PLXContinuous struct {
	Flags          uint8
	Normal         SpO2PR
	Fast, Slow     *SpO2PR
	Status         *uint16
	DeviceStatus   *uint32
	PulseAmplitude *Number
}

// DecodePLXContinuous decodes a PLX Continuous Measurement value.
func DecodePLXContinuous(b []byte) (PLXContinuous, error) {
	r := reader{b: b}
	var m PLXContinuous
	m.Flags = r.u8("flags")
	m.Normal = SpO2PR{r.sfloat("SpO2 (normal)"), r.sfloat("pulse rate (normal)")}
	if m.Flags&0x01 != 0 {
		m.Fast = &SpO2PR{r.sfloat("SpO2 (fast)"), r.sfloat("pulse rate (fast)")}
	}
	if m.Flags&0x02 != 0 {
		m.Slow = &SpO2PR{r.sfloat("SpO2 (slow)"), r.sfloat("pulse rate (slow)")}
	}
	if m.Flags&0x04 != 0 {
		s := r.u16("measurement status")
		m.Status = &s
	}
	if m.Flags&0x08 != 0 {
		s := r.u24("device and sensor status")
		m.DeviceStatus = &s
	}
	if m.Flags&0x10 != 0 {
		p := r.sfloat("pulse amplitude index")
		m.PulseAmplitude = &p
	}
	return m, r.end()
}

// Weight scale and body composition fields use this value for "measurement
// unsuccessful" (WSS §3.2.1.2, BCS §3.1.1.2).
const unsuccessful = 0xFFFF

// Weight is the Weight Measurement characteristic (0x2A9D). Weight and
// Height are the raw integers; Kilograms and Metres apply the resolution of
// the unit flag.
type Weight struct {
	Flags    uint8
	Imperial bool   // lb and inches, else kg and metres
	Raw      uint16 // 0.005 kg or 0.01 lb; 0xFFFF = measurement unsuccessful
	Time     *DateTime
	User     *uint8
	BMI      *uint16 // 0.1 kg/m²
	Height   *uint16 // 0.001 m or 0.1 in
}

// DecodeWeight decodes a Weight Measurement value.
func DecodeWeight(b []byte) (Weight, error) {
	r := reader{b: b}
	var m Weight
	m.Flags = r.u8("flags")
	m.Imperial = m.Flags&0x01 != 0
	m.Raw = r.u16("weight")
	if m.Flags&0x02 != 0 {
		t := r.dateTime("time stamp")
		m.Time = &t
	}
	if m.Flags&0x04 != 0 {
		u := r.u8("user id")
		m.User = &u
	}
	if m.Flags&0x08 != 0 {
		bmi, h := r.u16("BMI"), r.u16("height")
		m.BMI, m.Height = &bmi, &h
	}
	return m, r.end()
}

// BodyComposition is the Body Composition Measurement characteristic
// (0x2A9C). Mass fields are 0.005 kg or 0.01 lb; Height 0.001 m or 0.1 in.
type BodyComposition struct {
	Flags           uint16
	Imperial        bool
	BodyFat         uint16 // 0.1 %; 0xFFFF = measurement unsuccessful
	Time            *DateTime
	User            *uint8
	BasalMetabolism *uint16 // kJ
	MusclePercent   *uint16 // 0.1 %
	MuscleMass      *uint16
	FatFreeMass     *uint16
	SoftLeanMass    *uint16
	BodyWaterMass   *uint16
	Impedance       *uint16 // 0.1 ohm
	Weight          *uint16
	Height          *uint16
	MultiplePacket  bool // the measurement continues in another notification
}

// DecodeBodyComposition decodes a Body Composition Measurement value.
func DecodeBodyComposition(b []byte) (BodyComposition, error) {
	r := reader{b: b}
	var m BodyComposition
	m.Flags = r.u16("flags")
	m.Imperial = m.Flags&0x0001 != 0
	m.BodyFat = r.u16("body fat percentage")
	if m.Flags&0x0002 != 0 {
		t := r.dateTime("time stamp")
		m.Time = &t
	}
	if m.Flags&0x0004 != 0 {
		u := r.u8("user id")
		m.User = &u
	}
	opt := func(bit uint16, field string) *uint16 {
		if m.Flags&bit == 0 {
			return nil
		}
		v := r.u16(field)
		return &v
	}
	m.BasalMetabolism = opt(0x0008, "basal metabolism")
	m.MusclePercent = opt(0x0010, "muscle percentage")
	m.MuscleMass = opt(0x0020, "muscle mass")
	m.FatFreeMass = opt(0x0040, "fat free mass")
	m.SoftLeanMass = opt(0x0080, "soft lean mass")
	m.BodyWaterMass = opt(0x0100, "body water mass")
	m.Impedance = opt(0x0200, "impedance")
	m.Weight = opt(0x0400, "weight")
	m.Height = opt(0x0800, "height")
	m.MultiplePacket = m.Flags&0x1000 != 0
	return m, r.end()
}

// CGM sensor status annunciation bits (CGMS §3.1.1.5), as one 24-bit value:
// status octet in bits 0–7, cal/temp octet in 8–15, warning octet in 16–23.
const (
	CGMSessionStopped    = 1 << 0
	CGMBatteryLow        = 1 << 1
	CGMSensorTypeWrong   = 1 << 2
	CGMSensorMalfunction = 1 << 3
	CGMDeviceAlert       = 1 << 4
	CGMDeviceFault       = 1 << 5
	CGMTimeSyncRequired  = 1 << 8
	CGMCalNotAllowed     = 1 << 9
	CGMCalRecommended    = 1 << 10
	CGMCalRequired       = 1 << 11
	CGMTempTooHigh       = 1 << 12
	CGMTempTooLow        = 1 << 13
	CGMCalPending        = 1 << 14
	CGMBelowPatientLow   = 1 << 16
	CGMAbovePatientHigh  = 1 << 17
	CGMBelowHypo         = 1 << 18
	CGMAboveHyper        = 1 << 19
	CGMFallRateExceeded  = 1 << 20
	CGMRiseRateExceeded  = 1 << 21
	CGMBelowDeviceRange  = 1 << 22
	CGMAboveDeviceRange  = 1 << 23
)

// cgmInvalid are the annunciations after which the number is not a glucose
// reading of the patient.
const cgmInvalid = CGMSessionStopped | CGMSensorTypeWrong | CGMSensorMalfunction | CGMDeviceFault

// CGM is one record of the CGM Measurement characteristic (0x2AA7); one
// value may carry several records back to back.
type CGM struct {
	Size          uint8
	Flags         uint8
	Glucose       Number // mg/dL
	TimeOffset    uint16 // minutes since the session started
	Status        uint32 // CGM* bits of the octets present
	StatusPresent bool
	Trend         *Number // mg/dL/min
	Quality       *Number // percent
	CRC           *uint16 // E2E-CRC, checked when present
}

// DecodeCGM decodes a CGM Measurement value into its records.
func DecodeCGM(b []byte) ([]CGM, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("value is empty")
	}
	var out []CGM
	for off := 0; off < len(b); {
		size := int(b[off])
		if size < 6 || off+size > len(b) {
			return nil, fmt.Errorf("record %d: size %d does not fit the %d bytes left", len(out), size, len(b)-off)
		}
		rec, err := decodeCGMRecord(b[off : off+size])
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", len(out), err)
		}
		out = append(out, rec)
		off += size
	}
	return out, nil
}

func decodeCGMRecord(b []byte) (CGM, error) {
	r := reader{b: b}
	var m CGM
	m.Size = r.u8("size")
	m.Flags = r.u8("flags")
	m.Glucose = r.sfloat("glucose concentration")
	m.TimeOffset = r.u16("time offset")
	// The octets travel warning, cal/temp, status, as their flag bits 5, 6, 7
	// are listed.
	if m.Flags&0x20 != 0 {
		m.Status |= uint32(r.u8("warning octet")) << 16
		m.StatusPresent = true
	}
	if m.Flags&0x40 != 0 {
		m.Status |= uint32(r.u8("cal/temp octet")) << 8
		m.StatusPresent = true
	}
	if m.Flags&0x80 != 0 {
		m.Status |= uint32(r.u8("status octet"))
		m.StatusPresent = true
	}
	if m.Flags&0x01 != 0 {
		t := r.sfloat("trend")
		m.Trend = &t
	}
	if m.Flags&0x02 != 0 {
		q := r.sfloat("quality")
		m.Quality = &q
	}
	switch left := len(b) - r.off; {
	case r.err != nil:
		return m, r.err
	case left == 2:
		crc := r.u16("E2E-CRC")
		if want := crc16MCRF4XX(b[:len(b)-2]); crc != want {
			return m, fmt.Errorf("E2E-CRC is 0x%04x; the record's bytes give 0x%04x", crc, want)
		}
		m.CRC = &crc
	case left != 0:
		return m, fmt.Errorf("size %d does not match the fields the flags announce", len(b))
	}
	return m, r.end()
}

// crc16MCRF4XX is the E2E-CRC of CGMS: CRC-CCITT, reflected polynomial
// 0x8408, initial value 0xFFFF, no final XOR.
func crc16MCRF4XX(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x8408
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
