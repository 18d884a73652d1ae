package fhir

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/senml"
)

// inObservation is the part of a received R4 Observation this server reads.
// Pointers tell an absent element from an empty one.
type inObservation struct {
	ResourceType      *string       `json:"resourceType"`
	Status            *string       `json:"status"`
	Category          []Concept     `json:"category"`
	Code              *Concept      `json:"code"`
	Subject           *Reference    `json:"subject"`
	Device            *Reference    `json:"device"`
	EffectiveDateTime *string       `json:"effectiveDateTime"`
	EffectiveInstant  *string       `json:"effectiveInstant"`
	EffectivePeriod   *inPeriod     `json:"effectivePeriod"`
	ValueQuantity     *inQuantity   `json:"valueQuantity"`
	DataAbsentReason  *Concept      `json:"dataAbsentReason"`
	Component         []inComponent `json:"component"`
	// The other value[x] types, read only to refuse them by name.
	ValueCodeableConcept json.RawMessage `json:"valueCodeableConcept"`
	ValueString          json.RawMessage `json:"valueString"`
	ValueBoolean         json.RawMessage `json:"valueBoolean"`
	ValueInteger         json.RawMessage `json:"valueInteger"`
	ValueRange           json.RawMessage `json:"valueRange"`
	ValueRatio           json.RawMessage `json:"valueRatio"`
	ValueSampledData     json.RawMessage `json:"valueSampledData"`
	ValueTime            json.RawMessage `json:"valueTime"`
	ValueDateTime        json.RawMessage `json:"valueDateTime"`
	ValuePeriod          json.RawMessage `json:"valuePeriod"`
}

// otherValue names the first value[x] present other than valueQuantity.
func (in *inObservation) otherValue() string {
	for _, v := range []struct {
		name string
		raw  json.RawMessage
	}{
		{"valueCodeableConcept", in.ValueCodeableConcept}, {"valueString", in.ValueString}, {"valueBoolean", in.ValueBoolean},
		{"valueInteger", in.ValueInteger}, {"valueRange", in.ValueRange}, {"valueRatio", in.ValueRatio},
		{"valueSampledData", in.ValueSampledData}, {"valueTime", in.ValueTime}, {"valueDateTime", in.ValueDateTime},
		{"valuePeriod", in.ValuePeriod},
	} {
		if len(v.raw) > 0 && string(v.raw) != "null" {
			return v.name
		}
	}
	return ""
}

type inPeriod struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type inQuantity struct {
	Value  *float64 `json:"value"`
	Unit   string   `json:"unit"`
	System string   `json:"system"`
	Code   string   `json:"code"`
}

type inComponent struct {
	Code             *Concept    `json:"code"`
	ValueQuantity    *inQuantity `json:"valueQuantity"`
	DataAbsentReason *Concept    `json:"dataAbsentReason"`
}

// statusesStored are the Observation statuses accepted on ingest. Stored
// readings are final results; a preliminary or cancelled one is refused
// rather than shown later as final.
var statusesStored = map[string]bool{"final": true, "amended": true, "corrected": true}

// obsInput is a validated incoming Observation: the reading (patient and
// device set from the references) and where in the request it came from.
type obsInput struct {
	reading reading.Reading
	path    string // FHIRPath of the resource, e.g. Bundle.entry[3].resource
}

