package rules

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
)

// fuzzReadings exercise every rule kind: a CGM trace 5 minutes apart that
// falls fast (rate, forecast, threshold), a full NEWS2 set, a BP panel,
// weights days apart, device flags, a late reading and a clock running
// ahead.
func fuzzReadings() []reading.Reading {
	var rs []reading.Reading
	for i, v := range []float64{160, 130, 100, 80, 62, 50, 45} {
		rs = append(rs, obs("p1", "cgm", codes.InterstitialGlucose, v, time.Duration(i)*5*time.Minute))
	}
	rs = append(rs,
		obs("p1", "meter", codes.CapillaryGlucose, 52, 31*time.Minute),
		obs("p1", "mon", codes.RespiratoryRate, 26, 10*time.Minute),
		obs("p1", "mon", codes.OxygenSaturation, 84, 10*time.Minute),
		obs("p1", "staff", codes.InhaledO2Flow, 2, 10*time.Minute),
		bpPanel("p1", "cuff", 85, 50, 10*time.Minute),
		obs("p1", "mon", codes.HeartRate, 135, 10*time.Minute),
		obs("p1", "staff", codes.ACVPU, 2, 10*time.Minute),
		obs("p1", "therm", codes.BodyTemperature, 39.5, 10*time.Minute),
		obs("p1", "mon", codes.HeartRate, 30, 12*time.Minute),
		obs("p1", "mon", codes.OxygenSaturation, 97, 5*time.Minute), // late
		obs("p1", "scale", codes.BodyWeight, 80, -48*time.Hour),
		obs("p1", "scale", codes.BodyWeight, 83, 40*time.Minute),
		obs("p1", "mon", codes.Battery, 5, 41*time.Minute),
		obs("p1", "cgm", codes.SensorOff, 1, 41*time.Minute),
		obs("p1", "mon", codes.LeadOff, 1, 41*time.Minute),
		obs("p1", "pendant", codes.Fall, 1, 42*time.Minute),
		obs("p1", "pendant", codes.PanicButton, 1, 42*time.Minute),
		obs("p1", "mon", codes.RespiratoryRate, 35, 43*time.Minute),
		obs("p1", "mon", codes.PulseRate, 150, 43*time.Minute),
		obs("p1", "mon", codes.Steps, 100, 43*time.Minute),
	)
	ahead := obs("p1", "watch", codes.HeartRate, 90, 50*time.Minute)
	ahead.Received = t0.Add(44 * time.Minute)
	return append(rs, ahead)
}

