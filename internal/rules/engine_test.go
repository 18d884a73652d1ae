package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
)

// t0 is the start of every test timeline.
var t0 = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

// obs is a reading of one value at t0+at, received at the same moment.
func obs(patient, device, code string, v float64, at time.Duration) reading.Reading {
	c, _ := codes.ByLOINC(code)
	return reading.Reading{Patient: patient, Device: device, Code: code, Value: v, HasValue: true, Unit: c.Unit,
		Time: t0.Add(at), Received: t0.Add(at), Source: "test"}
}

// bpPanel is a blood-pressure panel reading with systolic and diastolic parts.
func bpPanel(patient, device string, sys, dia float64, at time.Duration) reading.Reading {
	return reading.Reading{
		Patient: patient,
		Device:  device,
		Code:    codes.BloodPressurePanel,
		Unit:    "mm[Hg]",
		Components: []reading.Component{
			{Code: codes.SystolicBP, Value: sys, Unit: "mm[Hg]"},
			{Code: codes.DiastolicBP, Value: dia, Unit: "mm[Hg]"},
		},
		Time:     t0.Add(at),
		Received: t0.Add(at),
		Source:   "test",
	}
}

func fixed(rs ...Rule) RuleSet { return func(string) []Rule { return rs } }

func mustDefaults(t testing.TB, setting string) []Rule {
	t.Helper()
	p, ok := Defaults(setting)
	if !ok {
		t.Fatalf("no defaults for %s", setting)
	}
	return p.Rules
}

// brief is an event reduced to what most tests assert.
func brief(ev Event) string {
	s := fmt.Sprintf("%s %s %s", ev.Type, ev.Rule, ev.Patient)
	if ev.Subject != "" {
		s += " subject=" + ev.Subject
	}
	return s + fmt.Sprintf(" priority=%s at=%s", ev.Priority, ev.Time.Sub(t0))
}

func briefs(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, brief(ev))
	}
	return out
}

// step is one input of a timeline: a reading or a tick.
type step struct {
	r    *reading.Reading
	tick time.Time
}

func (s step) run(e *Engine, seq uint64, out *Output) {
	if s.r != nil {
		e.Observe(*s.r, seq, out)
		return
	}
	e.Tick(s.tick, out)
}

// timeline builds a deterministic mix of readings and ticks for three
// patients over two hours: monitored vitals every 30 s with dips, BP panels,
// a falling CGM trace, weights, a fall, a device whose clock runs ahead
// and a monitor that goes silent.
func timeline() []step {
	rng := rand.New(rand.NewPCG(7, 11))
	var steps []step
	add := func(r reading.Reading) { steps = append(steps, step{r: &r}) }
	for i := range 240 {
		at := time.Duration(i) * 30 * time.Second
		for _, p := range []string{"p1", "p2", "p3"} {
			if p == "p3" && i > 100 && i < 140 {
				continue // p3's monitor is silent for 20 minutes
			}
			spo2 := 96 + rng.Float64()*3
			if p == "p1" && i%60 > 40 {
				spo2 = 82 + rng.Float64()*6
			}
			hr := 70 + rng.Float64()*20
			if p == "p2" && i > 120 {
				hr = 125 + rng.Float64()*20
			}
			add(obs(p, "mon-"+p, codes.OxygenSaturation, math.Round(spo2), at))
			add(obs(p, "mon-"+p, codes.HeartRate, math.Round(hr), at))
			if i%4 == 0 {
				add(obs(p, "mon-"+p, codes.RespiratoryRate, float64(14+rng.IntN(14)), at))
			}
		}
		if i%20 == 0 {
			add(bpPanel("p1", "cuff-p1", float64(85+rng.IntN(40)), float64(60+rng.IntN(20)), at))
			add(obs("p1", "therm-p1", codes.BodyTemperature, 36.5+rng.Float64()*3, at))
			add(obs("p1", "staff", codes.ACVPU, 0, at))
			add(obs("p1", "staff", codes.InhaledO2Flow, 0, at))
		}
		if i%10 == 0 { // CGM every 5 minutes, falling from 180
			add(obs("p2", "cgm-p2", codes.InterstitialGlucose, 180-float64(i)*0.6, at))
		}
		if i%48 == 0 {
			add(obs("p3", "scale-p3", codes.BodyWeight, 80+float64(i)/48, at))
		}
		if i == 77 {
			add(obs("p3", "pendant-p3", codes.Fall, 1, at))
		}
		if i%9 == 0 { // a device whose clock is 3 minutes ahead
			r := obs("p3", "watch-p3", codes.PulseRate, 80, at+3*time.Minute)
			r.Received = t0.Add(at)
			add(r)
		}
		if i%2 == 1 {
			steps = append(steps, step{tick: t0.Add(at + 15*time.Second)})
		}
	}
	return steps
}

