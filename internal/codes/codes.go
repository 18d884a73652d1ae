// Package codes is the table of vital signs Tend understands: for each one
// its LOINC code, IEEE 11073-10101 MDC term, canonical UCUM unit, the aliases
// devices may use, the physiologically possible range, and conversion from
// the other units devices send.
//
// The table is fixed at build time and never modified, so every function here
// is safe for concurrent use.
package codes

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Code systems of Code.System.
const (
	SystemLOINC  = "http://loinc.org"
	SystemSNOMED = "http://snomed.info/sct"
	// SystemTend holds device-status and event signals that LOINC does not
	// name (battery, sensor off, fall, panic button, ACVPU as a number).
	SystemTend = "urn:tend:code"
)

// Code describes one vital sign or device signal.
type Code struct {
	LOINC   string // the code: a LOINC code unless System says otherwise
	System  string // code system URI; "" means LOINC
	Display string // LOINC-style display name
	MDC     string // IEEE 11073-10101 reference id; "" when none is verified
	MDCCode int    // MDC numeric code (partition<<16 | term code); 0 when none
	Unit    string // canonical UCUM unit values are stored in
	// Aliases are the other names a device may use in place of the LOINC
	// code. Matching is case-insensitive.
	Aliases []string
	// Min and Max bound the physiologically possible values in Unit; a value
	// outside them is a device or transmission fault, not a patient state, and
	// is rejected rather than stored and alarmed on.
	Min, Max float64
	// Components lists the LOINC codes of the parts of a panel, in order;
	// a panel carries no value of its own.
	Components []string
}

// IsPanel reports whether c is a panel whose values live in its components.
func (c Code) IsPanel() bool { return len(c.Components) > 0 }

// LOINC codes used by other packages by name.
const (
	HeartRate           = "8867-4"
	PulseRate           = "8889-8"
	OxygenSaturation    = "59408-5"
	RespiratoryRate     = "9279-1"
	BodyTemperature     = "8310-5"
	BloodPressurePanel  = "85354-9"
	SystolicBP          = "8480-6"
	DiastolicBP         = "8462-4"
	MeanBP              = "8478-0"
	BodyWeight          = "29463-7"
	BodyHeight          = "8302-2"
	BMI                 = "39156-5"
	CapillaryGlucose    = "41653-7"
	InterstitialGlucose = "99504-3"
	Steps               = "55423-8"
	InhaledO2Flow       = "3151-8"
	BodyFat             = "41982-0"
	HbA1c               = "4548-4"
	// NEWS2 total score as the NHS NEWS2 FHIR guidance codes it (SNOMED CT).
	NEWS2Score = "1104051000000101"
	// Consciousness on the ACVPU scale as a number: 0 alert, 1 new confusion,
	// 2 voice, 3 pain, 4 unresponsive (entered by staff).
	ACVPU = "acvpu"
	// Device status and events; a flag is 1 when set, 0 when cleared.
	Battery     = "battery"
	SensorOff   = "sensor-off"
	LeadOff     = "lead-off"
	Fall        = "fall"
	PanicButton = "panic"
	// Medication events of a pill dispenser: a scheduled dose was taken
	// from it, or its window passed without the dose being taken.
	DoseTaken  = "dose-taken"
	DoseMissed = "dose-missed"
	// Measurement-condition flags a device reports with a reading (set only,
	// at the reading's time): they qualify the reading beside them.
	BodyMovement     = "body-movement"
	CuffLoose        = "cuff-loose"
	IrregularPulse   = "irregular-pulse"
	ImproperPosition = "improper-position"
	DeviceFault      = "device-fault"
)

// SystemURI is the code system of c.
func (c Code) SystemURI() string {
	if c.System == "" {
		return SystemLOINC
	}
	return c.System
}

