package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// Kind is a kind of simulated device.
type Kind string

// Device kinds and what each sends.
const (
	Monitor       Kind = "monitor"        // bedside: HR and SpO2 at 1 Hz, RR, NIBP every 15 min, temperature every 30 min
	Wearable      Kind = "wearable"       // wrist: HR and SpO2 every minute, steps, falls, battery
	BPCuff        Kind = "bp-cuff"        // home: blood pressure morning and evening
	Scale         Kind = "scale"          // home: weight every morning
	Thermometer   Kind = "thermometer"    // home: temperature every morning
	Glucometer    Kind = "glucometer"     // capillary glucose four times a day
	CGM           Kind = "cgm"            // interstitial glucose every 5 min
	PanicButton   Kind = "panic-button"   // battery; presses are events
	PillDispenser Kind = "pill-dispenser" // a dose taken or missed twice a day, battery
)

// Care settings of simulated patients (the alarm rule profile they get).
const (
	Ward = "ward"
	Home = "home"
)

// Patient is one virtual patient and their devices. ID and the device ids
// and secrets are Tend's, filled in once registered.
type Patient struct {
	ID       string   `json:"id"`
	Label    string   `json:"label"` // W01, H07, S0042: never PHI
	Setting  string   `json:"setting"`
	Diabetic bool     `json:"diabetic,omitempty"`
	Devices  []Device `json:"devices"`
}

// Device is one simulated device of a patient.
type Device struct {
	Kind   Kind   `json:"kind"`
	ID     string `json:"id"`
	Secret string `json:"-"` // never written anywhere
}

// Has reports whether the patient has a device of one of the kinds.
func (p *Patient) Has(kinds ...Kind) bool {
	for _, d := range p.Devices {
		if slices.Contains(kinds, d.Kind) {
			return true
		}
	}
	return false
}

// Population lays out ward patients (a bedside monitor each) and home
// patients (wearable, blood-pressure cuff, scale, thermometer, pill
// dispenser; a third are diabetic with a CGM and a glucometer, a third
// have a panic button). prefix starts every label. Deterministic in seed.
func Population(ward, home int, prefix string, seed uint64) []Patient {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]Patient, 0, ward+home)
	for i := range ward {
		out = append(out, Patient{Label: fmt.Sprintf("%sW%02d", prefix, i+1), Setting: Ward, Devices: []Device{{Kind: Monitor}}})
	}
	for i := range home {
		p := Patient{Label: fmt.Sprintf("%sH%02d", prefix, i+1), Setting: Home,
			Devices: []Device{{Kind: Wearable}, {Kind: BPCuff}, {Kind: Scale}, {Kind: Thermometer}, {Kind: PillDispenser}}}
		if rng.IntN(3) == 0 {
			p.Diabetic = true
			p.Devices = append(p.Devices, Device{Kind: CGM}, Device{Kind: Glucometer})
		}
		if rng.IntN(3) == 0 {
			p.Devices = append(p.Devices, Device{Kind: PanicButton})
		}
		out = append(out, p)
	}
	return out
}
