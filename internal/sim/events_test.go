package sim

import (
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/senml"
)

// A panic press is sent as it happens, not with the next status message,
// and a pill dispenser reports every scheduled dose as taken, or as
// missed while a missed-doses episode lasts.
func TestDeviceEvents(t *testing.T) {
	ps := registered(0, 1, 5)
	ps[0].Devices = append(ps[0].Devices, Device{Kind: PanicButton, ID: "panic"})
	press := 90*time.Minute + 17*time.Second
	missedFrom, missedFor := 24*time.Hour, 24*time.Hour
	rep, r := run(t, Config{Patients: ps, Seed: 5, Duration: 72 * time.Hour, Scenarios: []ScenarioSpec{
		{Name: PanicPress, Share: 1, At: press},
		{Name: MissedDoses, Share: 1, At: missedFrom, Duration: missedFor},
	}})

	var presses []time.Time
	taken, missed := 0, 0
	for _, s := range r.sent {
		ms, err := senml.DecodeJSON([]byte(s.payload), t0.Add(73*time.Hour), senml.DefaultLimits)
		if err != nil {
			t.Fatalf("Tend refuses %s: %v", s.payload, err)
		}
		for _, m := range ms {
			switch m.Code {
			case codes.PanicButton:
				presses = append(presses, m.Time)
			case codes.DoseTaken:
				taken++
				if in := m.Time.Sub(t0); in >= missedFrom && in < missedFrom+missedFor {
					t.Errorf("dose taken at +%v, inside the missed-doses episode", in)
				}
			case codes.DoseMissed:
				missed++
				if in := m.Time.Sub(t0); in < missedFrom || in >= missedFrom+missedFor {
					t.Errorf("dose missed at +%v, outside the missed-doses episode", in)
				}
			}
		}
	}
	if len(presses) != 1 || !presses[0].Equal(t0.Add(press)) {
		t.Errorf("panic presses %v, want one at %v", presses, t0.Add(press))
	}
	// Two doses a day: 24 h of missed doses is two reports, the other 48 h four.
	if missed != 2 || taken != 4 {
		t.Errorf("doses missed %d, taken %d; want 2 and 4", missed, taken)
	}
	if rules := DetectingRules(MissedDoses); len(rules) == 0 {
		t.Error("missed doses have no detecting rule")
	}
	var starts int
	for _, e := range rep.Truth {
		if e.Scenario == PanicPress && e.What == "start" {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("ground truth has %d panic presses, want 1", starts)
	}
}
