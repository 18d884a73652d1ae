package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/senml"
)

// recorder is a Sender that keeps every payload.
type recorder struct {
	mu   sync.Mutex
	sent []sent
	fail func(d *Device) error
}

type sent struct {
	device  string
	payload string
}

func (r *recorder) Send(ctx context.Context, d *Device, payload []byte) error {
	if r.fail != nil {
		if err := r.fail(d); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sent{d.ID, string(payload)})
	return nil
}

// stream returns the payloads in a canonical order (sends are concurrent).
func (r *recorder) stream() []string {
	var out []string
	for _, s := range r.sent {
		out = append(out, s.device+" "+s.payload)
	}
	slices.Sort(out)
	return out
}

var t0 = time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)

// registered is a population with made-up ids, as if registered.
func registered(ward, home int, seed uint64) []Patient {
	ps := Population(ward, home, "", seed)
	for i := range ps {
		ps[i].ID = "p-" + ps[i].Label
		for j := range ps[i].Devices {
			ps[i].Devices[j].ID = fmt.Sprintf("d-%s-%s", ps[i].Label, ps[i].Devices[j].Kind)
		}
	}
	return ps
}

type value struct {
	code  string
	value float64
}

// decode runs a payload through Tend's own SenML decoder, as ingest
// would; blood-pressure panels are flattened into their components.
func decode(t *testing.T, payload string) []value {
	t.Helper()
	ms, err := senml.DecodeJSON([]byte(payload), t0.Add(27*time.Hour), senml.DefaultLimits)
	if err != nil {
		t.Fatalf("Tend refuses %s: %v", payload, err)
	}
	var out []value
	for _, m := range ms {
		out = append(out, value{m.Code, m.Value})
		for _, c := range m.Components {
			out = append(out, value{c.Code, c.Value})
		}
	}
	return out
}

func run(t *testing.T, cfg Config) (Report, *recorder) {
	t.Helper()
	r := &recorder{}
	cfg.Sender = r
	if cfg.Start.IsZero() {
		cfg.Start = t0
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep, r
}

func TestSameSeedSameReadings(t *testing.T) {
	specs := []ScenarioSpec{{Name: Hypoxia, Rate: 4}, {Name: Sepsis, Share: 0.5, At: 10 * time.Minute}, {Name: FallNoResponse, Rate: 3}}
	cfg := func(seed uint64, conc int) Config {
		return Config{Patients: registered(4, 6, 1), Seed: seed, Duration: 2 * time.Hour, Scenarios: specs, Concurrency: conc}
	}
	repA, a := run(t, cfg(42, 1))
	repB, b := run(t, cfg(42, 64))
	_, c := run(t, cfg(43, 64))
	if repA.Readings == 0 || len(a.sent) == 0 {
		t.Fatal("nothing was sent")
	}
	if !slices.Equal(a.stream(), b.stream()) {
		t.Error("same seed, different readings")
	}
	if repA.Readings != repB.Readings || !slices.EqualFunc(repA.Truth, repB.Truth, func(x, y TruthEvent) bool { return x == y }) {
		t.Error("same seed, different report or ground truth")
	}
	if slices.Equal(a.stream(), c.stream()) {
		t.Error("different seeds gave the same readings")
	}
}

// Every payload must be SenML that Tend's decoder accepts, with the LOINC
// codes and canonical units of the codes table.
func TestPayloadsDecode(t *testing.T) {
	_, r := run(t, Config{Patients: registered(2, 6, 2), Seed: 7, Duration: 26 * time.Hour,
		Scenarios: []ScenarioSpec{{Name: HypoglycaemiaFast, Share: 1, At: time.Hour}}})
	names := map[string]int{}
	for _, s := range r.sent {
		for _, v := range decode(t, s.payload) {
			names[v.code]++
		}
	}
	for _, code := range []string{"8867-4", "59408-5", "9279-1", "8480-6", "8462-4", "8310-5", "29463-7", "99504-3", "41653-7", "55423-8", "battery"} {
		if names[code] == 0 {
			t.Errorf("no %s readings in 26 h of a mixed population (got %v)", code, names)
		}
	}
}

// A scenario changes the physiology it should, and its start and end are
// in the ground truth.
func TestScenarioEffects(t *testing.T) {
	tests := []struct {
		scenario string
		code     string
		ward     bool
		check    func(min, max float64) bool
		want     string
	}{
		{Hypoxia, "59408-5", true, func(lo, hi float64) bool { return lo <= 84 }, "SpO2 down to ≤ 84"},
		{AtrialFibrillation, "8867-4", true, func(lo, hi float64) bool { return hi >= 140 }, "HR up to ≥ 140"},
		{HypertensiveCrisis, "8480-6", true, func(lo, hi float64) bool { return hi >= 200 }, "SBP up to ≥ 200"},
		{Sepsis, "8310-5", true, func(lo, hi float64) bool { return hi >= 38.5 }, "temperature ≥ 38.5"},
		{HypoglycaemiaFast, "99504-3", false, func(lo, hi float64) bool { return lo <= 55 }, "CGM glucose ≤ 55"},
		{HypoglycaemiaSlow, "99504-3", false, func(lo, hi float64) bool { return lo <= 65 }, "CGM glucose ≤ 65"},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			ps := registered(1, 0, 3)
			if !tc.ward {
				ps = registered(0, 1, 3)
				ps[0].Diabetic = true
				ps[0].Devices = append(ps[0].Devices, Device{Kind: CGM, ID: "cgm"})
			}
			rep, r := run(t, Config{Patients: ps, Seed: 3, Duration: 6 * time.Hour,
				Scenarios: []ScenarioSpec{{Name: tc.scenario, Share: 1, At: time.Hour}}})
			lo, hi := 1e9, -1e9
			for _, s := range r.sent {
				for _, v := range decode(t, s.payload) {
					if v.code == tc.code {
						lo, hi = min(lo, v.value), max(hi, v.value)
					}
				}
			}
			if !tc.check(lo, hi) {
				t.Errorf("want %s; %s ranged %v..%v", tc.want, tc.code, lo, hi)
			}
			var starts int
			for _, e := range rep.Truth {
				if e.Scenario == tc.scenario && e.What == "start" && e.When.Equal(t0.Add(time.Hour)) && e.Patient == ps[0].ID {
					starts++
				}
			}
			if starts != 1 {
				t.Errorf("ground truth has %d starts of %s at +1h: %v", starts, tc.scenario, rep.Truth)
			}
		})
	}
}