// parseObservation validates one received Observation against the R4
// vital-signs profile as far as Tend can store it, and converts it to a
// reading in the code's canonical unit. path prefixes every expression.
// Errors are 400 for malformed JSON and 422 for a well-formed resource that
// breaks the profile or names something Tend does not know.
func parseObservation(raw []byte, path string, now time.Time) (obsInput, error) {
	// One decoding pass: bodies come a thousand to a Bundle.
	var in *inObservation
	if err := json.Unmarshal(raw, &in); err != nil {
		return obsInput{}, at(jsonError(err), path)
	}
	if in == nil {
		return obsInput{}, at(invalid("body must be a JSON object"), path)
	}
	if in.ResourceType == nil || *in.ResourceType == "" {
		return obsInput{}, at(invalid("resourceType is required"), path)
	}
	if *in.ResourceType != "Observation" {
		return obsInput{}, at(invalid("resourceType %q is not Observation", clip(*in.ResourceType)), path)
	}
	if name := in.otherValue(); name != "" {
		return obsInput{}, unprocessable(path+"."+name, "only valueQuantity is accepted (or components for a panel)")
	}

	if in.Status == nil {
		return obsInput{}, unprocessable(path+".status", "status is required")
	}
	if !statusesStored[*in.Status] {
		return obsInput{}, unprocessable(path+".status", "status must be final, amended or corrected")
	}
	if !hasVitalSignsCategory(in.Category) {
		return obsInput{}, unprocessable(path+".category", "category must include "+systemCategory+"|vital-signs")
	}
	if in.Code == nil {
		return obsInput{}, unprocessable(path+".code", "code is required")
	}
	code, ok := resolveConcept(*in.Code)
	if !ok {
		return obsInput{}, unprocessable(path+".code", "code has no LOINC (or MDC) coding of a vital sign Tend knows")
	}
	patient, err := referenceID(in.Subject, "Patient", path+".subject", true)
	if err != nil {
		return obsInput{}, err
	}
	device, err := referenceID(in.Device, "Device", path+".device", false)
	if err != nil {
		return obsInput{}, err
	}
	when, err := effectiveTime(*in, path, now)
	if err != nil {
		return obsInput{}, err
	}

	r := reading.Reading{Patient: patient, Device: device, Code: code.LOINC, MDC: code.MDC, Unit: code.Unit,
		Time: when, Received: now.UTC(), Source: "fhir"}
	switch {
	case code.IsPanel():
		if in.ValueQuantity != nil {
			return obsInput{}, unprocessable(path+".valueQuantity", "%s is a panel: send its values as components", code.LOINC)
		}
		comps, err := panelComponents(code, in.Component, path)
		if err != nil {
			return obsInput{}, err
		}
		if comps == nil && in.DataAbsentReason == nil {
			return obsInput{}, unprocessable(path+".component", "%s needs components %s", code.LOINC, strings.Join(code.Components, ", "))
		}
		if comps == nil {
			return obsInput{}, absentNotStored(path + ".dataAbsentReason")
		}
		r.Components = comps
	case isPanelPart(code.LOINC):
		return obsInput{}, unprocessable(path+".code", "send %s as a component of the blood pressure panel %s", code.LOINC, codes.BloodPressurePanel)
	default:
		if len(in.Component) > 0 {
			return obsInput{}, unprocessable(path+".component", "components are accepted only on panels")
		}
		switch {
		case in.ValueQuantity != nil && in.DataAbsentReason != nil:
			return obsInput{}, unprocessable(path+".dataAbsentReason", "dataAbsentReason must be absent when a value is present")
		case in.ValueQuantity != nil:
			v, err := quantityValue(*in.ValueQuantity, code, path+".valueQuantity")
			if err != nil {
				return obsInput{}, err
			}
			r.Value, r.HasValue = v, true
		case in.DataAbsentReason != nil:
			return obsInput{}, absentNotStored(path + ".dataAbsentReason")
		default:
			return obsInput{}, unprocessable(path+".value[x]", "valueQuantity or dataAbsentReason is required")
		}
	}
	return obsInput{reading: r, path: path}, nil
}

// absentNotStored refuses a well-formed "no value" Observation: Tend stores
// measured values only, and saying so beats pretending it was stored.
func absentNotStored(expr string) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: "not-supported", Expression: expr,
		Msg: "observations without a value (dataAbsentReason) are not stored"}
}

func unprocessable(expr, format string, args ...any) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: "processing", Expression: expr, Msg: fmt.Sprintf(format, args...)}
}

// at points an error that has no element yet at the resource at path.
func at(err error, path string) error {
	if fe, ok := err.(*Error); ok && fe.Expression == "" {
		c := *fe
		c.Expression = path
		return &c
	}
	return err
}

func hasVitalSignsCategory(cats []Concept) bool {
	for _, c := range cats {
		for _, cd := range c.Coding {
			if cd.System == systemCategory && cd.Code == "vital-signs" {
				return true
			}
		}
	}
	return false
}

// resolveConcept finds the first coding Tend knows: LOINC (including the
// synonyms the code table accepts), the code's own system for non-LOINC
// codes, or the MDC numeric code.
func resolveConcept(c Concept) (codes.Code, bool) {
	for _, cd := range c.Coding {
		switch cd.System {
		case systemLOINC:
			if k, ok := codes.ByLOINC(cd.Code); ok && k.SystemURI() == systemLOINC {
				return k, true
			}
			if k, ok := codes.Lookup(cd.Code); ok && loincLike(cd.Code) {
				return k, true
			}
		case systemMDC:
			n, err := strconv.Atoi(cd.Code)
			if err != nil {
				continue
			}
			if k, ok := codes.Lookup(cd.Code); ok && k.MDCCode == n {
				return k, true
			}
		default:
			if k, ok := codes.ByLOINC(cd.Code); ok && cd.System != "" && k.SystemURI() == cd.System {
				return k, true
			}
		}
	}
	return codes.Code{}, false
}

func isPanelPart(loinc string) bool {
	switch loinc {
	case codes.SystolicBP, codes.DiastolicBP, codes.MeanBP:
		return true
	}
	return false
}

