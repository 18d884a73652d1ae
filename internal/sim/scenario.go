package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario names. Each is a scripted clinical or technical event that can be
// mixed into a population; its onset and end go to the ground-truth log.
const (
	Sepsis             = "sepsis"
	Hypoxia            = "hypoxia"
	HypoglycaemiaFast  = "hypoglycaemia-fast"
	HypoglycaemiaSlow  = "hypoglycaemia-slow"
	AtrialFibrillation = "afib"
	HypertensiveCrisis = "hypertensive-crisis"
	HFWeightGain       = "hf-weight-gain"
	FallNoResponse     = "fall"
	PanicPress         = "panic"
	MissedDoses        = "missed-doses"
	BatteryDrain       = "battery-drain"
	ClockSkew          = "clock-skew"

	// Artefacts are not scripted by the user: every monitor and wearable
	// produces them at a fixed rate, and they are logged like scenarios
	// so that the alarms they cause are accounted for.
	ProbeOff       = "probe-off"
	MotionArtefact = "motion-artefact"
)

// scenarioKind describes one scenario: how long an episode lasts, which
// patients can have it (by their devices), and which alarm rules detect
// it. A scenario with no rules is in the ground truth but Tend has no way
// to see it yet (evaluation reports it as not detectable).
type scenarioKind struct {
	duration time.Duration
	needs    []Kind // any one of these devices
	rules    []string
}

var scenarioKinds = map[string]scenarioKind{
	Sepsis:             {6 * time.Hour, []Kind{Monitor, Wearable}, []string{"news2", "hr-high", "sbp-low", "spo2-low", "rr-high"}},
	Hypoxia:            {20 * time.Minute, []Kind{Monitor, Wearable}, []string{"spo2-low", "spo2-critical", "news2"}},
	HypoglycaemiaFast:  {time.Hour, []Kind{CGM}, glucoseRules},
	HypoglycaemiaSlow:  {3 * time.Hour, []Kind{CGM}, glucoseRules},
	AtrialFibrillation: {2 * time.Hour, []Kind{Monitor, Wearable}, []string{"hr-high", "news2"}},
	HypertensiveCrisis: {90 * time.Minute, []Kind{Monitor, BPCuff}, []string{"sbp-high", "news2"}},
	HFWeightGain:       {5 * 24 * time.Hour, []Kind{Scale}, []string{"weight-gain-3d"}},
	FallNoResponse:     {30 * time.Minute, []Kind{Wearable}, []string{"fall"}},
	PanicPress:         {10 * time.Minute, []Kind{PanicButton}, []string{"panic"}},
	MissedDoses:        {24 * time.Hour, []Kind{PillDispenser}, []string{"missed-dose"}},
	BatteryDrain:       {3 * time.Hour, []Kind{Monitor, Wearable}, []string{"battery-low", "spo2-no-data", "hr-no-data"}},
	ClockSkew:          {time.Hour, []Kind{Monitor, Wearable}, []string{"clock-skew"}},
	ProbeOff:           {0, []Kind{Monitor}, []string{"sensor-off", "spo2-no-data"}},
	MotionArtefact:     {0, []Kind{Monitor, Wearable}, nil},
}

var glucoseRules = []string{"cgm-falling-fast", "cgm-urgent-low-soon", "cgm-urgent-low", "cgm-low", "glucose-low", "glucose-urgent-low"}

