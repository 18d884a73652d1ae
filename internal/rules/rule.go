// Package rules is the clinical rule engine: rule definitions, their
// validation, the default rule sets per care setting, and the evaluator that
// sees every reading of a patient in reading-time order and says when an
// alarm condition starts, changes or clears.
//
// The engine is deterministic: its output depends only on the readings it
// is given, the rules, and the times passed to Tick. It does no I/O and
// reads no clock, so a scenario test can drive it with a script and a
// restart can rebuild it by replaying the stream from a snapshot. What an
// alarm episode is (acknowledgement, latching, escalation, notification)
// belongs to package alarm; this package only reports conditions.
package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/codes"
)

// Priority of an alarm (IEC 60601-1-8 names three).
type Priority string

// Priorities, lowest first.
const (
	PriorityLow    Priority = "low"
	PriorityMedium Priority = "medium"
	PriorityHigh   Priority = "high"
)

// Rank orders priorities: 0 none, 1 low, 2 medium, 3 high.
func (p Priority) Rank() int {
	switch p {
	case PriorityLow:
		return 1
	case PriorityMedium:
		return 2
	case PriorityHigh:
		return 3
	}
	return 0
}

// Category says who an alarm is for: clinical alarms are about the patient,
// technical ones about the equipment or data, events are things that
// happened (a fall, a panic button).
type Category string

// Categories.
const (
	CategoryClinical  Category = "clinical"
	CategoryTechnical Category = "technical"
	CategoryEvent     Category = "event"
)

// Kind is what a rule computes.
type Kind string

// Rule kinds.
const (
	// Threshold: value Op Value held for For; clears past Clear (hysteresis).
	KindThreshold Kind = "threshold"
	// Rate: change per minute against the reading about Window earlier.
	KindRate Kind = "rate"
	// Change: latest value minus the lowest (Value > 0) or highest
	// (Value < 0) value of the last Window, e.g. weight gain in 3 days.
	KindChange Kind = "change"
	// NEWS2: the early-warning score from the latest vital signs.
	KindNEWS2 Kind = "news2"
	// Forecast: glucose predicted (AR2) below Value within Window.
	KindForecast Kind = "forecast"
	// NoData: a signal (device and code) silent for longer than Window.
	KindNoData Kind = "no_data"
	// ClockSkew: a device's reading times run ahead of the server's receive
	// times by more than Window.
	KindClockSkew Kind = "clock_skew"
	// Event: a flag reading (fall, panic button) of at least Value.
	KindEvent Kind = "event"
)

// Duration is a time.Duration written as "60s", "5m", "72h" in JSON.
type Duration time.Duration

// MarshalJSON writes the Go duration syntax.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "90s"-style strings (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration must be a string such as \"60s\"")
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: use a form such as 60s, 5m or 72h", s)
	}
	*d = Duration(v)
	return nil
}

// Rule is one alarm rule. Values are in the canonical unit of Code (see
// package codes); rates are per minute.
type Rule struct {
	ID       string   `json:"id"`
	Name     string   `json:"name,omitempty"`
	Kind     Kind     `json:"kind"`
	Code     string   `json:"code,omitempty"`
	Op       string   `json:"op,omitempty"` // <, <=, >, >=
	Value    float64  `json:"value"`
	Clear    *float64 `json:"clear,omitempty"`  // hysteresis: the condition ends only past this value
	For      Duration `json:"for,omitempty"`    // how long the condition must hold (reading time)
	Window   Duration `json:"window,omitempty"` // look-back, horizon or silence interval, per kind
	Priority Priority `json:"priority,omitempty"`
	Category Category `json:"category,omitempty"` // default from the kind
	// Latching keeps an alarm active after its condition clears until
	// someone acknowledges it; default true for high priority and events.
	Latching *bool `json:"latching,omitempty"`
	// Mandatory rules cannot be disabled or changed by overrides (urgent
	// low glucose).
	Mandatory bool `json:"mandatory,omitempty"`
	Disabled  bool `json:"disabled,omitempty"`
	// Scale is the NEWS2 SpO2 scale (1, or 2 for hypercapnic respiratory
	// failure).
	Scale int `json:"scale,omitempty"`
}

// IsLatching reports whether an episode of r stays active after its
// condition clears until acknowledged.
func (r Rule) IsLatching() bool { return r.latchingAt(r.Priority) }

// latchingAt is IsLatching for an alarm raised at priority p (a NEWS2 rule
// has no fixed priority).
func (r Rule) latchingAt(p Priority) bool {
	if r.Latching != nil {
		return *r.Latching
	}
	return p == PriorityHigh || r.Kind == KindEvent
}

// CategoryOf is the rule's category, defaulted from its kind.
func (r Rule) CategoryOf() Category {
	if r.Category != "" {
		return r.Category
	}
	switch r.Kind {
	case KindNoData, KindClockSkew:
		return CategoryTechnical
	case KindEvent:
		return CategoryEvent
	}
	return CategoryClinical
}