func TestSnapshotRestoreContinues(t *testing.T) {
	rules := append(mustDefaults(t, SettingWard),
		Rule{ID: "weight-up", Kind: KindChange, Code: codes.BodyWeight, Op: ">=", Value: 2, Window: Duration(72 * time.Hour), Priority: PriorityMedium},
		Rule{ID: "hr-rising", Kind: KindRate, Code: codes.HeartRate, Op: ">=", Value: 5, Window: Duration(2 * time.Minute), Priority: PriorityLow},
	)
	steps := timeline()
	half := len(steps) / 2

	a := NewEngine(fixed(rules...))
	var first Output
	for i, s := range steps[:half] {
		s.run(a, uint64(i+1), &first)
	}
	if len(first.Events) == 0 || len(first.Derived) == 0 {
		t.Fatalf("the first half produced %d events and %d scores; the test needs state in flight", len(first.Events), len(first.Derived))
	}
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b := NewEngine(fixed(rules...))
	if err := b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if b.Patients() != a.Patients() {
		t.Fatalf("restored %d patients, want %d", b.Patients(), a.Patients())
	}
	// The restored engine snapshots to the same bytes.
	again, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(snap), string(again)); diff != "" {
		t.Fatalf("snapshot of the restored engine differs (-original +restored):\n%s", diff)
	}

	var outA, outB Output
	for i, s := range steps[half:] {
		s.run(a, uint64(half+i+1), &outA)
		s.run(b, uint64(half+i+1), &outB)
	}
	if len(outA.Events) == 0 || len(outA.Derived) == 0 {
		t.Fatalf("the second half produced %d events and %d scores; the comparison would be empty", len(outA.Events), len(outA.Derived))
	}
	if diff := cmp.Diff(outA, outB); diff != "" {
		t.Errorf("restored engine diverged (-continued +restored):\n%s", diff)
	}
	kinds := map[Kind]bool{}
	for _, ev := range slices.Concat(first.Events, outA.Events) {
		kinds[ev.Kind] = true
	}
	for _, k := range []Kind{KindThreshold, KindNEWS2, KindNoData, KindClockSkew, KindEvent, KindRate, KindChange, KindForecast} {
		if !kinds[k] {
			t.Errorf("the timeline raised no %s event; it no longer covers that kind", k)
		}
	}
}

// TestSnapshotAtAnyPoint: restoring a snapshot taken anywhere in the
// timeline and feeding the rest gives what an engine that never stopped
// gives.
func TestSnapshotAtAnyPoint(t *testing.T) {
	rules := mustDefaults(t, SettingWard)
	steps := timeline()
	straight := NewEngine(fixed(rules...))
	outs := make([]Output, len(steps)) // output of each step, uninterrupted
	for i, s := range steps {
		s.run(straight, uint64(i+1), &outs[i])
	}
	for cut := 0; cut < len(steps); cut += len(steps)/9 + 1 {
		t.Run(fmt.Sprintf("cut at step %d", cut), func(t *testing.T) {
			a := NewEngine(fixed(rules...))
			var discard Output
			for i, s := range steps[:cut] {
				s.run(a, uint64(i+1), &discard)
			}
			snap, err := a.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			b := NewEngine(fixed(rules...))
			if err := b.Restore(snap); err != nil {
				t.Fatal(err)
			}
			for i := cut; i < len(steps); i++ {
				var got Output
				steps[i].run(b, uint64(i+1), &got)
				if diff := cmp.Diff(outs[i], got, cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("step %d after restoring at %d (-uninterrupted +restored):\n%s", i, cut, diff)
				}
			}
		})
	}
}

func TestRestoreRejectsBadSnapshot(t *testing.T) {
	e := NewEngine(fixed())
	if err := e.Restore([]byte(`{"p1":`)); err == nil {
		t.Error("Restore of truncated JSON succeeded")
	}
	if err := e.Restore([]byte(`[1,2]`)); err == nil {
		t.Error("Restore of a JSON array succeeded")
	}
	// An empty snapshot, or a patient without any state, restores to an
	// engine that works.
	for _, snap := range []string{`{}`, `{"p1":{}}`} {
		e := NewEngine(fixed(Rule{ID: "silent", Kind: KindNoData, Window: Duration(time.Minute), Priority: PriorityLow}))
		if err := e.Restore([]byte(snap)); err != nil {
			t.Fatalf("Restore(%s) = %v", snap, err)
		}
		var out Output
		e.Observe(obs("p1", "m", codes.HeartRate, 80, 0), 1, &out)
		e.Tick(t0.Add(2*time.Minute), &out)
		if e.Patients() != 1 {
			t.Errorf("Restore(%s): Patients() = %d, want 1", snap, e.Patients())
		}
		if diff := cmp.Diff([]string{"start silent p1 subject=m/" + codes.HeartRate + " priority=low at=2m0s"}, briefs(out.Events)); diff != "" {
			t.Errorf("Restore(%s): events (-want +got):\n%s", snap, diff)
		}
	}
}

