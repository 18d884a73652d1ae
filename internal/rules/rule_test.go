package rules

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/codes"
)

// ptr returns a pointer to v (clear values, latching flags).
func ptr[T any](v T) *T { return &v }

func TestRuleValidate(t *testing.T) {
	// base is a valid threshold rule that each case changes in one way.
	base := func() Rule {
		return Rule{ID: "spo2-low", Kind: KindThreshold, Code: codes.OxygenSaturation, Op: "<", Value: 90, Clear: ptr(92.0), Priority: PriorityMedium}
	}
	with := func(change func(r *Rule)) Rule {
		r := base()
		change(&r)
		return r
	}
	tests := []struct {
		name    string
		rule    Rule
		wantErr string // "" means valid
	}{
		// Identity and common fields.
		{"empty id", with(func(r *Rule) { r.ID = "" }), "rule id"},
		{"upper-case id", with(func(r *Rule) { r.ID = "SpO2-low" }), "rule id"},
		{"id with underscore", with(func(r *Rule) { r.ID = "spo2_low" }), "rule id"},
		{"id starting with dash", with(func(r *Rule) { r.ID = "-spo2" }), "rule id"},
		{"id of 65 characters", with(func(r *Rule) { r.ID = strings.Repeat("a", 65) }), "rule id"},
		{"id of 64 characters", with(func(r *Rule) { r.ID = strings.Repeat("a", 64) }), ""},
		{"name too long", with(func(r *Rule) { r.Name = strings.Repeat("n", maxNameSize+1) }), "name longer than"},
		{"missing priority", with(func(r *Rule) { r.Priority = "" }), "priority is required"},
		{"unknown priority", with(func(r *Rule) { r.Priority = "urgent" }), `priority "urgent" is not high, medium or low`},
		{"unknown category", with(func(r *Rule) { r.Category = "billing" }), `category "billing"`},
		{"negative for", with(func(r *Rule) { r.For = Duration(-time.Second) }), "for must be between"},
		{"for over a day", with(func(r *Rule) { r.For = Duration(25 * time.Hour) }), "for must be between"},
		{"negative window", with(func(r *Rule) { r.Window = Duration(-time.Second) }), "window must be between"},
		{"window over 31 days", with(func(r *Rule) { r.Window = Duration(32 * 24 * time.Hour) }), "window must be between"},
		{"NaN value", with(func(r *Rule) { r.Value = math.NaN() }), "finite"},
		{"infinite value", with(func(r *Rule) { r.Value = math.Inf(-1) }), "finite"},
		{"NaN clear", with(func(r *Rule) { r.Clear = ptr(math.NaN()) }), "finite"},
		{"missing kind", with(func(r *Rule) { r.Kind = "" }), "kind is required"},
		{"unknown kind", with(func(r *Rule) { r.Kind = "average" }), `unknown kind "average"`},

		// Threshold.
		{"missing code", with(func(r *Rule) { r.Code = "" }), "code is required"},
		{"unknown code", with(func(r *Rule) { r.Code = "hartrate" }), `unknown code "hartrate"`},
		{"panel code", with(func(r *Rule) { r.Code = codes.BloodPressurePanel }), "is a panel"},
		{"missing op", with(func(r *Rule) { r.Op = "" }), "op is required"},
		{"unknown op", with(func(r *Rule) { r.Op = "==" }), `op "==" is not`},
		{"SpO2 below 120 is outside the range", with(func(r *Rule) { r.Value = 120; r.Clear = nil }), "outside what"},
		{"temperature above 60 is outside the range", Rule{ID: "fever", Kind: KindThreshold, Code: codes.BodyTemperature, Op: ">", Value: 60, Priority: PriorityLow}, "outside what"},
		{"negative threshold is outside the range", with(func(r *Rule) { r.Value = -1; r.Clear = nil }), "outside what"},
		{"clear outside the range", with(func(r *Rule) { r.Clear = ptr(101.0) }), "clear 101 is outside"},
		{"SpO2 below 0 can never be true", with(func(r *Rule) { r.Value = 0; r.Clear = nil }), "can never be true"},
		{"SpO2 above 100 can never be true", with(func(r *Rule) { r.Op = ">"; r.Value = 100; r.Clear = nil }), "can never be true"},
		{"SpO2 at most 0 can be true", with(func(r *Rule) { r.Op = "<="; r.Value = 0; r.Clear = nil }), ""},
		{"SpO2 at least 100 can be true", with(func(r *Rule) { r.Op = ">="; r.Value = 100; r.Clear = nil }), ""},
		{"clear below a low threshold", with(func(r *Rule) { r.Clear = ptr(85.0) }), "must not be below the threshold"},
		{"clear above a high threshold", Rule{ID: "hr-high", Kind: KindThreshold, Code: codes.HeartRate, Op: ">", Value: 130, Clear: ptr(140.0), Priority: PriorityMedium}, "must not be above the threshold"},
		{"clear equal to the threshold", with(func(r *Rule) { r.Clear = ptr(90.0) }), ""},
		{"threshold without clear", with(func(r *Rule) { r.Clear = nil }), ""},
		{"alias code", with(func(r *Rule) { r.Code = "spo2" }), ""},

		// Event.
		{"event", Rule{ID: "fall", Kind: KindEvent, Code: codes.Fall, Op: ">=", Value: 1, Priority: PriorityHigh}, ""},
		{"event outside the flag range", Rule{ID: "fall", Kind: KindEvent, Code: codes.Fall, Op: ">=", Value: 2, Priority: PriorityHigh}, "outside what"},
		{"event without op", Rule{ID: "fall", Kind: KindEvent, Code: codes.Fall, Value: 1, Priority: PriorityHigh}, "op is required"},

		// Rate.
		{"rate", Rule{ID: "cgm-falling", Kind: KindRate, Code: codes.InterstitialGlucose, Op: "<=", Value: -2, Window: Duration(5 * time.Minute), Priority: PriorityMedium}, ""},
		{"rate without window uses the default", Rule{ID: "cgm-falling", Kind: KindRate, Code: codes.InterstitialGlucose, Op: "<=", Value: -2, Priority: PriorityMedium}, ""},
		{"rate on a panel", Rule{ID: "bp-rate", Kind: KindRate, Code: codes.BloodPressurePanel, Op: ">", Value: 5, Priority: PriorityLow}, "is a panel"},
		{"rate without op", Rule{ID: "cgm-falling", Kind: KindRate, Code: codes.InterstitialGlucose, Value: -2, Priority: PriorityMedium}, "op is required"},
		{"rate clear on the wrong side", Rule{ID: "cgm-falling", Kind: KindRate, Code: codes.InterstitialGlucose, Op: "<=", Value: -2, Clear: ptr(-3.0), Priority: PriorityMedium}, "must not be below"},

		// Change.
		{"change rise", Rule{ID: "weight-gain", Kind: KindChange, Code: codes.BodyWeight, Op: ">=", Value: 2, Window: Duration(72 * time.Hour), Priority: PriorityMedium}, ""},
		{"change fall", Rule{ID: "weight-loss", Kind: KindChange, Code: codes.BodyWeight, Op: "<=", Value: -2, Window: Duration(72 * time.Hour), Priority: PriorityLow}, ""},
		{"change without window", Rule{ID: "weight-gain", Kind: KindChange, Code: codes.BodyWeight, Op: ">=", Value: 2, Priority: PriorityMedium}, "needs a window"},
		{"change of 0", Rule{ID: "weight-gain", Kind: KindChange, Code: codes.BodyWeight, Op: ">=", Value: 0, Window: Duration(72 * time.Hour), Priority: PriorityMedium}, "non-zero value"},
		{"change with unknown code", Rule{ID: "weight-gain", Kind: KindChange, Code: "mass", Op: ">=", Value: 2, Window: Duration(time.Hour), Priority: PriorityMedium}, "unknown code"},

		// NEWS2.
		{"news2 without priority", Rule{ID: "news2", Kind: KindNEWS2}, ""},
		{"news2 scale 2", Rule{ID: "news2", Kind: KindNEWS2, Scale: 2}, ""},
		{"news2 scale 3", Rule{ID: "news2", Kind: KindNEWS2, Scale: 3}, "scale must be 1 or 2"},

		// Forecast.
		{"forecast on any glucose", Rule{ID: "low-soon", Kind: KindForecast, Value: 55, Priority: PriorityHigh}, ""},
		{"forecast on CGM", Rule{ID: "low-soon", Kind: KindForecast, Code: codes.InterstitialGlucose, Value: 55, Window: Duration(time.Hour), Priority: PriorityHigh}, ""},
		{"forecast on capillary glucose", Rule{ID: "low-soon", Kind: KindForecast, Code: codes.CapillaryGlucose, Value: 70, Priority: PriorityHigh}, ""},
		{"forecast on heart rate", Rule{ID: "low-soon", Kind: KindForecast, Code: codes.HeartRate, Value: 55, Priority: PriorityHigh}, "forecasts are made for glucose"},
		{"forecast below 20", Rule{ID: "low-soon", Kind: KindForecast, Value: 19, Priority: PriorityHigh}, "outside 20–400"},
		{"forecast above 400", Rule{ID: "low-soon", Kind: KindForecast, Value: 401, Priority: PriorityHigh}, "outside 20–400"},
		{"forecast horizon over an hour", Rule{ID: "low-soon", Kind: KindForecast, Value: 55, Window: Duration(61 * time.Minute), Priority: PriorityHigh}, "at most 1h"},

		// No data.
		{"no data on every signal", Rule{ID: "silent", Kind: KindNoData, Window: Duration(10 * time.Second), Priority: PriorityLow}, ""},
		{"no data on one code", Rule{ID: "spo2-silent", Kind: KindNoData, Code: codes.OxygenSaturation, Window: Duration(time.Minute), Priority: PriorityLow}, ""},
		{"no data window under 10s", Rule{ID: "silent", Kind: KindNoData, Window: Duration(9 * time.Second), Priority: PriorityLow}, "at least 10s"},
		{"no data without window", Rule{ID: "silent", Kind: KindNoData, Priority: PriorityLow}, "at least 10s"},
		{"no data on a panel", Rule{ID: "bp-silent", Kind: KindNoData, Code: codes.BloodPressurePanel, Window: Duration(time.Hour), Priority: PriorityLow}, "is a panel"},

		// Clock skew.
		{"clock skew", Rule{ID: "skew", Kind: KindClockSkew, Window: Duration(5 * time.Second), Priority: PriorityLow}, ""},
		{"clock skew under 5s", Rule{ID: "skew", Kind: KindClockSkew, Window: Duration(4 * time.Second), Priority: PriorityLow}, "at least 5s"},

		// Overrides.
		{"bare switch-off", Rule{ID: "spo2-low", Disabled: true}, ""},
		{"bare switch-off with a bad id", Rule{ID: "SPO2", Disabled: true}, "rule id"},
		{"bare entry that does not switch off", Rule{ID: "spo2-low"}, "priority is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rule.Validate()
			checkErr(t, err, tt.wantErr)
		})
	}
}

