package fhir

import (
	"strconv"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/store"
)

// Observation is the R4 Observation as this server renders stored readings,
// following the vital-signs profile. Field order is the FHIR element order.
type Observation struct {
	ResourceType      string         `json:"resourceType"`
	ID                string         `json:"id"`
	Meta              *Meta          `json:"meta,omitempty"`
	Status            string         `json:"status"`
	Category          []Concept      `json:"category"`
	Code              Concept        `json:"code"`
	Subject           *Reference     `json:"subject,omitempty"`
	EffectiveDateTime string         `json:"effectiveDateTime"`
	Issued            string         `json:"issued,omitempty"`
	ValueQuantity     *Quantity      `json:"valueQuantity,omitempty"`
	Device            *Reference     `json:"device,omitempty"`
	Component         []ObsComponent `json:"component,omitempty"`
}

// ObsComponent is one Observation.component (a part of a panel).
type ObsComponent struct {
	Code          Concept   `json:"code"`
	ValueQuantity *Quantity `json:"valueQuantity,omitempty"`
}

// Meta is resource metadata.
type Meta struct {
	VersionID   string   `json:"versionId,omitempty"`
	LastUpdated string   `json:"lastUpdated,omitempty"`
	Profile     []string `json:"profile,omitempty"`
}

// Concept is a CodeableConcept.
type Concept struct {
	Coding []Coding `json:"coding"`
	Text   string   `json:"text,omitempty"`
}

// Coding is one code in a code system.
type Coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// Reference points at another resource.
type Reference struct {
	Reference string `json:"reference"`
}

// Quantity is a UCUM-coded value.
type Quantity struct {
	Value  float64 `json:"value"`
	Unit   string  `json:"unit,omitempty"`
	System string  `json:"system,omitempty"`
	Code   string  `json:"code,omitempty"`
}

const profileBase = "http://hl7.org/fhir/StructureDefinition/"

// profiles maps LOINC codes to the specific R4 vital-signs profile.
var profiles = map[string]string{
	codes.HeartRate:          "heartrate",
	codes.OxygenSaturation:   "oxygensat",
	codes.RespiratoryRate:    "resprate",
	codes.BodyTemperature:    "bodytemp",
	codes.BloodPressurePanel: "bp",
	codes.BodyWeight:         "bodyweight",
	codes.BodyHeight:         "bodyheight",
	codes.BMI:                "bmi",
}

// formatInstant writes t as a FHIR instant in UTC; RFC3339Nano drops
// trailing zeros of the fraction, which FHIR allows.
func formatInstant(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// RenderObservation renders a stored sample as an R4 vital-signs Observation.
func RenderObservation(s store.Sample) Observation {
	r := s.Reading
	profile := "vitalsigns"
	if p, ok := profiles[r.Code]; ok {
		profile = p
	}
	obs := Observation{
		ResourceType: "Observation",
		ID:           s.ID,
		Meta:         &Meta{Profile: []string{profileBase + profile}},
		Status:       "final",
		Category: []Concept{{
			Coding: []Coding{{System: systemCategory, Code: "vital-signs", Display: "Vital Signs"}},
			Text:   "Vital Signs",
		}},
		Code:              concept(r.Code),
		EffectiveDateTime: formatInstant(r.Time),
	}
	if r.Patient != "" {
		obs.Subject = &Reference{Reference: "Patient/" + r.Patient}
	}
	if r.Device != "" {
		obs.Device = &Reference{Reference: "Device/" + r.Device}
	}
	if !r.Received.IsZero() {
		obs.Issued = formatInstant(r.Received)
	}
	if r.HasValue {
		obs.ValueQuantity = quantity(r.Value, r.Unit)
	}
	for _, c := range r.Components {
		obs.Component = append(obs.Component, ObsComponent{Code: concept(c.Code), ValueQuantity: quantity(c.Value, c.Unit)})
	}
	return obs
}

// concept is the LOINC coding first and, when the code table knows it, the
// MDC coding alongside (numeric code, reference id as display).
func concept(loinc string) Concept {
	c, known := codes.ByLOINC(loinc)
	cc := Concept{Coding: []Coding{{System: systemLOINC, Code: loinc}}}
	if !known {
		return cc
	}
	cc.Coding[0].System = c.SystemURI()
	cc.Coding[0].Display = c.Display
	cc.Text = c.Display
	if c.MDC != "" && c.MDCCode != 0 {
		cc.Coding = append(cc.Coding, Coding{System: systemMDC, Code: strconv.Itoa(c.MDCCode), Display: c.MDC})
	}
	return cc
}

func quantity(v float64, unit string) *Quantity {
	q := &Quantity{Value: v, Unit: unit}
	if unit != "" {
		q.System, q.Code = systemUCUM, unit
	}
	return q
}
