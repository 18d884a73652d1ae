package inbound

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/store"
)

// bedDevice registers a device installed at a location.
func (f *fixture) bedDevice(t *testing.T, id, location string) {
	t.Helper()
	d := &store.Device{ID: id, Identifiers: []store.Identifier{{System: store.LocationSystem, Value: location}},
		Resource: []byte(`{"resourceType":"Device","id":"` + id + `","manufacturer":"Acme"}`)}
	if err := f.store.CreateDevice(context.Background(), d, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
}

// adtAt builds an ADT message whose event happened at 12:mm on 2026-01-01.
func adtAt(event, ctrl string, minute int, pv1 string) string {
	return fmt.Sprintf("MSH|^~\\&|ADT|HOSP|||20260101130000||ADT^%s^ADT_A01|%s|P|2.5.1\rEVN|%s|202601011%d00\r"+
		"PID|||M77^^^HOSP^MR||Roe^Ann\r%s\r", event, ctrl, event, 200+minute, pv1)
}

func at(minute int) time.Time { return time.Date(2026, 1, 1, 12, minute, 0, 0, time.UTC) }

func TestADTBindsDevicesByLocation(t *testing.T) {
	f := newFixture(t)
	var changed []string
	f.h.Bind = &LocationBinder{Store: f.store, OnDeviceChanged: func(d string) { changed = append(changed, d) }}
	f.bedDevice(t, "mon-12a", "WEST/ICU/12/A")
	f.bedDevice(t, "pump-12a", "WEST/ICU/12/A")
	f.bedDevice(t, "mon-4b", "WEST/WARD3/4/B")
	f.device(t, "elsewhere", "EQ-1", "")

	steps := []struct {
		name, event string
		minute      int
		pv1         string
		bound       map[string]bool // device → bound to the patient after the step
		changes     int             // binding changes the step makes
	}{
		{"admit to ICU bed", "A01", 1, "PV1||I|ICU^12^A^WEST", map[string]bool{"mon-12a": true, "pump-12a": true}, 2},
		{"admit resent", "A01", 1, "PV1||I|ICU^12^A^WEST", map[string]bool{"mon-12a": true, "pump-12a": true}, 0},
		{"update in the same bed", "A08", 2, "PV1||I|ICU^12^A^WEST", map[string]bool{"mon-12a": true, "pump-12a": true}, 0},
		{"transfer to ward", "A02", 3, "PV1||I|WARD3^4^B^WEST", map[string]bool{"mon-4b": true}, 3},
		{"discharge", "A03", 4, "PV1||I", map[string]bool{}, 1},
		{"discharge cancelled", "A13", 5, "PV1||I|WARD3^4^B^WEST", map[string]bool{"mon-4b": true}, 1},
		{"admission cancelled", "A11", 6, "PV1||I", map[string]bool{}, 1},
	}
	var patient string
	for i, s := range steps {
		before := len(changed)
		if code, errs := msa(t, f.send(adtAt(s.event, fmt.Sprintf("B%d", i), s.minute, s.pv1))); code != hl7.AA {
			t.Fatalf("%s: answered %s %v", s.name, code, errs)
		}
		if patient == "" {
			ps, n, err := f.store.Patients(context.Background(), &store.Identifier{Value: "M77"}, 1, 0)
			if err != nil || n != 1 {
				t.Fatalf("patient not registered by A01: %v", err)
			}
			patient = ps[0].ID
		}
		if got := len(changed) - before; got != s.changes {
			t.Errorf("%s: %d binding changes %v, want %d", s.name, got, changed[before:], s.changes)
		}
		for _, dev := range []string{"mon-12a", "pump-12a", "mon-4b", "elsewhere"} {
			d, err := f.store.Device(context.Background(), dev)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Patient == patient; got != s.bound[dev] {
				t.Errorf("%s: %s bound = %v, want %v", s.name, dev, got, s.bound[dev])
			}
			var res struct {
				Manufacturer string `json:"manufacturer"`
				Patient      *struct {
					Reference string `json:"reference"`
				} `json:"patient"`
			}
			if err := json.Unmarshal(d.Resource, &res); err != nil || (res.Patient != nil) != s.bound[dev] ||
				(res.Patient != nil && res.Patient.Reference != "Patient/"+patient) || (dev != "elsewhere" && res.Manufacturer != "Acme") {
				t.Errorf("%s: %s resource %s does not match its binding", s.name, dev, d.Resource)
			}
		}
	}
	// Readings are attributed by the binding at their time: the bindings
	// start and end at the events' times, not when the messages arrived.
	for _, c := range []struct {
		device string
		t      time.Time
		want   string
	}{
		{"mon-12a", at(1).Add(-time.Second), ""},
		{"mon-12a", at(1), patient},
		{"pump-12a", at(2).Add(30 * time.Second), patient},
		{"mon-12a", at(3), ""},
		{"mon-4b", at(3), patient},
		{"mon-4b", at(4).Add(30 * time.Second), ""},
		{"mon-4b", at(5).Add(30 * time.Second), patient},
		{"mon-4b", at(7), ""},
	} {
		got, err := f.store.PatientAt(context.Background(), c.device, c.t)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("PatientAt(%s, %s) = %q, want %q", c.device, c.t.Format("15:04:05"), got, c.want)
		}
	}
}

// A message that arrives after a later binding change of the device still
// takes effect, at that change rather than before it (history is
// append-only).
func TestADTBindLateEvent(t *testing.T) {
	f := newFixture(t)
	f.h.Bind = &LocationBinder{Store: f.store}
	f.bedDevice(t, "mon-12a", "WEST/ICU/12/A")
	f.patient(t, "other", "X1")
	d, _ := f.store.Device(context.Background(), "mon-12a")
	d.Patient = "other"
	if err := f.store.UpdateDevice(context.Background(), &d, at(30)); err != nil {
		t.Fatal(err)
	}
	if code, errs := msa(t, f.send(adtAt("A01", "L1", 10, "PV1||I|ICU^12^A^WEST"))); code != hl7.AA {
		t.Fatalf("answered %s %v", code, errs)
	}
	got, _ := f.store.PatientAt(context.Background(), "mon-12a", at(30))
	if got == "" || got == "other" {
		t.Errorf("device at 12:30 bound to %q, want the admitted patient", got)
	}
}

func TestADTBindOffByDefault(t *testing.T) {
	f := newFixture(t)
	f.bedDevice(t, "mon-12a", "WEST/ICU/12/A")
	if code, errs := msa(t, f.send(adtAt("A01", "O1", 1, "PV1||I|ICU^12^A^WEST"))); code != hl7.AA {
		t.Fatalf("answered %s %v", code, errs)
	}
	if d, _ := f.store.Device(context.Background(), "mon-12a"); d.Patient != "" {
		t.Errorf("device bound to %q without --hl7-adt-bind", d.Patient)
	}
}