// TestEventRuleThatCanNeverFire: Validate refuses thresholds that can never
// be true; an event rule on a 0/1 flag with "> 1" can never be true either.
func TestEventRuleThatCanNeverFire(t *testing.T) {
	r := Rule{ID: "fall", Kind: KindEvent, Code: codes.Fall, Op: ">", Value: 1, Priority: PriorityHigh}
	checkErr(t, r.Validate(), "can never be true")
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("Validate() = %v, want no error", err)
	case want != "" && err == nil:
		t.Fatalf("Validate() = nil, want an error containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("Validate() = %q, want it to contain %q", err, want)
	}
}

func TestProfileValidate(t *testing.T) {
	spo2Low := Rule{ID: "spo2-low", Kind: KindThreshold, Code: codes.OxygenSaturation, Op: "<", Value: 90, Priority: PriorityMedium}
	hrHigh := Rule{ID: "hr-high", Kind: KindThreshold, Code: codes.HeartRate, Op: ">", Value: 130, Priority: PriorityMedium}
	many := make([]Rule, MaxRules+1)
	for i := range many {
		many[i] = spo2Low
		many[i].ID = "r" + strings.Repeat("x", i%60) + string(rune('a'+i%26))
	}
	tests := []struct {
		name    string
		profile Profile
		wantErr []string // every one must appear; nil means valid
	}{
		{"empty", Profile{}, nil},
		{"two rules", Profile{Rules: []Rule{spo2Low, hrHigh}}, nil},
		{"known setting", Profile{Setting: SettingHome, Rules: []Rule{spo2Low}}, nil},
		{"unknown setting", Profile{Setting: "hospice"}, []string{`unknown care setting "hospice"`}},
		{"duplicate ids", Profile{Rules: []Rule{spo2Low, hrHigh, spo2Low}}, []string{"rule id spo2-low is used twice"}},
		{"too many rules", Profile{Rules: many}, []string{"at most 200 rules"}},
		{"exactly the maximum", Profile{Rules: many[:MaxRules]}, nil},
		{
			"every bad rule is reported",
			Profile{Rules: []Rule{{ID: "a", Kind: "average"}, spo2Low, {ID: "b", Kind: KindThreshold, Code: "nope", Op: "<", Value: 1, Priority: PriorityLow}}},
			[]string{"rule a: priority is required", `rule b: unknown code "nope"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.profile.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestProfileValidateNormalisesAliases(t *testing.T) {
	p := Profile{Rules: []Rule{
		{ID: "a", Kind: KindThreshold, Code: "spo2", Op: "<", Value: 90, Priority: PriorityMedium},
		{ID: "b", Kind: KindThreshold, Code: " HR ", Op: ">", Value: 130, Priority: PriorityMedium},
		{ID: "c", Kind: KindForecast, Code: "cgm", Value: 55, Priority: PriorityHigh}, // an alias is only glucose once normalised
		{ID: "d", Kind: KindNoData, Code: "MDC_PULS_OXIM_SAT_O2", Window: Duration(time.Minute), Priority: PriorityLow},
		{ID: "e", Kind: KindThreshold, Code: codes.HeartRate, Op: "<", Value: 40, Priority: PriorityHigh},
	}}
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	var got []string
	for _, r := range p.Rules {
		got = append(got, r.Code)
	}
	want := []string{codes.OxygenSaturation, codes.HeartRate, codes.InterstitialGlucose, codes.OxygenSaturation, codes.HeartRate}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("codes after Validate (-want +got):\n%s", diff)
	}
}

func TestDefaultsValidate(t *testing.T) {
	settings := Settings()
	if diff := cmp.Diff([]string{SettingHome, SettingICU, SettingWard}, settings); diff != "" {
		t.Errorf("Settings() (-want +got):\n%s", diff)
	}
	for _, s := range settings {
		t.Run(s, func(t *testing.T) {
			if !IsSetting(s) {
				t.Errorf("IsSetting(%q) = false", s)
			}
			p, ok := Defaults(s)
			if !ok {
				t.Fatalf("Defaults(%q) not found", s)
			}
			if len(p.Rules) == 0 {
				t.Fatalf("Defaults(%q) has no rules", s)
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("Defaults(%q).Validate() = %v", s, err)
			}
			mandatory := 0
			for _, r := range p.Rules {
				if r.Mandatory {
					mandatory++
				}
			}
			if mandatory == 0 {
				t.Errorf("Defaults(%q) has no mandatory rule", s)
			}
			// A profile stored as JSON and read back validates the same.
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var back Profile
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("unmarshal %s: %v", b, err)
			}
			if diff := cmp.Diff(p, back); diff != "" {
				t.Errorf("JSON round trip (-want +got):\n%s", diff)
			}
		})
	}
	if _, ok := Defaults("hospice"); ok || IsSetting("hospice") {
		t.Error("an unknown setting has defaults")
	}
}

func TestDefaultsAreCopies(t *testing.T) {
	p, _ := Defaults(SettingWard)
	p.Rules[0].ID = "changed"
	p.Rules = append(p.Rules[:0], p.Rules[1:]...)
	again, _ := Defaults(SettingWard)
	if again.Rules[0].ID == "changed" || again.Rules[0].ID != "news2" {
		t.Fatalf("changing a returned profile changed the built-in defaults: first rule %q", again.Rules[0].ID)
	}
}

func TestEffective(t *testing.T) {
	ward, _ := Defaults(SettingWard)
	ids := func(rs []Rule) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	find := func(rs []Rule, id string) (Rule, bool) {
		for _, r := range rs {
			if r.ID == id {
				return r, true
			}
		}
		return Rule{}, false
	}
	without := func(drop ...string) []string {
		var out []string
		for _, id := range ids(ward.Rules) {
			if !contains(drop, id) {
				out = append(out, id)
			}
		}
		return out
	}
	tighter := Rule{ID: "spo2-low", Kind: KindThreshold, Code: codes.OxygenSaturation, Op: "<", Value: 88, Clear: ptr(90.0), Priority: PriorityHigh}
	extra := Rule{ID: "temp-high", Kind: KindThreshold, Code: codes.BodyTemperature, Op: ">", Value: 39, Priority: PriorityLow}

	tests := []struct {
		name    string
		patient Profile
		wantIDs []string
		check   func(t *testing.T, rs []Rule)
		wantErr string
	}{
		{"no overrides", Profile{}, ids(ward.Rules), nil, ""},
		{
			"override replaces in place", Profile{Rules: []Rule{tighter}}, ids(ward.Rules),
			func(t *testing.T, rs []Rule) {
				got, _ := find(rs, "spo2-low")
				if diff := cmp.Diff(tighter, got); diff != "" {
					t.Errorf("spo2-low (-want +got):\n%s", diff)
				}
			}, "",
		},
		{"disable switches off", Profile{Rules: []Rule{{ID: "spo2-low", Disabled: true}, {ID: "news2", Disabled: true}}}, without("spo2-low", "news2"), nil, ""},
		{"a replacement that is disabled is off", Profile{Rules: []Rule{func() Rule { r := tighter; r.Disabled = true; return r }()}}, without("spo2-low"), nil, ""},
		{"added rules appear at the end", Profile{Rules: []Rule{extra}}, append(ids(ward.Rules), "temp-high"), nil, ""},
		{"a disabled added rule is off", Profile{Rules: []Rule{func() Rule { r := extra; r.Disabled = true; return r }()}}, ids(ward.Rules), nil, ""},
		{"mandatory rule cannot be disabled", Profile{Rules: []Rule{{ID: "glucose-urgent-low", Disabled: true}}}, nil, nil, "glucose-urgent-low is mandatory"},
		{
			"mandatory rule cannot be changed",
			Profile{Rules: []Rule{{ID: "glucose-urgent-low", Kind: KindThreshold, Code: codes.CapillaryGlucose, Op: "<=", Value: 40, Priority: PriorityHigh}}},
			nil, nil, "glucose-urgent-low is mandatory",
		},
		{"switching off an unknown id", Profile{Rules: []Rule{{ID: "no-such-rule", Disabled: true}}}, nil, nil, "no default rule with that id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.patient.Validate(); err != nil {
				t.Fatalf("patient profile does not validate: %v", err)
			}
			before, _ := Defaults(SettingWard)
			rs, err := Effective(before, tt.patient)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Effective() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Effective() = %v", err)
			}
			if diff := cmp.Diff(tt.wantIDs, ids(rs)); diff != "" {
				t.Errorf("rule ids (-want +got):\n%s", diff)
			}
			for _, r := range rs {
				if r.Disabled {
					t.Errorf("rule %s is disabled but effective", r.ID)
				}
			}
			if got, ok := find(rs, "glucose-urgent-low"); !ok || !got.Mandatory || got.Value != 55 {
				t.Errorf("mandatory glucose-urgent-low = %+v, %v; want the default", got, ok)
			}
			if tt.check != nil {
				tt.check(t, rs)
			}
			// The defaults passed in are not changed.
			if diff := cmp.Diff(ward, before); diff != "" {
				t.Errorf("Effective changed its defaults (-want +got):\n%s", diff)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{`"90s"`, 90 * time.Second, ""},
		{`"5m"`, 5 * time.Minute, ""},
		{`"72h"`, 72 * time.Hour, ""},
		{`"1m30s"`, 90 * time.Second, ""},
		{`"250ms"`, 250 * time.Millisecond, ""},
		{`90`, 90 * time.Second, ""},
		{`1.5`, 1500 * time.Millisecond, ""},
		{`0`, 0, ""},
		{`"90"`, 0, "use a form such as 60s"},
		{`"soon"`, 0, "use a form such as 60s"},
		{`""`, 0, "use a form such as 60s"},
		{`true`, 0, "duration must be a string"},
		{`{"s":90}`, 0, "duration must be a string"},
		{`[90]`, 0, "duration must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := json.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Unmarshal(%s) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%s) = %v", tt.in, err)
			}
			if time.Duration(d) != tt.want {
				t.Errorf("Unmarshal(%s) = %v, want %v", tt.in, time.Duration(d), tt.want)
			}
		})
	}

	// Inside a rule, and written back in the string form.
	var r Rule
	if err := json.Unmarshal([]byte(`{"id":"x","for":"1m30s","window":120}`), &r); err != nil {
		t.Fatal(err)
	}
	if time.Duration(r.For) != 90*time.Second || time.Duration(r.Window) != 2*time.Minute {
		t.Errorf("for, window = %v, %v; want 1m30s, 2m0s", time.Duration(r.For), time.Duration(r.Window))
	}
	b, err := json.Marshal(struct{ D Duration }{Duration(90 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"D":"1m30s"}` {
		t.Errorf("Marshal = %s, want {\"D\":\"1m30s\"}", b)
	}
}

func TestRuleDefaults(t *testing.T) {
	tests := []struct {
		rule         Rule
		wantCategory Category
		wantLatching bool
	}{
		{Rule{Kind: KindThreshold, Priority: PriorityHigh}, CategoryClinical, true},
		{Rule{Kind: KindThreshold, Priority: PriorityMedium}, CategoryClinical, false},
		{Rule{Kind: KindThreshold, Priority: PriorityHigh, Latching: ptr(false)}, CategoryClinical, false},
		{Rule{Kind: KindThreshold, Priority: PriorityLow, Latching: ptr(true), Category: CategoryTechnical}, CategoryTechnical, true},
		{Rule{Kind: KindNoData, Priority: PriorityMedium}, CategoryTechnical, false},
		{Rule{Kind: KindClockSkew, Priority: PriorityLow}, CategoryTechnical, false},
		{Rule{Kind: KindEvent, Priority: PriorityLow}, CategoryEvent, true},
	}
	for _, tt := range tests {
		if got := tt.rule.CategoryOf(); got != tt.wantCategory {
			t.Errorf("%+v: CategoryOf() = %s, want %s", tt.rule, got, tt.wantCategory)
		}
		if got := tt.rule.IsLatching(); got != tt.wantLatching {
			t.Errorf("%+v: IsLatching() = %v, want %v", tt.rule, got, tt.wantLatching)
		}
	}
	if PriorityLow.Rank() >= PriorityMedium.Rank() || PriorityMedium.Rank() >= PriorityHigh.Rank() || Priority("").Rank() != 0 || Priority("x").Rank() != 0 {
		t.Error("Rank does not order none < low < medium < high")
	}
}

// TestProfileDocuments checks the hand-written profile documents in
// testdata/profiles (also the fuzz seed corpus): valid-*.json must decode
// and validate, invalid-*.json must fail with the message in their
// "expect" file.
func TestProfileDocuments(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "profiles", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no profile documents: %v", err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var p Profile
			err = json.Unmarshal(b, &p)
			if err == nil {
				err = p.Validate()
			}
			if strings.HasPrefix(name, "valid-") {
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				setting := p.Setting
				if setting == "" {
					setting = SettingWard
				}
				defs, _ := Defaults(setting)
				if _, err := Effective(defs, p); err != nil {
					t.Fatalf("Effective: %v", err)
				}
				return
			}
			want, rerr := os.ReadFile(strings.TrimSuffix(file, ".json") + ".expect")
			if rerr != nil {
				t.Fatalf("invalid document without .expect file: %v", rerr)
			}
			if err == nil {
				defs, _ := Defaults(SettingWard)
				_, err = Effective(defs, p)
			}
			if err == nil {
				t.Fatalf("%s is accepted, want %q", name, strings.TrimSpace(string(want)))
			}
			if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
				t.Fatalf("error %q, want it to contain %q", err, strings.TrimSpace(string(want)))
			}
		})
	}
}