// table is the code table. MDC numeric codes are partition*65536 + term
// code, with SCADA = partition 2 (e.g. MDC_PULS_OXIM_SAT_O2 = 2*65536+19384).
var table = []Code{
	{LOINC: HeartRate, Display: "Heart rate", MDC: "MDC_ECG_HEART_RATE", MDCCode: 147842, Unit: "/min",
		Aliases: []string{"hr", "heart_rate", "heartrate"}, Min: 0, Max: 350},
	{LOINC: PulseRate, Display: "Heart rate by Pulse oximetry", MDC: "MDC_PULS_OXIM_PULS_RATE", MDCCode: 149530, Unit: "/min",
		Aliases: []string{"pr", "pulse", "pulse_rate"}, Min: 0, Max: 350},
	// 2708-6 (arterial O2 saturation) is accepted as an alias because the
	// FHIR R4 vital-signs profile lists it next to 59408-5 for SpO2.
	{LOINC: OxygenSaturation, Display: "Oxygen saturation in Arterial blood by Pulse oximetry", MDC: "MDC_PULS_OXIM_SAT_O2", MDCCode: 150456, Unit: "%",
		Aliases: []string{"spo2", "sat_o2", "oxygen_saturation", "2708-6"}, Min: 0, Max: 100},
	{LOINC: RespiratoryRate, Display: "Respiratory rate", MDC: "MDC_RESP_RATE", MDCCode: 151562, Unit: "/min",
		Aliases: []string{"rr", "resp", "resp_rate", "respiratory_rate"}, Min: 0, Max: 150},
	// 10–50 °C: survived accidental hypothermia goes below 14 °C; nothing
	// measured on a living body exceeds 50 °C.
	{LOINC: BodyTemperature, Display: "Body temperature", MDC: "MDC_TEMP_BODY", MDCCode: 150364, Unit: "Cel",
		Aliases: []string{"temp", "temperature", "body_temp", "body_temperature"}, Min: 10, Max: 50},
	{LOINC: BloodPressurePanel, Display: "Blood pressure panel with all children optional", MDC: "MDC_PRESS_BLD_NONINV", MDCCode: 150020, Unit: "mm[Hg]",
		Aliases: []string{"bp", "blood_pressure", "nibp"}, Components: []string{SystolicBP, DiastolicBP, MeanBP}},
	{LOINC: SystolicBP, Display: "Systolic blood pressure", MDC: "MDC_PRESS_BLD_NONINV_SYS", MDCCode: 150021, Unit: "mm[Hg]",
		Aliases: []string{"sys", "systolic", "bp_sys"}, Min: 10, Max: 350},
	{LOINC: DiastolicBP, Display: "Diastolic blood pressure", MDC: "MDC_PRESS_BLD_NONINV_DIA", MDCCode: 150022, Unit: "mm[Hg]",
		Aliases: []string{"dia", "diastolic", "bp_dia"}, Min: 5, Max: 300},
	{LOINC: MeanBP, Display: "Mean blood pressure", MDC: "MDC_PRESS_BLD_NONINV_MEAN", MDCCode: 150023, Unit: "mm[Hg]",
		Aliases: []string{"map", "mean", "bp_mean"}, Min: 5, Max: 300},
	// 0.2 kg covers extreme prematurity; 700 kg exceeds the heaviest recorded.
	{LOINC: BodyWeight, Display: "Body weight", MDC: "MDC_MASS_BODY_ACTUAL", MDCCode: 188736, Unit: "kg",
		Aliases: []string{"weight", "body_weight", "wt"}, Min: 0.2, Max: 700},
	{LOINC: BodyHeight, Display: "Body height", MDC: "MDC_LEN_BODY_ACTUAL", MDCCode: 188740, Unit: "cm",
		Aliases: []string{"height", "body_height", "ht"}, Min: 15, Max: 300},
	{LOINC: BMI, Display: "Body mass index (BMI) [Ratio]", MDC: "MDC_RATIO_MASS_BODY_LEN_SQ", MDCCode: 188752, Unit: "kg/m2",
		Aliases: []string{"bmi"}, Min: 5, Max: 250},
	// Glucose ranges reach 3000 mg/dL: hyperosmolar states above 2000 mg/dL
	// have been survived; meters saturate well below that.
	{LOINC: CapillaryGlucose, Display: "Glucose [Mass/volume] in Capillary blood by Glucometer", MDC: "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", MDCCode: 160368, Unit: "mg/dL",
		Aliases: []string{"glucose", "bg", "blood_glucose", "smbg"}, Min: 0, Max: 3000},
	// MDC_CONC_GLU_ISF (term 29140) is the 11073-10425 CGM interstitial
	// fluid glucose term.
	{LOINC: InterstitialGlucose, Display: "Glucose [Mass/volume] in Interstitial fluid", MDC: "MDC_CONC_GLU_ISF", MDCCode: 160212, Unit: "mg/dL",
		Aliases: []string{"cgm", "isf_glucose", "interstitial_glucose", "cgm_glucose"}, Min: 0, Max: 3000},
	// IEEE 11073-10441 names a step-count term (MDC_HF_STEPCOUNT in some
	// lists) but its numeric code could not be verified against the
	// standard, so no MDC term is claimed rather than a guessed one.
	{LOINC: Steps, Display: "Number of steps in unspecified time Pedometer", Unit: "{steps}",
		Aliases: []string{"steps", "step_count"}, Min: 0, Max: 1_000_000},
	// Supplemental oxygen: a flow above 0 means "on oxygen" for NEWS2.
	{LOINC: InhaledO2Flow, Display: "Inhaled oxygen flow rate", Unit: "L/min",
		Aliases: []string{"o2_flow", "oxygen_flow"}, Min: 0, Max: 70},
	// Body fat and HbA1c arrive from Bluetooth body composition scales and
	// glucose meters; no MDC term is claimed for them until verified.
	{LOINC: BodyFat, Display: "Percentage of body fat Measured", Unit: "%",
		Aliases: []string{"body_fat", "fat_percent"}, Min: 0, Max: 100},
	// HbA1c below 2 % or above 25 % has not been reported in a living patient.
	{LOINC: HbA1c, Display: "Hemoglobin A1c/Hemoglobin.total in Blood", Unit: "%",
		Aliases: []string{"hba1c", "a1c"}, Min: 2, Max: 25},
	{LOINC: NEWS2Score, System: SystemSNOMED, Display: "Royal College of Physicians NEWS2 (National Early Warning Score 2) total score", Unit: "{score}",
		Aliases: []string{"news2"}, Min: 0, Max: 20},
	{LOINC: ACVPU, System: SystemTend, Display: "Level of consciousness (ACVPU: 0 A, 1 C, 2 V, 3 P, 4 U)", Unit: "{score}",
		Aliases: []string{"consciousness"}, Min: 0, Max: 4},
	{LOINC: Battery, System: SystemTend, Display: "Device battery charge", Unit: "%",
		Aliases: []string{"battery_level", "batt"}, Min: 0, Max: 100},
	{LOINC: SensorOff, System: SystemTend, Display: "Sensor off (1) or on (0)", Unit: "{flag}",
		Aliases: []string{"sensor_off"}, Min: 0, Max: 1},
	{LOINC: LeadOff, System: SystemTend, Display: "ECG lead off (1) or connected (0)", Unit: "{flag}",
		Aliases: []string{"lead_off"}, Min: 0, Max: 1},
	{LOINC: Fall, System: SystemTend, Display: "Fall detected (1)", Unit: "{flag}",
		Aliases: []string{"fall_detected"}, Min: 0, Max: 1},
	{LOINC: PanicButton, System: SystemTend, Display: "Panic button pressed (1)", Unit: "{flag}",
		Aliases: []string{"panic_button", "sos"}, Min: 0, Max: 1},
	{LOINC: DoseTaken, System: SystemTend, Display: "Scheduled dose taken (1)", Unit: "{flag}",
		Aliases: []string{"dose_taken"}, Min: 0, Max: 1},
	{LOINC: DoseMissed, System: SystemTend, Display: "Scheduled dose missed (1)", Unit: "{flag}",
		Aliases: []string{"dose_missed", "missed_dose"}, Min: 0, Max: 1},
	{LOINC: BodyMovement, System: SystemTend, Display: "Body movement during the measurement (1)", Unit: "{flag}",
		Aliases: []string{"body_movement"}, Min: 0, Max: 1},
	{LOINC: CuffLoose, System: SystemTend, Display: "Blood pressure cuff too loose (1)", Unit: "{flag}",
		Aliases: []string{"cuff_loose"}, Min: 0, Max: 1},
	{LOINC: IrregularPulse, System: SystemTend, Display: "Irregular pulse detected (1)", Unit: "{flag}",
		Aliases: []string{"irregular_pulse"}, Min: 0, Max: 1},
	{LOINC: ImproperPosition, System: SystemTend, Display: "Improper measurement position (1)", Unit: "{flag}",
		Aliases: []string{"improper_position"}, Min: 0, Max: 1},
	{LOINC: DeviceFault, System: SystemTend, Display: "Device or sensor fault; the reading beside it was not taken (1)", Unit: "{flag}",
		Aliases: []string{"device_fault", "sensor_fault"}, Min: 0, Max: 1},
}