func addProfileSeeds(f *testing.F) {
	for _, s := range Settings() {
		p, _ := Defaults(s)
		p.Setting = s
		b, err := json.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "profiles", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"rules":[{"id":"spo2-low","disabled":true},{"id":"x","kind":"rate","code":"hr","op":">","value":1,"window":"1ns","priority":"low"}]}`))
	f.Add([]byte(`{"rules":[{"id":"w","kind":"change","code":"weight","op":"<=","value":-0.1,"window":1e-9,"priority":"high"}]}`))
	f.Add([]byte(`{"rules":[{"id":"f","kind":"forecast","value":400,"window":"1h","priority":"high"},{"id":"n","kind":"no_data","window":10,"priority":"low"}]}`))
	f.Add([]byte(`{"setting":"icu","rules":[{"id":"news2","kind":"news2","scale":2},{"id":"s","kind":"clock_skew","window":"5s","priority":"low"}]}`))
	f.Add([]byte(`{"rules":[{"id":"e","kind":"event","code":"fall","op":">","value":0,"clear":0,"priority":"low","latching":false}]}`))
}

// FuzzProfile: any document that validates and merges onto its setting's
// defaults yields a working rule set; nothing panics on the way.
func FuzzProfile(f *testing.F) {
	addProfileSeeds(f)
	readings := fuzzReadings()
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Profile
		if err := json.Unmarshal(data, &p); err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			return
		}
		setting := p.Setting
		if setting == "" {
			setting = SettingWard
		}
		defs, ok := Defaults(setting)
		if !ok {
			t.Fatalf("setting %q validated but has no defaults", setting)
		}
		rs, err := Effective(defs, p)
		if err != nil {
			return
		}
		known := map[string]bool{}
		for _, r := range rs {
			if known[r.ID] {
				t.Fatalf("effective rules repeat id %s", r.ID)
			}
			known[r.ID] = true
			if r.Disabled {
				t.Fatalf("effective rule %s is disabled", r.ID)
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("effective rule does not validate: %v", err)
			}
		}
		for _, d := range defs.Rules {
			if d.Mandatory && !known[d.ID] {
				t.Fatalf("mandatory rule %s missing from the effective rules", d.ID)
			}
		}

		e := NewEngine(fixed(rs...))
		var out Output
		for i, r := range readings {
			e.Observe(r, uint64(i+1), &out)
			if i%5 == 0 {
				e.Tick(r.Received.Add(time.Minute), &out)
			}
		}
		e.Tick(t0.Add(72*time.Hour), &out)
		for _, ev := range out.Events {
			if !known[ev.Rule] {
				t.Fatalf("event for unknown rule %q", ev.Rule)
			}
		}
		if _, err := e.Snapshot(); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
	})
}

// FuzzRestore: Restore either refuses a snapshot or leaves an engine that
// works, null entries included.
func FuzzRestore(f *testing.F) {
	e := NewEngine(fixed(mustDefaults(f, SettingWard)...))
	var out Output
	for i, r := range fuzzReadings() {
		e.Observe(r, uint64(i+1), &out)
	}
	snap, err := e.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snap)
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"p1":null,"p2":{"seen":{"k":null},"conds":null}}`))
	f.Add([]byte(`{"p1":{"conds":{"spo2-low|":{"pending":true,"onset":"2026-01-05T08:00:00Z"}},"signals":{"59408-5":{"last":{"t":"2026-01-05T08:00:00Z","v":80},"device":"m","history":[{"t":"2026-01-05T07:00:00Z","v":90}]}}}}`))
	readings := fuzzReadings()
	f.Fuzz(func(t *testing.T, data []byte) {
		e := NewEngine(fixed(mustDefaults(t, SettingWard)...))
		if err := e.Restore(data); err != nil {
			return
		}
		var out Output
		for i, r := range readings {
			e.Observe(r, uint64(i+1), &out)
		}
		e.Tick(t0.Add(time.Hour), &out)
		if _, err := e.Snapshot(); err != nil {
			t.Fatalf("Snapshot after Restore: %v", err)
		}
	})
}

// BenchmarkObserve: one ward of 10,000 patients on the ward defaults,
// monitors sending HR, SpO2 and RR round-robin.
func BenchmarkObserve(b *testing.B) {
	const patients = 10_000
	rules := mustDefaults(b, SettingWard)
	e := NewEngine(fixed(rules...))
	ids := make([]string, patients)
	for i := range ids {
		ids[i] = "patient-" + strconv.Itoa(i)
	}
	kinds := []struct {
		code, unit string
		base       float64
	}{{codes.HeartRate, "/min", 75}, {codes.OxygenSaturation, "%", 96}, {codes.RespiratoryRate, "/min", 16}}
	mk := func(i int) reading.Reading {
		k := kinds[(i/patients)%len(kinds)]
		// Each patient's readings move forward in time; values wander a little.
		at := t0.Add(time.Duration(i/patients) * time.Second)
		return reading.Reading{Patient: ids[i%patients], Device: "mon", Code: k.code, Value: k.base + float64(i%7) - 3, HasValue: true,
			Unit: k.unit, Time: at, Received: at, Source: "bench"}
	}
	var out Output
	// Warm up: every patient has state and rules loaded.
	for i := range 3 * patients {
		e.Observe(mk(i), uint64(i+1), &out)
	}
	out = Output{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 3*patients + i
		e.Observe(mk(n), uint64(n+1), &out)
		if len(out.Events) > 1024 || len(out.Derived) > 1024 {
			out.Events, out.Derived = out.Events[:0], out.Derived[:0]
		}
	}
}