// Scenarios lists the names a user can script, sorted.
func Scenarios() []string {
	var out []string
	for name := range scenarioKinds {
		if name != ProbeOff && name != MotionArtefact {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// DetectingRules returns the alarm rules that count as detecting scenario.
func DetectingRules(scenario string) []string {
	return scenarioKinds[scenario].rules
}

// ScenarioSpec mixes one scenario into the population. Rate gives episodes
// at random (Poisson) times; Share picks that fraction of the patients who
// can have it and starts one episode for each At after the start. Both may
// be set.
type ScenarioSpec struct {
	Name     string        `json:"name"`
	Rate     float64       `json:"rate,omitempty"`     // episodes per patient-day
	Share    float64       `json:"share,omitempty"`    // 0..1 of eligible patients
	At       time.Duration `json:"at,omitempty"`       // onset of the Share episodes, after the start
	Duration time.Duration `json:"duration,omitempty"` // 0 = the scenario's own length
}

// scenarioFile is the JSON form: {"scenarios":[{"name":..,"rate":..}]}
// with Go duration strings ("10m") for at and duration.
type scenarioFile struct {
	Scenarios []struct {
		Name     string          `json:"name"`
		Rate     *float64        `json:"rate"`
		Share    *float64        `json:"share"`
		At       json.RawMessage `json:"at"`
		Duration json.RawMessage `json:"duration"`
	} `json:"scenarios"`
}

// maxSpecs bounds a scenario file; there are only a dozen scenarios.
const maxSpecs = 256

// ParseScenarioFile reads the JSON scenario document. Every error names the
// field that is wrong, e.g. `scenarios[1].rate: must be a number ≥ 0`.
func ParseScenarioFile(data []byte) ([]ScenarioSpec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f scenarioFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("scenario file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("scenario file: unexpected data after the JSON document")
	}
	if f.Scenarios == nil {
		return nil, errors.New(`scenario file: "scenarios" is missing: want {"scenarios":[{"name":"hypoxia","rate":1}]}`)
	}
	if len(f.Scenarios) > maxSpecs {
		return nil, fmt.Errorf("scenario file: scenarios: at most %d entries", maxSpecs)
	}
	specs := make([]ScenarioSpec, 0, len(f.Scenarios))
	for i, s := range f.Scenarios {
		field := func(name string) string { return fmt.Sprintf("scenarios[%d].%s", i, name) }
		spec := ScenarioSpec{Name: s.Name}
		if s.Rate != nil {
			spec.Rate = *s.Rate
		}
		if s.Share != nil {
			spec.Share = *s.Share
		}
		var err error
		if spec.At, err = parseDuration(s.At); err != nil {
			return nil, fmt.Errorf("%s: %w", field("at"), err)
		}
		if spec.Duration, err = parseDuration(s.Duration); err != nil {
			return nil, fmt.Errorf("%s: %w", field("duration"), err)
		}
		if err := spec.validate(field); err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

func parseDuration(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, errors.New(`must be a duration string such as "10m" or "2h"`)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"10m\" or \"2h\"", clip(s))
	}
	if d < 0 {
		return 0, fmt.Errorf("%q must not be negative", clip(s))
	}
	return d, nil
}

// ParseScenarioList reads the command-line form: comma-separated
// name[=rate] items, rate in episodes per patient-day (default 1).
func ParseScenarioList(s string) ([]ScenarioSpec, error) {
	var specs []ScenarioSpec
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, rate, hasRate := strings.Cut(item, "=")
		spec := ScenarioSpec{Name: strings.TrimSpace(name), Rate: 1}
		if hasRate {
			r, err := strconv.ParseFloat(strings.TrimSpace(rate), 64)
			if err != nil {
				return nil, fmt.Errorf("scenario %q: rate %q is not a number (episodes per patient-day)", clip(spec.Name), clip(rate))
			}
			spec.Rate = r
		}
		if err := spec.validate(func(f string) string { return fmt.Sprintf("scenario %q: %s", clip(spec.Name), f) }); err != nil {
			return nil, err
		}
		if len(specs) == maxSpecs {
			return nil, fmt.Errorf("at most %d scenarios", maxSpecs)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

func (s ScenarioSpec) validate(field func(string) string) error {
	if s.Name == "" {
		return fmt.Errorf("%s: missing; one of %s", field("name"), strings.Join(Scenarios(), ", "))
	}
	if _, ok := scenarioKinds[s.Name]; !ok || s.Name == ProbeOff || s.Name == MotionArtefact {
		return fmt.Errorf("%s: unknown scenario %q; one of %s", field("name"), clip(s.Name), strings.Join(Scenarios(), ", "))
	}
	if math.IsNaN(s.Rate) || math.IsInf(s.Rate, 0) || s.Rate < 0 || s.Rate > 1000 {
		return fmt.Errorf("%s: must be a number from 0 to 1000 (episodes per patient-day)", field("rate"))
	}
	if math.IsNaN(s.Share) || s.Share < 0 || s.Share > 1 {
		return fmt.Errorf("%s: must be a fraction from 0 to 1 of the patients who can have %s", field("share"), s.Name)
	}
	if s.Rate == 0 && s.Share == 0 {
		return fmt.Errorf("%s: give a rate (episodes per patient-day) or a share of patients", field("rate"))
	}
	return nil
}

// clip keeps hostile input short in error messages.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