var (
	byLOINC = map[string]int{}
	byName  = map[string]int{} // lower-cased LOINC, alias, MDC ref id, MDC number
)

func init() {
	add := func(key string, i int) {
		key = strings.ToLower(key)
		if j, dup := byName[key]; dup && j != i {
			panic(fmt.Sprintf("codes: name %q used by %s and %s", key, table[j].LOINC, table[i].LOINC))
		}
		byName[key] = i
	}
	for i, c := range table {
		byLOINC[c.LOINC] = i
		add(c.LOINC, i)
		for _, a := range c.Aliases {
			add(a, i)
		}
		if c.MDC != "" {
			add(c.MDC, i)
			add(strconv.Itoa(c.MDCCode), i)
		}
		if _, ok := dimensions[c.Unit]; !ok {
			panic(fmt.Sprintf("codes: %s has unit %q without conversions", c.LOINC, c.Unit))
		}
	}
}

// Lookup finds a code by LOINC code, alias, MDC reference id or MDC numeric
// code, ignoring case and surrounding space.
func Lookup(name string) (Code, bool) {
	i, ok := byName[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		return Code{}, false
	}
	return table[i], true
}

// ByLOINC finds a code by its primary LOINC code only.
func ByLOINC(code string) (Code, bool) {
	i, ok := byLOINC[code]
	if !ok {
		return Code{}, false
	}
	return table[i], true
}

