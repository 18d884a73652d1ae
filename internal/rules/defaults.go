package rules

import (
	"sort"
	"time"

	"github.com/tendhealth/tend/internal/codes"
)

// Care settings with built-in default rule sets.
const (
	SettingWard = "ward" // general ward: NEWS2 plus safety limits
	SettingHome = "home" // remote patient monitoring at home
	SettingICU  = "icu"  // continuous monitoring, tight limits, no NEWS2
)

// Settings lists the care settings.
func Settings() []string {
	s := []string{SettingWard, SettingHome, SettingICU}
	sort.Strings(s)
	return s
}

// IsSetting reports whether s is a known care setting.
func IsSetting(s string) bool {
	_, ok := defaults[s]
	return ok
}

// Defaults returns a copy of the built-in profile of a care setting.
func Defaults(setting string) (Profile, bool) {
	rs, ok := defaults[setting]
	if !ok {
		return Profile{}, false
	}
	return Profile{Rules: append([]Rule(nil), rs...)}, true
}

func f(v float64) *float64 { return &v }

func d(v time.Duration) Duration { return Duration(v) }

// Shared rules. The thresholds are conservative starting points for a
// clinical team to review, not clinical advice; every one can be overridden
// per setting and per patient except the mandatory urgent-low glucose.
var (
	// 55 mg/dL (3.0 mmol/L) is the level-2 hypoglycaemia line the
	// Nightscout and Dexcom urgent-low alarms use; it cannot be switched off.
	glucoseUrgentLow = []Rule{
		{ID: "glucose-urgent-low", Name: "Urgent low glucose", Kind: KindThreshold, Code: codes.CapillaryGlucose, Op: "<=", Value: 55, Clear: f(60), Priority: PriorityHigh, Mandatory: true},
		{ID: "cgm-urgent-low", Name: "Urgent low glucose (CGM)", Kind: KindThreshold, Code: codes.InterstitialGlucose, Op: "<=", Value: 55, Clear: f(60), Priority: PriorityHigh, Mandatory: true},
		{ID: "cgm-urgent-low-soon", Name: "Urgent low glucose predicted within 20 min", Kind: KindForecast, Code: codes.InterstitialGlucose, Value: 55, Window: d(20 * time.Minute), Priority: PriorityHigh},
		{ID: "glucose-low", Name: "Low glucose", Kind: KindThreshold, Code: codes.CapillaryGlucose, Op: "<", Value: 70, Clear: f(75), Priority: PriorityMedium},
		{ID: "cgm-low", Name: "Low glucose (CGM)", Kind: KindThreshold, Code: codes.InterstitialGlucose, Op: "<", Value: 70, Clear: f(75), For: d(10 * time.Minute), Priority: PriorityMedium},
		{ID: "cgm-high", Name: "High glucose (CGM)", Kind: KindThreshold, Code: codes.InterstitialGlucose, Op: ">", Value: 250, Clear: f(240), For: d(30 * time.Minute), Priority: PriorityLow},
		{ID: "cgm-falling-fast", Name: "Glucose falling fast", Kind: KindRate, Code: codes.InterstitialGlucose, Op: "<=", Value: -2, Window: d(5 * time.Minute), Priority: PriorityMedium},
		{ID: "cgm-rising-fast", Name: "Glucose rising fast", Kind: KindRate, Code: codes.InterstitialGlucose, Op: ">=", Value: 3, Window: d(5 * time.Minute), Priority: PriorityLow},
		{ID: "cgm-no-data", Name: "No CGM data", Kind: KindNoData, Code: codes.InterstitialGlucose, Window: d(20 * time.Minute), Priority: PriorityMedium},
	}
	deviceRules = []Rule{
		{ID: "battery-low", Name: "Device battery low", Kind: KindThreshold, Code: codes.Battery, Op: "<", Value: 15, Clear: f(20), Priority: PriorityLow, Category: CategoryTechnical},
		{ID: "sensor-off", Name: "Sensor off", Kind: KindThreshold, Code: codes.SensorOff, Op: ">=", Value: 1, Clear: f(1), Priority: PriorityMedium, Category: CategoryTechnical},
		{ID: "clock-skew", Name: "Device clock runs ahead", Kind: KindClockSkew, Window: d(2 * time.Minute), Priority: PriorityLow},
		{ID: "fall", Name: "Fall detected", Kind: KindEvent, Code: codes.Fall, Op: ">=", Value: 1, Priority: PriorityHigh},
		{ID: "panic", Name: "Panic button pressed", Kind: KindEvent, Code: codes.PanicButton, Op: ">=", Value: 1, Priority: PriorityHigh},
		{ID: "missed-dose", Name: "Dose missed", Kind: KindEvent, Code: codes.DoseMissed, Op: ">=", Value: 1, Priority: PriorityMedium},
	}
)