// Without scenarios a ward patient's vitals stay in normal ranges most of
// the time: the model is physiology, not noise.
func TestBaselineIsPhysiological(t *testing.T) {
	_, r := run(t, Config{Patients: registered(5, 0, 4), Seed: 4, Duration: 24 * time.Hour})
	var hr, spo2, n, lowSpO2 float64
	for _, s := range r.sent {
		for _, v := range decode(t, s.payload) {
			switch v.code {
			case "8867-4":
				hr += v.value
				n++
			case "59408-5":
				spo2 += v.value
				if v.value < 90 {
					lowSpO2++
				}
			}
		}
	}
	if m := hr / n; m < 60 || m > 95 {
		t.Errorf("mean HR %.1f", m)
	}
	if m := spo2 / n; m < 94 || m > 99.5 {
		t.Errorf("mean SpO2 %.1f", m)
	}
	if frac := lowSpO2 / n; frac > 0.01 {
		t.Errorf("%.2f%% of SpO2 samples below 90 without any scenario", 100*frac)
	}
}

func TestUndeliveredIsCounted(t *testing.T) {
	r := &recorder{fail: func(d *Device) error {
		if strings.HasPrefix(d.ID, "d-W01") {
			return ErrNotConnected
		}
		return nil
	}}
	rep, err := Run(context.Background(), Config{Patients: registered(2, 0, 5), Seed: 5, Start: t0, Duration: time.Minute, Sender: r})
	if err != nil {
		t.Fatal(err)
	}
	if rep.UndeliveredMessages == 0 || rep.Messages == 0 || !strings.Contains(rep.FirstError, "not connected") {
		t.Errorf("report %+v", rep)
	}
	if rep.UndeliveredMessages+rep.Messages != int64(len(r.sent))+rep.UndeliveredMessages || rep.Messages != int64(len(r.sent)) {
		t.Errorf("delivered %d, recorded %d", rep.Messages, len(r.sent))
	}
}

func TestTruthLogIsJSONLines(t *testing.T) {
	var buf bytes.Buffer
	rep, _ := run(t, Config{Patients: registered(3, 0, 6), Seed: 6, Duration: time.Hour, Truth: &buf,
		Scenarios: []ScenarioSpec{{Name: Hypoxia, Share: 1, At: 5 * time.Minute}}})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(rep.Truth) || len(lines) < 6 {
		t.Fatalf("%d lines for %d events", len(lines), len(rep.Truth))
	}
	for _, l := range lines {
		var e TruthEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Patient == "" || e.Scenario == "" || e.When.IsZero() {
			t.Errorf("line %q: %v", l, err)
		}
	}
}

// A server sharing the clock never sees a reading from its future.
func TestVirtualClockSharedWithServer(t *testing.T) {
	c := NewVirtualClock(t0)
	var seen []time.Time
	var mu sync.Mutex
	snd := senderFunc(func(ctx context.Context, d *Device, p []byte) error {
		var recs []struct{ T float64 }
		if err := json.Unmarshal(p, &recs); err != nil {
			return err
		}
		now := c.Now()
		for _, r := range recs {
			if at := time.UnixMilli(int64(r.T * 1000)); at.After(now) {
				t.Errorf("reading at %v sent when the clock said %v", at, now)
			}
		}
		mu.Lock()
		seen = append(seen, now)
		mu.Unlock()
		return nil
	})
	if _, err := Run(context.Background(), Config{Patients: registered(2, 0, 7), Start: t0, Duration: time.Minute, Sender: snd, Clock: c}); err != nil {
		t.Fatal(err)
	}
	if len(seen) < 10 || !seen[0].After(t0) || !slices.IsSortedFunc(seen, time.Time.Compare) || !seen[len(seen)-1].After(t0.Add(50*time.Second)) {
		t.Errorf("server saw times %v", seen)
	}
}

type senderFunc func(ctx context.Context, d *Device, p []byte) error

func (f senderFunc) Send(ctx context.Context, d *Device, p []byte) error { return f(ctx, d, p) }

func TestReportVirtual(t *testing.T) {
	w := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Report{Timeline: []TimePoint{{w, t0}, {w.Add(time.Second), t0.Add(time.Hour)}}}
	if got := r.Virtual(w.Add(500 * time.Millisecond)); !got.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("midpoint: %v", got)
	}
	if got := r.Virtual(w.Add(2 * time.Second)); !got.Equal(t0.Add(time.Hour + time.Second)) {
		t.Errorf("after the end: %v", got)
	}
}