// All returns a copy of the table in its documented order.
func All() []Code {
	out := make([]Code, len(table))
	copy(out, table)
	return out
}

// MarkdownTable renders the table for the README.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Code | System | Name | MDC | MDC code | Unit (UCUM) | Aliases | Accepted range |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, c := range table {
		mdc, num := "—", "—"
		if c.MDC != "" {
			mdc, num = "`"+c.MDC+"`", strconv.Itoa(c.MDCCode)
		}
		aliases := make([]string, len(c.Aliases))
		for i, a := range c.Aliases {
			aliases[i] = "`" + a + "`"
		}
		rng := fmt.Sprintf("%s–%s", fmtNum(c.Min), fmtNum(c.Max))
		if c.IsPanel() {
			rng = "panel: " + strings.Join(c.Components, ", ")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | `%s` | %s | %s |\n",
			c.LOINC, systemName[c.SystemURI()], c.Display, mdc, num, c.Unit, strings.Join(aliases, " "), rng)
	}
	b.WriteString("\nAccepted units per canonical unit (values are converted on ingest):\n\n")
	b.WriteString("| Canonical | Also accepted |\n|---|---|\n")
	canon := make([]string, 0, len(dimensions))
	for u := range dimensions {
		canon = append(canon, u)
	}
	sort.Strings(canon)
	for _, u := range canon {
		var alts []string
		for name := range dimensions[u] {
			if name != u {
				alts = append(alts, "`"+name+"`")
			}
		}
		sort.Strings(alts)
		fmt.Fprintf(&b, "| `%s` | %s |\n", u, strings.Join(alts, " "))
	}
	return b.String()
}

var systemName = map[string]string{SystemLOINC: "LOINC", SystemSNOMED: "SNOMED CT", SystemTend: "Tend (`urn:tend:code`)"}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// conversion maps a value in some unit to the canonical unit.
type conversion func(float64) float64