var defaults = map[string][]Rule{
	SettingWard: concat([]Rule{
		{ID: "news2", Name: "NEWS2", Kind: KindNEWS2, Scale: 1},
		{ID: "spo2-low", Name: "SpO2 low", Kind: KindThreshold, Code: codes.OxygenSaturation, Op: "<", Value: 90, Clear: f(92), For: d(60 * time.Second), Priority: PriorityMedium},
		{ID: "spo2-critical", Name: "SpO2 critically low", Kind: KindThreshold, Code: codes.OxygenSaturation, Op: "<", Value: 85, Clear: f(88), For: d(30 * time.Second), Priority: PriorityHigh},
		{ID: "hr-high", Name: "Heart rate high", Kind: KindThreshold, Code: codes.HeartRate, Op: ">", Value: 130, Clear: f(120), For: d(60 * time.Second), Priority: PriorityMedium},
		{ID: "hr-low", Name: "Heart rate low", Kind: KindThreshold, Code: codes.HeartRate, Op: "<", Value: 40, Clear: f(45), For: d(30 * time.Second), Priority: PriorityHigh},
		{ID: "sbp-low", Name: "Systolic blood pressure low", Kind: KindThreshold, Code: codes.SystolicBP, Op: "<", Value: 90, Clear: f(95), Priority: PriorityMedium},
		{ID: "spo2-no-data", Name: "No SpO2 data", Kind: KindNoData, Code: codes.OxygenSaturation, Window: d(2 * time.Minute), Priority: PriorityLow},
	}, glucoseUrgentLow, deviceRules),
	SettingHome: concat([]Rule{
		{ID: "spo2-low", Name: "SpO2 low", Kind: KindThreshold, Code: codes.OxygenSaturation, Op: "<", Value: 88, Clear: f(90), For: d(60 * time.Second), Priority: PriorityMedium},
		{ID: "sbp-high", Name: "Systolic blood pressure very high", Kind: KindThreshold, Code: codes.SystolicBP, Op: ">=", Value: 180, Clear: f(170), Priority: PriorityMedium},
		{ID: "sbp-low", Name: "Systolic blood pressure low", Kind: KindThreshold, Code: codes.SystolicBP, Op: "<", Value: 90, Clear: f(95), Priority: PriorityMedium},
		// Heart-failure decompensation: ≥ 2 kg in 3 days (ESC/AHA guidance
		// tells patients to call on such a gain).
		{ID: "weight-gain-3d", Name: "Weight gain of 2 kg or more in 3 days", Kind: KindChange, Code: codes.BodyWeight, Op: ">=", Value: 2, Window: d(72 * time.Hour), Priority: PriorityMedium},
		{ID: "weight-no-data", Name: "No weight for 2 days", Kind: KindNoData, Code: codes.BodyWeight, Window: d(48 * time.Hour), Priority: PriorityLow},
	}, glucoseUrgentLow, deviceRules),
	SettingICU: concat([]Rule{
		{ID: "spo2-low", Name: "SpO2 low", Kind: KindThreshold, Code: codes.OxygenSaturation, Op: "<", Value: 90, Clear: f(92), For: d(15 * time.Second), Priority: PriorityHigh},
		{ID: "hr-high", Name: "Heart rate high", Kind: KindThreshold, Code: codes.HeartRate, Op: ">", Value: 140, Clear: f(130), For: d(10 * time.Second), Priority: PriorityHigh},
		{ID: "hr-low", Name: "Heart rate low", Kind: KindThreshold, Code: codes.HeartRate, Op: "<", Value: 45, Clear: f(50), For: d(10 * time.Second), Priority: PriorityHigh},
		{ID: "rr-high", Name: "Respiratory rate high", Kind: KindThreshold, Code: codes.RespiratoryRate, Op: ">", Value: 30, Clear: f(27), For: d(30 * time.Second), Priority: PriorityMedium},
		{ID: "sbp-low", Name: "Systolic blood pressure low", Kind: KindThreshold, Code: codes.SystolicBP, Op: "<", Value: 90, Clear: f(95), Priority: PriorityHigh},
		{ID: "lead-off", Name: "ECG lead off", Kind: KindThreshold, Code: codes.LeadOff, Op: ">=", Value: 1, Clear: f(1), For: d(10 * time.Second), Priority: PriorityMedium, Category: CategoryTechnical},
		{ID: "hr-no-data", Name: "No heart rate data", Kind: KindNoData, Code: codes.HeartRate, Window: d(30 * time.Second), Priority: PriorityMedium},
		{ID: "spo2-no-data", Name: "No SpO2 data", Kind: KindNoData, Code: codes.OxygenSaturation, Window: d(30 * time.Second), Priority: PriorityMedium},
	}, glucoseUrgentLow, deviceRules),
}

func concat(parts ...[]Rule) []Rule {
	var out []Rule
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