// TestRestoreNullEntries: a snapshot is written by Snapshot, but one read
// back from a damaged file must be refused, not crash the evaluator later.
func TestRestoreNullEntries(t *testing.T) {
	for _, snap := range []string{`null`, `{"p1":null}`, `{"p1":{"seen":{"old-mon|59408-5":null}}}`} {
		t.Run(snap, func(t *testing.T) {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("panic: %v", p)
				}
			}()
			e := NewEngine(fixed(Rule{ID: "silent", Kind: KindNoData, Window: Duration(time.Minute), Priority: PriorityLow}))
			if err := e.Restore([]byte(snap)); err != nil {
				return // refusing it is fine
			}
			var out Output
			e.Observe(obs("p1", "m", codes.HeartRate, 80, 0), 1, &out)
			e.Tick(t0.Add(time.Hour), &out)
		})
	}
}

func TestInvalidate(t *testing.T) {
	current := []Rule{{ID: "hr-high", Kind: KindThreshold, Code: codes.HeartRate, Op: ">", Value: 130, Clear: ptr(120.0), Priority: PriorityMedium}}
	loads := map[string]int{}
	e := NewEngine(func(patient string) []Rule {
		loads[patient]++
		return current
	})
	var out Output
	e.Observe(obs("p1", "m", codes.HeartRate, 100, 0), 1, &out)
	e.Observe(obs("p2", "m", codes.HeartRate, 100, 0), 2, &out)

	current = []Rule{{ID: "hr-high", Kind: KindThreshold, Code: codes.HeartRate, Op: ">", Value: 90, Clear: ptr(85.0), Priority: PriorityMedium}}
	e.Observe(obs("p1", "m", codes.HeartRate, 100, time.Minute), 3, &out)
	if len(out.Events) != 0 {
		t.Fatalf("cached rules changed without Invalidate: %q", briefs(out.Events))
	}
	e.Invalidate("p3") // a patient without state: nothing happens
	e.Observe(obs("p1", "m", codes.HeartRate, 100, 2*time.Minute), 4, &out)
	if len(out.Events) != 0 {
		t.Fatalf("Invalidate of another patient changed p1: %q", briefs(out.Events))
	}

	e.Invalidate("p1")
	e.Observe(obs("p1", "m", codes.HeartRate, 100, 3*time.Minute), 5, &out)
	e.Observe(obs("p2", "m", codes.HeartRate, 100, 3*time.Minute), 6, &out)
	want := []string{"start hr-high p1 priority=medium at=3m0s"}
	if diff := cmp.Diff(want, briefs(out.Events)); diff != "" {
		t.Fatalf("after Invalidate(p1) (-want +got):\n%s", diff)
	}

	// Invalidate("") reloads everyone; a firing condition of a rule that
	// still exists is kept (no second start).
	out = Output{}
	e.Invalidate("")
	e.Observe(obs("p1", "m", codes.HeartRate, 100, 4*time.Minute), 7, &out)
	e.Observe(obs("p2", "m", codes.HeartRate, 100, 4*time.Minute), 8, &out)
	want = []string{"start hr-high p2 priority=medium at=4m0s"}
	if diff := cmp.Diff(want, briefs(out.Events)); diff != "" {
		t.Fatalf("after Invalidate(\"\") (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"p1": 3, "p2": 2}, loads); diff != "" {
		t.Errorf("rule loads per patient (-want +got):\n%s", diff)
	}
}

// TestInvalidateDropsStateOfRemovedRules: Invalidate's doc says condition
// state is kept for rules that still exist, so a rule switched off while
// firing must not leave a firing condition behind that swallows the Start
// when the rule is switched on again.
func TestInvalidateDropsStateOfRemovedRules(t *testing.T) {
	spo2Low := Rule{ID: "spo2-low", Kind: KindThreshold, Code: codes.OxygenSaturation, Op: "<", Value: 90, Clear: ptr(92.0), Priority: PriorityMedium}
	current := []Rule{spo2Low}
	e := NewEngine(func(string) []Rule { return current })
	var out Output
	e.Observe(obs("p1", "ox", codes.OxygenSaturation, 85, 0), 1, &out)

	current = nil // switched off while firing
	e.Invalidate("p1")
	e.Observe(obs("p1", "ox", codes.OxygenSaturation, 85, time.Minute), 2, &out)
	if _, ok := e.patients["p1"].Conds["spo2-low|"]; ok {
		t.Errorf("the condition of the removed rule spo2-low is still kept")
	}

	current = []Rule{spo2Low} // switched on again, SpO2 still low
	e.Invalidate("p1")
	e.Observe(obs("p1", "ox", codes.OxygenSaturation, 85, 2*time.Minute), 3, &out)
	// Switching the rule off clears its condition (its alarm must not stay
	// open for something nobody evaluates); switching it on starts afresh.
	want := []string{"start spo2-low p1 priority=medium at=0s", "clear spo2-low p1 priority=medium at=1m0s", "start spo2-low p1 priority=medium at=2m0s"}
	if diff := cmp.Diff(want, briefs(out.Events)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestReadingWithoutPatientIgnored(t *testing.T) {
	loads := 0
	e := NewEngine(func(string) []Rule { loads++; return mustDefaults(t, SettingWard) })
	var out Output
	r := obs("", "m", codes.OxygenSaturation, 70, 0)
	e.Observe(r, 1, &out)
	e.Tick(t0.Add(time.Hour), &out)
	if len(out.Events) != 0 || len(out.Derived) != 0 || e.Patients() != 0 || loads != 0 {
		t.Fatalf("a reading without patient had effects: events %q, derived %d, patients %d, rule loads %d",
			briefs(out.Events), len(out.Derived), e.Patients(), loads)
	}
}

func TestPanelComponentsEvaluatedPerCode(t *testing.T) {
	rules := []Rule{
		{ID: "sbp-low", Kind: KindThreshold, Code: codes.SystolicBP, Op: "<", Value: 90, Clear: ptr(95.0), Priority: PriorityMedium},
		{ID: "dbp-high", Kind: KindThreshold, Code: codes.DiastolicBP, Op: ">", Value: 100, Priority: PriorityLow},
		{ID: "sys-silent", Kind: KindNoData, Code: codes.SystolicBP, Window: Duration(time.Hour), Priority: PriorityLow},
	}
	e := NewEngine(fixed(rules...))
	var out Output
	e.Observe(bpPanel("p1", "cuff", 85, 105, 0), 1, &out)
	type got struct {
		Rule, Code, Unit string
		Value            float64
	}
	var gotEvents []got
	for _, ev := range out.Events {
		gotEvents = append(gotEvents, got{ev.Rule, ev.Code, ev.Unit, ev.Value})
	}
	want := []got{
		{"sbp-low", codes.SystolicBP, "mm[Hg]", 85},
		{"dbp-high", codes.DiastolicBP, "mm[Hg]", 105},
	}
	if diff := cmp.Diff(want, gotEvents); diff != "" {
		t.Fatalf("panel events (-want +got):\n%s", diff)
	}

	// No-data watches each component signal of the panel's device.
	out = Output{}
	e.Tick(t0.Add(61*time.Minute), &out)
	if diff := cmp.Diff([]string{"start sys-silent p1 subject=cuff/" + codes.SystolicBP + " priority=low at=1h1m0s"}, briefs(out.Events)); diff != "" {
		t.Errorf("no-data on a panel part (-want +got):\n%s", diff)
	}

	// A second panel: systolic recovers past its clear bound, diastolic
	// still high (already firing: nothing new).
	out = Output{}
	e.Observe(bpPanel("p1", "cuff", 100, 110, 62*time.Minute), 2, &out)
	want2 := []string{
		"clear sys-silent p1 subject=cuff/" + codes.SystolicBP + " priority=low at=1h2m0s",
		"clear sbp-low p1 priority=medium at=1h2m0s",
	}
	if diff := cmp.Diff(want2, briefs(out.Events)); diff != "" {
		t.Errorf("second panel (-want +got):\n%s", diff)
	}
}

func TestLateReadings(t *testing.T) {
	rules := []Rule{
		{ID: "spo2-low", Kind: KindThreshold, Code: codes.OxygenSaturation, Op: "<", Value: 90, Clear: ptr(92.0), Priority: PriorityMedium},
		{ID: "spo2-silent", Kind: KindNoData, Code: codes.OxygenSaturation, Window: Duration(2 * time.Minute), Priority: PriorityLow},
	}
	e := NewEngine(fixed(rules...))
	var out Output
	e.Observe(obs("p1", "ox", codes.OxygenSaturation, 97, 10*time.Minute), 1, &out)

	// Older and equal reading times do not move the threshold state.
	e.Observe(obs("p1", "ox", codes.OxygenSaturation, 80, 5*time.Minute), 2, &out)
	e.Observe(obs("p1", "ox", codes.OxygenSaturation, 80, 10*time.Minute), 3, &out)
	if len(out.Events) != 0 {
		t.Fatalf("late readings moved state: %q", briefs(out.Events))
	}
	if got := e.patients["p1"].Signals[codes.OxygenSaturation].Last; got.V != 97 || !got.T.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("latest SpO2 = %+v, want 97 at +10m", got)
	}

	// Silence is measured in receive time; a late reading received now
	// ends it.
	e.Tick(t0.Add(13*time.Minute), &out)
	late := obs("p1", "ox", codes.OxygenSaturation, 80, 6*time.Minute)
	late.Received = t0.Add(13*time.Minute + 30*time.Second)
	e.Observe(late, 4, &out)
	want := []string{
		"start spo2-silent p1 subject=ox/" + codes.OxygenSaturation + " priority=low at=13m0s",
		"clear spo2-silent p1 subject=ox/" + codes.OxygenSaturation + " priority=low at=6m0s",
	}
	if diff := cmp.Diff(want, briefs(out.Events)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	// The late reading's receive time restarted the silence clock.
	out = Output{}
	e.Tick(t0.Add(15*time.Minute), &out)
	if len(out.Events) != 0 {
		t.Errorf("no-data fired again within its window: %q", briefs(out.Events))
	}
	// The next in-order reading is evaluated again.
	e.Observe(obs("p1", "ox", codes.OxygenSaturation, 80, 16*time.Minute), 5, &out)
	if diff := cmp.Diff([]string{"start spo2-low p1 priority=medium at=16m0s"}, briefs(out.Events)); diff != "" {
		t.Errorf("in-order reading after late ones (-want +got):\n%s", diff)
	}
}

func TestHistoryBounded(t *testing.T) {
	t.Run("by count", func(t *testing.T) {
		e := NewEngine(fixed(Rule{ID: "weight-up", Kind: KindChange, Code: codes.BodyWeight, Op: ">=", Value: 2, Window: Duration(72 * time.Hour), Priority: PriorityMedium}))
		var out Output
		n := maxHistory + 500
		for i := range n {
			e.Observe(obs("p1", "scale", codes.BodyWeight, 80, time.Duration(i)*time.Second), uint64(i+1), &out)
		}
		h := e.patients["p1"].Signals[codes.BodyWeight].History
		if len(h) != maxHistory {
			t.Fatalf("history holds %d points, want %d", len(h), maxHistory)
		}
		if want := t0.Add(time.Duration(n-1) * time.Second); !h[len(h)-1].T.Equal(want) {
			t.Errorf("newest point at %v, want %v", h[len(h)-1].T, want)
		}
		if want := t0.Add(time.Duration(n-maxHistory) * time.Second); !h[0].T.Equal(want) {
			t.Errorf("oldest point at %v, want %v", h[0].T, want)
		}
	})
	t.Run("by time", func(t *testing.T) {
		// A 5-minute rate rule keeps two windows (10 minutes) of history.
		e := NewEngine(fixed(Rule{ID: "hr-rising", Kind: KindRate, Code: codes.HeartRate, Op: ">=", Value: 50, Window: Duration(5 * time.Minute), Priority: PriorityLow}))
		var out Output
		for i := range 31 {
			e.Observe(obs("p1", "m", codes.HeartRate, 80, time.Duration(i)*time.Minute), uint64(i+1), &out)
			e.Observe(obs("p1", "m", codes.OxygenSaturation, 97, time.Duration(i)*time.Minute), uint64(i+1), &out)
		}
		h := e.patients["p1"].Signals[codes.HeartRate].History
		var got []time.Duration
		for _, pt := range h {
			got = append(got, pt.T.Sub(t0))
		}
		var want []time.Duration
		for i := 20; i <= 30; i++ {
			want = append(want, time.Duration(i)*time.Minute)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("HR history (-want +got):\n%s", diff)
		}
		if h := e.patients["p1"].Signals[codes.OxygenSaturation].History; h != nil {
			t.Errorf("SpO2 has no rule that needs history but keeps %d points", len(h))
		}
	})
}

func TestRateNeedsEarlierReading(t *testing.T) {
	rule := Rule{ID: "cgm-falling", Kind: KindRate, Code: codes.InterstitialGlucose, Op: "<=", Value: -2, Window: Duration(5 * time.Minute), Priority: PriorityMedium}
	type pt struct {
		at time.Duration
		v  float64
	}
	tests := []struct {
		name   string
		points []pt
		want   []string
	}{
		{"one reading: no rate", []pt{{0, 200}}, nil},
		{"exactly one window earlier", []pt{{0, 200}, {5 * time.Minute, 180}}, []string{"start cgm-falling p1 priority=medium at=5m0s"}},
		{"too recent a reference (4 min off)", []pt{{0, 200}, {time.Minute, 150}}, nil},
		{"half a window late still counts", []pt{{0, 200}, {7*time.Minute + 30*time.Second, 180}}, []string{"start cgm-falling p1 priority=medium at=7m30s"}},
		{"beyond half a window: no rate", []pt{{0, 200}, {7*time.Minute + 31*time.Second, 150}}, nil},
		{"half a window early still counts", []pt{{0, 200}, {2*time.Minute + 30*time.Second, 190}}, []string{"start cgm-falling p1 priority=medium at=2m30s"}},
		{"a slow fall does not fire", []pt{{0, 200}, {5 * time.Minute, 195}}, nil},
		// The nearest reading to 5 min before is used, not the oldest.
		{"nearest reference wins over an older steeper one", []pt{{0, 300}, {2 * time.Minute, 210}, {7 * time.Minute, 202}}, nil},
		{"nearest reference wins over an older flatter one", []pt{{0, 210}, {2 * time.Minute, 300}, {6*time.Minute + 30*time.Second, 202}}, []string{"start cgm-falling p1 priority=medium at=6m30s"}},
		{
			"no reference leaves a firing condition alone",
			[]pt{{0, 200}, {5 * time.Minute, 180}, {20 * time.Minute, 180}, {25 * time.Minute, 185}},
			[]string{"start cgm-falling p1 priority=medium at=5m0s", "clear cgm-falling p1 priority=medium at=25m0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(fixed(rule))
			var out Output
			for i, p := range tt.points {
				e.Observe(obs("p1", "cgm", codes.InterstitialGlucose, p.v, p.at), uint64(i+1), &out)
			}
			if diff := cmp.Diff(tt.want, briefs(out.Events)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}

	// The value is per minute over the actual gap.
	e := NewEngine(fixed(rule))
	var out Output
	e.Observe(obs("p1", "cgm", codes.InterstitialGlucose, 200, 0), 1, &out)
	e.Observe(obs("p1", "cgm", codes.InterstitialGlucose, 184, 4*time.Minute), 2, &out)
	if len(out.Events) != 1 || !strings.Contains(out.Events[0].Message, "-4 mg/dL/min over 4m0s") {
		t.Errorf("message = %q, want the rate per minute over 4 minutes", briefs(out.Events))
	}
}

func TestChangeReference(t *testing.T) {
	day := 24 * time.Hour
	gain := Rule{ID: "weight-up", Kind: KindChange, Code: codes.BodyWeight, Op: ">=", Value: 2, Window: Duration(72 * time.Hour), Priority: PriorityMedium}
	loss := Rule{ID: "weight-down", Kind: KindChange, Code: codes.BodyWeight, Op: "<=", Value: -2, Window: Duration(72 * time.Hour), Priority: PriorityLow}
	type pt struct {
		at time.Duration
		v  float64
	}
	tests := []struct {
		name   string
		rule   Rule
		points []pt
		want   []string
	}{
		{"a rise from the lowest of the window", gain, []pt{{0, 80}, {day, 79}, {2 * day, 81}}, []string{"start weight-up p1 priority=medium at=48h0m0s"}},
		{"a rise from the first reading is not enough", gain, []pt{{0, 80}, {day, 81}, {2 * day, 81.9}}, nil},
		{"the lowest reading has left the window", gain, []pt{{0, 78}, {day, 79}, {3*day + time.Hour, 80.5}}, nil},
		{"the window edge is inside", gain, []pt{{0, 78}, {3 * day, 80}}, []string{"start weight-up p1 priority=medium at=72h0m0s"}},
		{"a fall from the highest of the window", loss, []pt{{0, 80}, {day, 82}, {2 * day, 80.5}, {2*day + time.Hour, 79.9}}, []string{"start weight-down p1 priority=low at=49h0m0s"}},
		{"no earlier reading", gain, []pt{{0, 80}}, nil},
		{
			"clears when the change is undone", gain,
			[]pt{{0, 80}, {day, 82.5}, {2 * day, 80.5}},
			[]string{"start weight-up p1 priority=medium at=24h0m0s", "clear weight-up p1 priority=medium at=48h0m0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(fixed(tt.rule))
			var out Output
			for i, p := range tt.points {
				e.Observe(obs("p1", "scale", codes.BodyWeight, p.v, p.at), uint64(i+1), &out)
			}
			if diff := cmp.Diff(tt.want, briefs(out.Events)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNEWS2DerivedScore(t *testing.T) {
	e := NewEngine(fixed(Rule{ID: "news2", Kind: KindNEWS2, Scale: 1}))
	var out Output
	seq := uint64(0)
	feed := func(code string, v float64, at time.Duration) {
		seq++
		e.Observe(obs("p1", "dev", code, v, at), seq, &out)
	}
	scores := func() []string {
		var s []string
		for _, r := range out.Derived {
			s = append(s, fmt.Sprintf("%g at %s", r.Value, r.Time.Sub(t0)))
		}
		out.Derived = nil
		return s
	}

	// Six of seven parameters: incomplete, nothing stored.
	feed(codes.RespiratoryRate, 18, 0)
	feed(codes.OxygenSaturation, 97, 0)
	feed(codes.InhaledO2Flow, 0, 0)
	feed(codes.SystolicBP, 120, 0)
	feed(codes.HeartRate, 80, 0)
	feed(codes.ACVPU, 0, 0)
	if got := scores(); got != nil {
		t.Fatalf("an incomplete score was stored: %q", got)
	}
	feed(codes.BodyTemperature, 37, 0)
	if diff := cmp.Diff([]string{"0 at 0s"}, scores()); diff != "" {
		t.Fatalf("complete score (-want +got):\n%s", diff)
	}

	// Unchanged: not stored again within 15 minutes.
	feed(codes.HeartRate, 82, time.Minute)
	feed(codes.OxygenSaturation, 97, 14*time.Minute)
	if got := scores(); got != nil {
		t.Fatalf("an unchanged score was stored again: %q", got)
	}
	// Changed: stored.
	feed(codes.RespiratoryRate, 26, 14*time.Minute+30*time.Second)
	if diff := cmp.Diff([]string{"3 at 14m30s"}, scores()); diff != "" {
		t.Fatalf("changed score (-want +got):\n%s", diff)
	}
	// A reading older than the last stored score never stores one, even a
	// different score (pulse oximeter pulse newer than the ECG rate).
	feed(codes.PulseRate, 120, 14*time.Minute)
	if got := scores(); got != nil {
		t.Fatalf("a score older than the last one was stored: %q", got)
	}
	// Unchanged for 15 minutes: stored again to show it is current.
	feed(codes.HeartRate, 82, 20*time.Minute)
	feed(codes.RespiratoryRate, 26, 29*time.Minute+29*time.Second)
	if got := scores(); got != nil {
		t.Fatalf("stored again before 15 minutes: %q", got)
	}
	feed(codes.OxygenSaturation, 97, 29*time.Minute+30*time.Second)
	if diff := cmp.Diff([]string{"3 at 29m30s"}, scores()); diff != "" {
		t.Fatalf("repeat after 15 minutes (-want +got):\n%s", diff)
	}
	// Stale inputs (RR older than 15 min) make it incomplete again.
	feed(codes.HeartRate, 82, 45*time.Minute)
	if got := scores(); got != nil {
		t.Fatalf("a score with a stale respiratory rate was stored: %q", got)
	}

	// Non-NEWS2 readings never score.
	e2 := NewEngine(fixed(Rule{ID: "news2", Kind: KindNEWS2}))
	var out2 Output
	e2.Observe(obs("p1", "scale", codes.BodyWeight, 80, 0), 1, &out2)
	if len(out2.Derived) != 0 || len(out2.Events) != 0 {
		t.Errorf("a weight produced NEWS2 output: %d scores, %q", len(out2.Derived), briefs(out2.Events))
	}
}

func TestNEWS2DerivedReadingFields(t *testing.T) {
	e := NewEngine(fixed(Rule{ID: "news2", Kind: KindNEWS2, Scale: 1}))
	var out Output
	for i, r := range []reading.Reading{
		obs("p1", "m", codes.RespiratoryRate, 18, 0), obs("p1", "m", codes.OxygenSaturation, 97, 0),
		obs("p1", "s", codes.InhaledO2Flow, 0, 0), bpPanel("p1", "cuff", 120, 80, 0),
		obs("p1", "m", codes.HeartRate, 80, 0), obs("p1", "s", codes.ACVPU, 0, 0), obs("p1", "t", codes.BodyTemperature, 37, time.Second),
	} {
		e.Observe(r, uint64(i+1), &out)
	}
	want := []reading.Reading{{Patient: "p1", Device: NEWS2Device, Code: codes.NEWS2Score, Value: 0, HasValue: true, Unit: "{score}",
		Time: t0.Add(time.Second), Received: t0.Add(time.Second), Source: "rules"}}
	if diff := cmp.Diff(want, out.Derived); diff != "" {
		t.Errorf("derived readings (-want +got):\n%s", diff)
	}
}

func TestTickOrderDeterministic(t *testing.T) {
	rules := []Rule{
		{ID: "any-silent", Kind: KindNoData, Window: Duration(time.Minute), Priority: PriorityLow},
		{ID: "spo2-silent", Kind: KindNoData, Code: codes.OxygenSaturation, Window: Duration(time.Minute), Priority: PriorityMedium},
	}
	run := func() []string {
		e := NewEngine(fixed(rules...))
		var out Output
		seq := uint64(0)
		for _, p := range []string{"pc", "pa", "pb"} {
			for _, dev := range []string{"z-mon", "a-mon"} {
				for _, code := range []string{codes.OxygenSaturation, codes.HeartRate} {
					seq++
					e.Observe(obs(p, dev, code, 90, 0), seq, &out)
				}
			}
		}
		out = Output{}
		e.Tick(t0.Add(2*time.Minute), &out)
		return briefs(out.Events)
	}
	first := run()
	if len(first) != 3*(4+2) {
		t.Fatalf("Tick raised %d events, want 18: %q", len(first), first)
	}
	for range 20 {
		if diff := cmp.Diff(first, run()); diff != "" {
			t.Fatalf("Tick order changed between runs (-first +again):\n%s", diff)
		}
	}
	// Patients sorted; within a patient rules in order, subjects sorted.
	key := func(s string) string {
		f := strings.Fields(s)
		rule := "0"
		if f[1] == "spo2-silent" {
			rule = "1"
		}
		return f[2] + rule + f[3]
	}
	if !sort.SliceIsSorted(first, func(i, j int) bool { return key(first[i]) < key(first[j]) }) {
		t.Errorf("Tick events are not in patient, rule, subject order:\n%s", strings.Join(first, "\n"))
	}
	if !strings.HasPrefix(first[0], "start any-silent pa subject=a-mon/"+codes.OxygenSaturation) {
		t.Errorf("first event %q, want any-silent for pa a-mon SpO2", first[0])
	}
}

// TestExtremeValues: values are range-checked at ingest, but the engine
// must not panic on any finite number or any reading time.
func TestExtremeValues(t *testing.T) {
	var rules []Rule
	seen := map[string]bool{}
	for _, s := range Settings() {
		for _, r := range mustDefaults(t, s) {
			if !seen[r.ID] {
				seen[r.ID] = true
				rules = append(rules, r)
			}
		}
	}
	rules = append(rules,
		Rule{ID: "news2-scale2", Kind: KindNEWS2, Scale: 2},
		Rule{ID: "weight-down", Kind: KindChange, Code: codes.BodyWeight, Op: "<=", Value: -2, Window: Duration(time.Hour), Priority: PriorityLow},
		Rule{ID: "hr-rate", Kind: KindRate, Code: codes.HeartRate, Op: ">", Value: 1, Window: Duration(time.Nanosecond), Priority: PriorityLow},
		Rule{ID: "bg-soon", Kind: KindForecast, Value: 400, Window: Duration(time.Hour), Priority: PriorityHigh},
		Rule{ID: "silent", Kind: KindNoData, Window: Duration(10 * time.Second), Priority: PriorityLow},
	)
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			t.Fatalf("test rule: %v", err)
		}
	}
	values := []float64{0, math.Copysign(0, -1), 1e-300, math.SmallestNonzeroFloat64, -1, -1e308, 1e308, math.MaxFloat64, -math.MaxFloat64, 4, 55, 54.9, 3000}
	times := []time.Time{t0, t0.Add(5 * time.Minute), t0.Add(-5 * time.Minute), {}, time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), t0.Add(10 * time.Minute)}
	e := NewEngine(fixed(rules...))
	var out Output
	seq := uint64(0)
	for _, at := range times {
		for _, c := range codes.All() {
			for _, v := range values {
				seq++
				r := reading.Reading{Patient: "p1", Device: "d", Code: c.LOINC, Value: v, HasValue: true, Unit: c.Unit, Time: at, Received: at}
				if c.IsPanel() {
					r.HasValue = false
					for _, part := range c.Components {
						r.Components = append(r.Components, reading.Component{Code: part, Value: v})
					}
				}
				e.Observe(r, seq, &out)
			}
		}
		e.Tick(at, &out)
	}
	if len(out.Events) == 0 {
		t.Fatal("extreme values raised nothing; the test did not reach the rules")
	}
	for _, ev := range out.Events {
		if math.IsNaN(ev.Value) {
			t.Errorf("event %s carries NaN", brief(ev))
		}
	}
}
