package sim

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestEvaluate(t *testing.T) {
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	truth := []TruthEvent{
		{When: at(10), Patient: "a", Scenario: Hypoxia, What: "start"},
		{When: at(30), Patient: "a", Scenario: Hypoxia, What: "end"},
		{When: at(60), Patient: "b", Scenario: Hypoxia, What: "start"},
		{When: at(80), Patient: "b", Scenario: Hypoxia, What: "end"},
		{When: at(100), Patient: "c", Scenario: FallNoResponse, What: "start"},
		// No end: the run ended first.
		{When: at(200), Patient: "c", Scenario: MissedDoses, What: "start"},
		{When: at(230), Patient: "c", Scenario: MissedDoses, What: "end"},
	}
	tests := []struct {
		name      string
		alarms    []Alarm
		want      map[string][2]int // scenario → episodes, detected
		ttd       map[string]time.Duration
		falses    int
		falseRule string
	}{
		{
			name:   "no alarms",
			want:   map[string][2]int{Hypoxia: {2, 0}, FallNoResponse: {1, 0}, MissedDoses: {1, 0}},
			falses: 0,
		},
		{
			name: "both hypoxias and the fall detected, first alarm counts",
			alarms: []Alarm{
				{"a", "spo2-low", at(14)}, {"a", "spo2-critical", at(12)},
				{"b", "news2", at(81)}, // within the grace after the end
				{"c", "fall", at(101)},
				{"c", "missed-dose", at(220)},
			},
			want:   map[string][2]int{Hypoxia: {2, 2}, FallNoResponse: {1, 1}, MissedDoses: {1, 1}},
			ttd:    map[string]time.Duration{Hypoxia: 2 * time.Minute, FallNoResponse: time.Minute, MissedDoses: 20 * time.Minute},
			falses: 0,
		},
		{
			name: "wrong rule, wrong patient, too early, too late are false alarms",
			alarms: []Alarm{
				{"a", "fall", at(12)},          // rule does not detect hypoxia
				{"c", "spo2-low", at(12)},      // patient has no hypoxia
				{"b", "spo2-low", at(59)},      // before onset
				{"b", "spo2-low", at(80 + 6)},  // after the 5 min grace
				{"x", "sbp-low", at(-5)},       // before the run: ignored
				{"b", "spo2-critical", at(61)}, // detects b
				{"b", "spo2-critical", at(62)}, // also explained
			},
			want:      map[string][2]int{Hypoxia: {2, 1}},
			ttd:       map[string]time.Duration{Hypoxia: time.Minute},
			falses:    4,
			falseRule: "spo2-low 3",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := Evaluate(EvalInput{Truth: truth, Alarms: tc.alarms, Patients: 4, Start: t0, End: at(24 * 60), Grace: 5 * time.Minute})
			for name, w := range tc.want {
				var got *ScenarioResult
				for i := range ev.Scenarios {
					if ev.Scenarios[i].Scenario == name {
						got = &ev.Scenarios[i]
					}
				}
				if got == nil || got.Episodes != w[0] || got.Detected != w[1] {
					t.Errorf("%s: got %+v, want %d episodes %d detected", name, got, w[0], w[1])
					continue
				}
				if d, ok := tc.ttd[name]; ok && got.TTDMedian != d {
					t.Errorf("%s: time to detection %s, want %s", name, got.TTDMedian, d)
				}
				if name == MissedDoses && !got.Detectable {
					t.Errorf("missed doses reported not detectable")
				}
			}
			if ev.FalseAlarms != tc.falses {
				t.Errorf("false alarms %d, want %d (%v)", ev.FalseAlarms, tc.falses, ev.FalseByRule)
			}
			if ev.PatientDays != 4 || ev.FalsePerPatientDay != float64(tc.falses)/4 {
				t.Errorf("patient-days %v, per day %v", ev.PatientDays, ev.FalsePerPatientDay)
			}
			var out strings.Builder
			if err := ev.Write(&out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "false alarms: "+strconv.Itoa(tc.falses)) || (tc.falseRule != "" && !strings.Contains(out.String(), tc.falseRule)) {
				t.Errorf("table:\n%s", out.String())
			}
		})
	}
}
