package sim

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// TruthEvent is one line of the ground-truth log: an episode of a scenario
// started or ended in a patient (and device, for device scenarios).
type TruthEvent struct {
	When     time.Time `json:"when"`
	Patient  string    `json:"patient"`
	Label    string    `json:"label,omitempty"`
	Device   string    `json:"device,omitempty"`
	Scenario string    `json:"scenario"`
	What     string    `json:"what"` // start or end
}

// Alarm is what evaluation needs of one of Tend's alarm episodes; Raised
// is in virtual time (see Report.Virtual).
type Alarm struct {
	Patient string
	Rule    string
	Raised  time.Time
}

// EvalInput is the ground truth and alarm history of one run.
type EvalInput struct {
	Truth      []TruthEvent
	Alarms     []Alarm
	Patients   int
	Start, End time.Time // virtual; alarms raised before Start are not this run's
	// Grace is how long after an episode ends an alarm still counts as
	// detecting it (the evaluator may lag, NEWS2 needs fresh readings).
	Grace time.Duration
}

// Evaluation is how well Tend's alarms matched the ground truth.
type Evaluation struct {
	Scenarios          []ScenarioResult
	Alarms             int // alarms raised during the run
	FalseAlarms        int // alarms no episode explains
	FalseByRule        map[string]int
	PatientDays        float64
	FalsePerPatientDay float64
}

// ScenarioResult is the detection of one scenario.
type ScenarioResult struct {
	Scenario    string
	Detectable  bool // Tend has a rule that can see it
	Episodes    int
	Detected    int
	Sensitivity float64 // Detected / Episodes; 0 when no episodes
	TTDMedian   time.Duration
	TTDMax      time.Duration
}

type truthEpisode struct {
	patient, scenario string
	start, end        time.Time
}

// Evaluate matches alarms to episodes. An episode is detected when its
// patient has an alarm of one of the scenario's detecting rules raised
// between its start and its end plus Grace; time to detection runs from
// the start to the first such alarm. An alarm that detects no episode is
// a false alarm.
func Evaluate(in EvalInput) Evaluation {
	eps := pairEpisodes(in.Truth, in.End)
	byPatient := map[string][]Alarm{}
	ev := Evaluation{FalseByRule: map[string]int{}}
	for _, a := range in.Alarms {
		if a.Raised.Before(in.Start) || a.Raised.After(in.End.Add(in.Grace)) {
			continue
		}
		byPatient[a.Patient] = append(byPatient[a.Patient], a)
		ev.Alarms++
	}
	explained := map[*Alarm]bool{}
	results := map[string]*ScenarioResult{}
	ttds := map[string][]time.Duration{}
	for _, e := range eps {
		rules := DetectingRules(e.scenario)
		r := results[e.scenario]
		if r == nil {
			r = &ScenarioResult{Scenario: e.scenario, Detectable: len(rules) > 0}
			results[e.scenario] = r
		}
		r.Episodes++
		var first time.Time
		as := byPatient[e.patient]
		for i := range as {
			a := &as[i]
			if !slices.Contains(rules, a.Rule) || a.Raised.Before(e.start) || a.Raised.After(e.end.Add(in.Grace)) {
				continue
			}
			explained[a] = true
			if first.IsZero() || a.Raised.Before(first) {
				first = a.Raised
			}
		}
		if !first.IsZero() {
			r.Detected++
			ttds[e.scenario] = append(ttds[e.scenario], first.Sub(e.start))
		}
	}
	for _, as := range byPatient {
		for i := range as {
			if !explained[&as[i]] {
				ev.FalseAlarms++
				ev.FalseByRule[as[i].Rule]++
			}
		}
	}
	for name, r := range results {
		if r.Episodes > 0 {
			r.Sensitivity = float64(r.Detected) / float64(r.Episodes)
		}
		if d := ttds[name]; len(d) > 0 {
			slices.Sort(d)
			r.TTDMedian, r.TTDMax = d[(len(d)-1)/2], d[len(d)-1] // lower median
		}
		ev.Scenarios = append(ev.Scenarios, *r)
	}
	slices.SortFunc(ev.Scenarios, func(a, b ScenarioResult) int { return strings.Compare(a.Scenario, b.Scenario) })
	ev.PatientDays = float64(in.Patients) * in.End.Sub(in.Start).Hours() / 24
	if ev.PatientDays > 0 {
		ev.FalsePerPatientDay = float64(ev.FalseAlarms) / ev.PatientDays
	}
	return ev
}

// pairEpisodes turns start and end lines into episodes; one that has not
// ended by the end of the run ends there.
func pairEpisodes(truth []TruthEvent, end time.Time) []truthEpisode {
	type key struct{ patient, device, scenario string }
	open := map[key][]int{}
	var eps []truthEpisode
	for _, t := range truth {
		k := key{t.Patient, t.Device, t.Scenario}
		switch t.What {
		case "start":
			open[k] = append(open[k], len(eps))
			eps = append(eps, truthEpisode{patient: t.Patient, scenario: t.Scenario, start: t.When, end: end})
		case "end":
			if q := open[k]; len(q) > 0 {
				eps[q[0]].end = t.When
				open[k] = q[1:]
			}
		}
	}
	return eps
}

// Write prints the evaluation as a table.
func (ev Evaluation) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tepisodes\tdetected\tsensitivity\ttime to detection (median)\t(max)")
	for _, r := range ev.Scenarios {
		if !r.Detectable {
			why := "not detectable (no rule)"
			if r.Scenario == MotionArtefact {
				why = "artefact: no alarm expected"
			}
			fmt.Fprintf(tw, "%s\t%d\t-\t%s\t-\t-\n", r.Scenario, r.Episodes, why)
			continue
		}
		ttd, ttdMax := "-", "-"
		if r.Detected > 0 {
			ttd, ttdMax = r.TTDMedian.Round(time.Second).String(), r.TTDMax.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f%%\t%s\t%s\n", r.Scenario, r.Episodes, r.Detected, 100*r.Sensitivity, ttd, ttdMax)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	rules := make([]string, 0, len(ev.FalseByRule))
	for r := range ev.FalseByRule {
		rules = append(rules, r)
	}
	slices.Sort(rules)
	var by []string
	for _, r := range rules {
		by = append(by, fmt.Sprintf("%s %d", r, ev.FalseByRule[r]))
	}
	_, err := fmt.Fprintf(w, "alarms: %d; false alarms: %d in %.2f patient-days = %.2f per patient-day%s\n",
		ev.Alarms, ev.FalseAlarms, ev.PatientDays, ev.FalsePerPatientDay, parenthesise(strings.Join(by, ", ")))
	return err
}

func parenthesise(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