// panelComponents reads a panel's components in the table's order;
// systolic and diastolic are required for blood pressure.
func panelComponents(panel codes.Code, in []inComponent, path string) ([]reading.Component, error) {
	if len(in) == 0 {
		return nil, nil
	}
	byCode := map[string]reading.Component{}
	for i, c := range in {
		cpath := fmt.Sprintf("%s.component[%d]", path, i)
		if c.Code == nil {
			return nil, unprocessable(cpath+".code", "component code is required")
		}
		k, ok := resolveConcept(*c.Code)
		if !ok || !contains(panel.Components, k.LOINC) {
			return nil, unprocessable(cpath+".code", "component code must be one of %s", strings.Join(panel.Components, ", "))
		}
		if _, dup := byCode[k.LOINC]; dup {
			return nil, unprocessable(cpath+".code", "component %s is repeated", k.LOINC)
		}
		if c.ValueQuantity == nil {
			if c.DataAbsentReason != nil {
				// A missing part (e.g. no mean pressure) is simply left out.
				continue
			}
			return nil, unprocessable(cpath+".value[x]", "component valueQuantity or dataAbsentReason is required")
		}
		v, err := quantityValue(*c.ValueQuantity, k, cpath+".valueQuantity")
		if err != nil {
			return nil, err
		}
		byCode[k.LOINC] = reading.Component{Code: k.LOINC, MDC: k.MDC, Value: v, Unit: k.Unit}
	}
	var out []reading.Component
	for i, loinc := range panel.Components {
		c, ok := byCode[loinc]
		if !ok {
			if i < 2 && panel.LOINC == codes.BloodPressurePanel {
				return nil, unprocessable(path+".component", "blood pressure needs systolic (%s) and diastolic (%s) values", codes.SystolicBP, codes.DiastolicBP)
			}
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// quantityValue converts a Quantity to the code's canonical unit and checks
// the physiologically possible range, as the device ingest path does.
func quantityValue(q inQuantity, code codes.Code, expr string) (float64, error) {
	if q.Value == nil {
		return 0, unprocessable(expr+".value", "value is required")
	}
	unit := q.Code
	if unit == "" || (q.System != "" && q.System != systemUCUM) {
		unit = q.Unit
	}
	if unit == "" {
		return 0, unprocessable(expr+".code", "a UCUM unit is required (%s for %s)", code.Unit, code.LOINC)
	}
	v, err := codes.Convert(*q.Value, unit, code)
	if err != nil {
		return 0, unprocessable(expr+".code", "%s", err.Error())
	}
	if v < code.Min || v > code.Max || math.IsNaN(v) {
		return 0, unprocessable(expr+".value", "value is outside the possible range %s–%s %s for %s",
			strconv.FormatFloat(code.Min, 'f', -1, 64), strconv.FormatFloat(code.Max, 'f', -1, 64), code.Unit, code.LOINC)
	}
	return v, nil
}

// referenceID reads a Type/{id} reference; an absolute URL, a contained or
// a conditional reference cannot be resolved here and is refused.
func referenceID(ref *Reference, resourceType, expr string, required bool) (string, error) {
	if ref == nil || ref.Reference == "" {
		if required {
			return "", unprocessable(expr, "%s reference is required", resourceType)
		}
		return "", nil
	}
	id, ok := strings.CutPrefix(ref.Reference, resourceType+"/")
	if !ok || !validID(id) {
		return "", unprocessable(expr+".reference", "must reference %s/{id}", resourceType)
	}
	return id, nil
}

// effectiveTime reads effective[x] as one instant: a dateTime to the second
// with a zone, an instant, or a period's start. Dates alone and times
// without a zone cannot be placed on the time line and are refused; the
// same past and future bounds as device ingest apply.
func effectiveTime(in inObservation, path string, now time.Time) (time.Time, error) {
	var v, name string
	switch {
	case in.EffectiveDateTime != nil:
		v, name = *in.EffectiveDateTime, "effectiveDateTime"
	case in.EffectiveInstant != nil:
		v, name = *in.EffectiveInstant, "effectiveInstant"
	case in.EffectivePeriod != nil:
		v, name = in.EffectivePeriod.Start, "effectivePeriod.start"
	default:
		return time.Time{}, unprocessable(path+".effective[x]", "effectiveDateTime (or effectivePeriod) is required")
	}
	expr := path + "." + name
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, unprocessable(expr, "%s must be a date and time with seconds and a zone, e.g. 2026-11-23T10:00:00Z", name)
	}
	lim := senml.DefaultLimits
	if t.After(now.Add(lim.MaxFuture)) {
		return time.Time{}, unprocessable(expr, "%s is more than %s in the future", name, lim.MaxFuture)
	}
	if t.Before(now.Add(-lim.MaxPast)) {
		return time.Time{}, unprocessable(expr, "%s is more than %d days in the past", name, int(lim.MaxPast.Hours()/24))
	}
	return t.UTC(), nil
}