func identity(v float64) float64 { return v }
func scale(k float64) conversion { return func(v float64) float64 { return v * k } }

// Conversion factors.
const (
	mmHgPerKPa    = 7.50062    // 1 kPa = 7.50062 mm[Hg]
	kgPerLb       = 0.45359237 // international avoirdupois pound, exact
	cmPerInch     = 2.54       // international inch, exact
	mgdLPerMmolL  = 18.0182    // glucose, molar mass 180.16 g/mol
	kelvinOffset  = 273.15
	fahrenheitOff = 32.0
)

// dimensions maps each canonical unit to the units accepted for it (UCUM
// and SenML spellings, plus common device spellings). Unit matching is
// case-sensitive, as UCUM is ("Mg" is a megagram).
var dimensions = map[string]map[string]conversion{
	"/min": {
		"/min": identity, "1/min": identity, "{beats}/min": identity, "{beat}/min": identity,
		"beat/min": identity, "beats/min": identity, "bpm": identity, "{breaths}/min": identity,
		"breaths/min": identity, "/s": scale(60), "1/s": scale(60), "Hz": scale(60),
	},
	"%": {
		"%": identity,
		// SenML "/" and UCUM "1" are ratios 0..1.
		"/": scale(100), "1": scale(100),
	},
	"Cel": {
		"Cel": identity, "degC": identity, "°C": identity,
		"[degF]": fahrenheit, "degF": fahrenheit, "°F": fahrenheit,
		"K": func(v float64) float64 { return v - kelvinOffset },
	},
	"mm[Hg]": {
		"mm[Hg]": identity, "mmHg": identity, "kPa": scale(mmHgPerKPa), "Pa": scale(mmHgPerKPa / 1000),
	},
	"kg": {
		"kg": identity, "g": scale(0.001), "[lb_av]": scale(kgPerLb), "lb": scale(kgPerLb), "lbs": scale(kgPerLb),
	},
	"cm": {
		"cm": identity, "m": scale(100), "mm": scale(0.1), "[in_i]": scale(cmPerInch), "in": scale(cmPerInch),
	},
	"kg/m2": {
		"kg/m2": identity, "kg/m^2": identity,
	},
	"mg/dL": {
		"mg/dL": identity, "mg/dl": identity, "mmol/L": scale(mgdLPerMmolL), "mmol/l": scale(mgdLPerMmolL),
	},
	"{steps}": {
		"{steps}": identity, "steps": identity, "count": identity, "{count}": identity,
	},
	"L/min":   {"L/min": identity, "l/min": identity},
	"{score}": {"{score}": identity, "{ScoreOf}": identity, "1": identity},
	"{flag}":  {"{flag}": identity, "1": identity, "/": identity},
}

func fahrenheit(f float64) float64 { return (f - fahrenheitOff) * 5 / 9 }

// Convert converts value from fromUnit to c's canonical unit. An empty
// fromUnit means the value is already canonical. Converted values are
// rounded to 6 decimal places so that binary floating-point noise
// (37.00000000000001) does not reach stored records and FHIR output; that is
// far below any instrument's resolution.
func Convert(value float64, fromUnit string, c Code) (float64, error) {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return 0, fmt.Errorf("value for %s is not a finite number", c.LOINC)
	}
	units, ok := dimensions[c.Unit]
	if !ok {
		return 0, fmt.Errorf("code %s has no unit conversions", c.LOINC)
	}
	if fromUnit == "" || fromUnit == c.Unit {
		return value, nil
	}
	conv, ok := units[fromUnit]
	if !ok {
		return 0, fmt.Errorf("unit %q is not accepted for %s (%s); use %q", clip(fromUnit), c.LOINC, c.Display, c.Unit)
	}
	v := conv(value)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("value for %s overflows when converted from %q", c.LOINC, clip(fromUnit))
	}
	r := math.Round(v*1e6) / 1e6
	if math.IsInf(r, 0) { // v*1e6 overflowed; v is already far from any fraction
		r = v
	}
	return r, nil
}

// clip keeps echoed input short in error messages.
func clip(s string) string {
	const max = 32
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