// clearValue is the hysteresis bound, defaulting to the threshold itself.
func (r Rule) clearValue() float64 {
	if r.Clear != nil {
		return *r.Clear
	}
	return r.Value
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// Limits on rule definitions.
const (
	maxFor      = 24 * time.Hour
	maxWindow   = 31 * 24 * time.Hour
	minNoData   = 10 * time.Second
	MaxRules    = 200 // per profile
	maxNameSize = 200
)

// Validate checks a rule on its own; the error text is for the API caller.
func (r Rule) Validate() error {
	if !idPattern.MatchString(r.ID) {
		return fmt.Errorf("rule id %q: use 1-64 lowercase letters, digits and dashes", clip(r.ID))
	}
	if len(r.Name) > maxNameSize {
		return fmt.Errorf("rule %s: name longer than %d bytes", r.ID, maxNameSize)
	}
	if r.Disabled && r.Kind == "" {
		return nil // a bare override that switches a default rule off
	}
	switch r.Priority {
	case PriorityLow, PriorityMedium, PriorityHigh:
	case "":
		if r.Kind != KindNEWS2 { // NEWS2 takes its priority from the band
			return fmt.Errorf("rule %s: priority is required (high, medium or low)", r.ID)
		}
	default:
		return fmt.Errorf("rule %s: priority %q is not high, medium or low", r.ID, clip(string(r.Priority)))
	}
	switch r.Category {
	case "", CategoryClinical, CategoryTechnical, CategoryEvent:
	default:
		return fmt.Errorf("rule %s: category %q is not clinical, technical or event", r.ID, clip(string(r.Category)))
	}
	if r.For < 0 || time.Duration(r.For) > maxFor {
		return fmt.Errorf("rule %s: for must be between 0 and %s", r.ID, maxFor)
	}
	if r.Window < 0 || time.Duration(r.Window) > maxWindow {
		return fmt.Errorf("rule %s: window must be between 0 and %s", r.ID, maxWindow)
	}
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || (r.Clear != nil && (math.IsNaN(*r.Clear) || math.IsInf(*r.Clear, 0))) {
		return fmt.Errorf("rule %s: value and clear must be finite numbers", r.ID)
	}
	switch r.Kind {
	case KindThreshold, KindEvent:
		c, err := r.signal()
		if err != nil {
			return err
		}
		if err := r.checkOp(); err != nil {
			return err
		}
		if r.Value < c.Min || r.Value > c.Max {
			return fmt.Errorf("rule %s: threshold %g %s is outside what %s can measure (%g–%g)",
				r.ID, r.Value, c.Unit, c.Display, c.Min, c.Max)
		}
		if r.Clear != nil {
			if *r.Clear < c.Min || *r.Clear > c.Max {
				return fmt.Errorf("rule %s: clear %g is outside what %s can measure (%g–%g)", r.ID, *r.Clear, c.Display, c.Min, c.Max)
			}
			if err := r.checkClearSide(); err != nil {
				return err
			}
		}
		if !r.canFire(c) {
			return fmt.Errorf("rule %s: %s %s %g can never be true for %s (%g–%g)", r.ID, c.LOINC, r.Op, r.Value, c.Display, c.Min, c.Max)
		}
	case KindRate, KindChange:
		if _, err := r.signal(); err != nil {
			return err
		}
		if err := r.checkOp(); err != nil {
			return err
		}
		if r.Kind == KindChange && r.Window <= 0 {
			return fmt.Errorf("rule %s: a change rule needs a window (e.g. \"72h\")", r.ID)
		}
		if r.Kind == KindChange && r.Value == 0 {
			return fmt.Errorf("rule %s: a change rule needs a non-zero value (positive for a rise, negative for a fall)", r.ID)
		}
		if r.Clear != nil {
			if err := r.checkClearSide(); err != nil {
				return err
			}
		}
	case KindNEWS2:
		if r.Scale != 0 && r.Scale != 1 && r.Scale != 2 {
			return fmt.Errorf("rule %s: NEWS2 scale must be 1 or 2", r.ID)
		}
	case KindForecast:
		if r.Code != "" && !isGlucose(r.Code) {
			return fmt.Errorf("rule %s: forecasts are made for glucose (%s or %s)", r.ID, codes.CapillaryGlucose, codes.InterstitialGlucose)
		}
		if r.Value < 20 || r.Value > 400 {
			return fmt.Errorf("rule %s: forecast threshold %g mg/dL is outside 20–400", r.ID, r.Value)
		}
		if r.Window < 0 || time.Duration(r.Window) > time.Hour {
			return fmt.Errorf("rule %s: forecast horizon must be at most 1h", r.ID)
		}
	case KindNoData:
		if r.Code != "" {
			if _, err := r.signal(); err != nil {
				return err
			}
		}
		if time.Duration(r.Window) < minNoData {
			return fmt.Errorf("rule %s: a no-data rule needs a window of at least %s", r.ID, minNoData)
		}
	case KindClockSkew:
		if time.Duration(r.Window) < 5*time.Second {
			return fmt.Errorf("rule %s: a clock-skew rule needs a window of at least 5s", r.ID)
		}
	case "":
		return fmt.Errorf("rule %s: kind is required (%s)", r.ID, kindList)
	default:
		return fmt.Errorf("rule %s: unknown kind %q (%s)", r.ID, clip(string(r.Kind)), kindList)
	}
	return nil
}

const kindList = "threshold, rate, change, news2, forecast, no_data, clock_skew, event"

func (r Rule) signal() (codes.Code, error) {
	if r.Code == "" {
		return codes.Code{}, fmt.Errorf("rule %s: code is required", r.ID)
	}
	c, ok := codes.Lookup(r.Code)
	if !ok {
		return codes.Code{}, fmt.Errorf("rule %s: unknown code %q", r.ID, clip(r.Code))
	}
	if c.IsPanel() {
		return codes.Code{}, fmt.Errorf("rule %s: %s is a panel; use one of its parts (%s)", r.ID, c.LOINC, strings.Join(c.Components, ", "))
	}
	return c, nil
}

func (r Rule) checkOp() error {
	switch r.Op {
	case "<", "<=", ">", ">=":
		return nil
	case "":
		return fmt.Errorf("rule %s: op is required (<, <=, > or >=)", r.ID)
	}
	return fmt.Errorf("rule %s: op %q is not <, <=, > or >=", r.ID, clip(r.Op))
}

// checkClearSide: hysteresis must lie on the normal side of the threshold,
// or the alarm would clear while its condition still holds.
func (r Rule) checkClearSide() error {
	c := *r.Clear
	switch r.Op {
	case "<", "<=":
		if c < r.Value {
			return fmt.Errorf("rule %s: clear %g must not be below the threshold %g for op %s", r.ID, c, r.Value, r.Op)
		}
	case ">", ">=":
		if c > r.Value {
			return fmt.Errorf("rule %s: clear %g must not be above the threshold %g for op %s", r.ID, c, r.Value, r.Op)
		}
	}
	return nil
}

func (r Rule) canFire(c codes.Code) bool {
	switch r.Op {
	case "<":
		return r.Value > c.Min
	case ">":
		return r.Value < c.Max
	}
	return true
}

func compare(v float64, op string, t float64) bool {
	switch op {
	case "<":
		return v < t
	case "<=":
		return v <= t
	case ">":
		return v > t
	case ">=":
		return v >= t
	}
	return false
}

func isGlucose(code string) bool {
	return code == codes.CapillaryGlucose || code == codes.InterstitialGlucose
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Profile is a versioned rule set: the defaults of a care setting, or one
// patient's overrides on top of their setting.
type Profile struct {
	// Setting, on a patient profile, names the care setting whose defaults
	// apply (ward, home, icu); "" means ward.
	Setting string `json:"setting,omitempty"`
	Rules   []Rule `json:"rules"`
}

// Validate checks every rule and that ids are unique.
func (p Profile) Validate() error {
	if len(p.Rules) > MaxRules {
		return fmt.Errorf("at most %d rules per profile", MaxRules)
	}
	if p.Setting != "" && !IsSetting(p.Setting) {
		return fmt.Errorf("unknown care setting %q (%s)", clip(p.Setting), strings.Join(Settings(), ", "))
	}
	seen := map[string]bool{}
	var errs []error
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Code != "" {
			if c, ok := codes.Lookup(r.Code); ok {
				r.Code = c.LOINC // aliases are stored as the code itself
			}
		}
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[r.ID] {
			errs = append(errs, fmt.Errorf("rule id %s is used twice", r.ID))
		}
		seen[r.ID] = true
	}
	return errors.Join(errs...)
}

// Effective merges a patient's overrides onto the defaults of a care
// setting: a rule with the id of a default replaces it (or switches it off
// with "disabled": true); other rules are added. Mandatory defaults cannot
// be replaced or disabled.
func Effective(defaults, patient Profile) ([]Rule, error) {
	byID := map[string]int{}
	out := make([]Rule, 0, len(defaults.Rules)+len(patient.Rules))
	for _, r := range defaults.Rules {
		byID[r.ID] = len(out)
		out = append(out, r)
	}
	for _, r := range patient.Rules {
		i, ok := byID[r.ID]
		if !ok {
			if r.Kind == "" {
				return nil, fmt.Errorf("rule %s: there is no default rule with that id to switch off", r.ID)
			}
			byID[r.ID] = len(out)
			out = append(out, r)
			continue
		}
		if out[i].Mandatory {
			return nil, fmt.Errorf("rule %s is mandatory and cannot be changed or disabled", r.ID)
		}
		if r.Kind == "" { // {"id":…, "disabled":true}
			out[i].Disabled = r.Disabled
			continue
		}
		out[i] = r
	}
	enabled := out[:0]
	for _, r := range out {
		if !r.Disabled {
			enabled = append(enabled, r)
		}
	}
	return enabled, nil
}
