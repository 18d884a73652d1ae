// Package pcd maps IHE Patient Care Device messages onto Tend's vocabulary:
// PCD-01 observation reports (ORU^R01) become readings with LOINC and MDC
// codes, UCUM units, effective times and the equipment that measured them;
// PCD-04 alarm reports (ORU^R40) become device alarm states. It reads parsed
// messages only and touches no store: who the patient and device are in
// Tend's registry is the caller's business.
package pcd

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/reading"
)

// PatientID is one PID-3 identifier (CX).
type PatientID struct {
	Value     string // CX.1
	Authority string // CX.4 namespace id, or its universal id
	Type      string // CX.5, e.g. MR
}

// Patient is one patient group of a message: PID and PV1.
type Patient struct {
	IDs      []PatientID
	Location Location
}

// Location is PV1-3 (PL): point of care, room, bed, facility.
type Location struct {
	PointOfCare, Room, Bed, Facility string
}

// String joins the non-empty parts with "/", e.g. "ICU/12/A".
func (l Location) String() string {
	var parts []string
	for _, p := range []string{l.Facility, l.PointOfCare, l.Room, l.Bed} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

// Reading is one reading of a report: the canonical reading without its
// patient and device, which the caller resolves from Patient and Equipment.
type Reading struct {
	reading.Reading
	Patient   int    // index into Report.Patients; -1 when the message has no PID
	Equipment string // OBX-18 of the metric or its nearest ancestor, else MSH-3
	OBX       []int  // segment numbers (1-based) of the OBX it came from
}

// Report is a mapped PCD-01 message.
type Report struct {
	Patients []Patient
	Readings []Reading
	// Notes are OBX that carried a number Tend does not store (an unknown
	// code, a status of deleted or wrong): they go back to the sender as
	// warnings, so nothing is dropped without a word.
	Notes []*hl7.Error
}

// Limits bounds how far readings may lie in the future (clock skew).
type Limits struct {
	MaxFuture time.Duration
}

// DefaultLimits allow five minutes of clock skew.
var DefaultLimits = Limits{MaxFuture: 5 * time.Minute}

// node is one OBX seen in the containment hierarchy of an OBR group.
type node struct {
	time      string
	equipment string
}

// ParseORU maps a PCD-01 ORU^R01 message. Any error is a problem with the
// message content (AE): the message must then not be stored in part.
func ParseORU(m *hl7.Message, now time.Time, lim Limits) (*Report, []*hl7.Error) {
	rep := &Report{}
	var errs []*hl7.Error
	zone := hl7.ZoneOf(m.MSH().C(7, 1))
	if zone == nil {
		zone = time.UTC
	}
	fallbackEquipment := m.MSH().C(3, 2)
	if fallbackEquipment == "" {
		fallbackEquipment = m.MSH().C(3, 1)
	}
	groupTime := m.MSH().C(7, 1)
	patient := -1
	tree := map[string]node{}
	type panelKey struct {
		patient   int
		equipment string
		channel   string
		time      time.Time
	}
	panels := map[panelKey]int{} // index into rep.Readings
	for i := range m.Segments {
		seg := &m.Segments[i]
		seq := i + 1
		switch seg.Name {
		case "PID":
			rep.Patients = append(rep.Patients, Patient{IDs: PatientIDs(seg)})
			patient = len(rep.Patients) - 1
		case "PV1":
			if patient >= 0 {
				rep.Patients[patient].Location = LocationOf(seg)
			}
		case "OBR":
			tree = map[string]node{}
			if t := seg.C(7, 1); t != "" {
				groupTime = t
			}
		case "OBX":
			r, note, err := mapOBX(seg, seq, tree, groupTime, zone, now, lim)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if note != nil {
				note.Severity = 'W'
				rep.Notes = append(rep.Notes, note)
			}
			if r == nil {
				continue
			}
			if r.Equipment == "" {
				r.Equipment = fallbackEquipment
			}
			r.Patient = patient
			if slot, ok := bpSlot(r.Code); ok {
				k := panelKey{patient, r.Equipment, channelOf(seg.C(4, 1)), r.Time}
				if at, ok := panels[k]; ok {
					p := &rep.Readings[at]
					if p.Components[slot].Code != "" {
						errs = append(errs, &hl7.Error{Segment: "OBX", Sequence: seq, Field: 3, Code: hl7.ErrDataType,
							Msg: fmt.Sprintf("repeats %s at the same time in the same channel", r.Code)})
						continue
					}
					p.Components[slot] = comp(r)
					p.OBX = append(p.OBX, seq)
					continue
				}
				panel, _ := codes.ByLOINC(codes.BloodPressurePanel)
				pr := Reading{Patient: patient, Equipment: r.Equipment, OBX: []int{seq}}
				pr.Code, pr.MDC, pr.Unit, pr.Time = panel.LOINC, panel.MDC, panel.Unit, r.Time
				pr.Components = make([]reading.Component, 3)
				pr.Components[slot] = comp(r)
				panels[k] = len(rep.Readings)
				rep.Readings = append(rep.Readings, pr)
				continue
			}
			rep.Readings = append(rep.Readings, *r)
		}
	}
	// Finish blood-pressure panels: systolic and diastolic are required,
	// mean is optional (as in SenML ingest).
	kept := rep.Readings[:0]
	for _, r := range rep.Readings {
		if r.Code == codes.BloodPressurePanel {
			if r.Components[0].Code == "" || r.Components[1].Code == "" {
				errs = append(errs, &hl7.Error{Segment: "OBX", Sequence: r.OBX[0], Field: 3, Code: hl7.ErrRequiredMissing,
					Msg: "blood pressure needs systolic and diastolic in the same channel at the same time"})
				continue
			}
			if r.Components[2].Code == "" {
				r.Components = r.Components[:2]
			}
		}
		kept = append(kept, r)
	}
	rep.Readings = kept
	return rep, errs
}

func comp(r *Reading) reading.Component {
	return reading.Component{Code: r.Code, MDC: r.MDC, Value: r.Value, Unit: r.Unit}
}

func bpSlot(loinc string) (int, bool) {
	switch loinc {
	case codes.SystolicBP:
		return 0, true
	case codes.DiastolicBP:
		return 1, true
	case codes.MeanBP:
		return 2, true
	}
	return 0, false
}

// mapOBX maps one OBX. It returns a reading, or a note for a number Tend
// does not store, or neither for hierarchy rows and text, or an error.
func mapOBX(seg *hl7.Segment, seq int, tree map[string]node, groupTime string, zone *time.Location, now time.Time, lim Limits) (*Reading, *hl7.Error, *hl7.Error) {
	hier := seg.C(4, 1)
	equipment := seg.C(18, 1)
	if equipment == "" {
		equipment = seg.C(18, 3)
	}
	own := node{time: seg.C(14, 1), equipment: equipment}
	key := treeKey(hier)
	if key != "" {
		tree[key] = own
	}
	// Inherit time and equipment from the nearest ancestor that has them.
	inherited := own
	for anc := parentKey(key); anc != ""; anc = parentKey(anc) {
		n, ok := tree[anc]
		if !ok {
			continue
		}
		if inherited.time == "" {
			inherited.time = n.time
		}
		if inherited.equipment == "" {
			inherited.equipment = n.equipment
		}
	}
	if inherited.time == "" {
		inherited.time = groupTime
	}
	vt := strings.ToUpper(seg.C(2, 1))
	raw := seg.Get(5, 1, 1, 1)
	if vt == "" || (raw == "" && seg.Reps(5) == 0) {
		return nil, nil, nil // an MDS, VMD or channel row: context only
	}
	at := func(field int, code int, format string, args ...any) *hl7.Error {
		return &hl7.Error{Segment: "OBX", Sequence: seq, Field: field, Code: code, Msg: fmt.Sprintf(format, args...)}
	}
	var value float64
	switch vt {
	case "NM":
		v, err := parseNM(raw)
		if err != nil {
			return nil, nil, at(5, hl7.ErrDataType, "%q is not a number", clip(raw))
		}
		value = v
	case "SN":
		// SN: comparator^num1^separator^num2. Only a plain "=" number is
		// a measurement; "<5" or ranges are not.
		cmp, n1, sep := seg.C(5, 1), seg.C(5, 2), seg.C(5, 3)
		if (cmp != "" && cmp != "=") || sep != "" {
			return nil, at(5, hl7.ErrDataType, "structured numeric %q is a comparison or range, not a measurement; not stored", clip(seg.Raw(5))), nil
		}
		v, err := parseNM(n1)
		if err != nil {
			return nil, nil, at(5, hl7.ErrDataType, "structured numeric %q is not a number", clip(seg.Raw(5)))
		}
		value = v
	case "ST", "CWE", "CE", "CNE", "TX", "FT":
		// Text and coded values (rhythm labels, device states) are not
		// readings; a number sent as text still is.
		v, err := parseNM(raw)
		if err != nil || vt != "ST" {
			return nil, nil, nil
		}
		value = v
	default:
		return nil, nil, nil // waveforms (NA, MA) and others are not stored
	}
	code, mdcID, ok := obxCode(seg)
	if !ok {
		return nil, at(3, hl7.ErrTableValue, "code %q is not one Tend stores; not stored", clip(seg.Raw(3))), nil
	}
	if code.IsPanel() {
		return nil, nil, at(3, hl7.ErrTableValue, "%s is a panel; send its parts (systolic, diastolic, mean) in their own OBX", code.LOINC)
	}
	switch strings.ToUpper(seg.C(11, 1)) {
	case "D", "W":
		return nil, at(11, hl7.ErrTableValue, "status %q marks the result deleted or wrong; not stored", seg.C(11, 1)), nil
	}
	unit, err := obxUnit(seg, code)
	if err != nil {
		return nil, nil, at(6, hl7.ErrTableValue, "%s", err.Error())
	}
	v, err := codes.Convert(value, unit, code)
	if err != nil {
		return nil, nil, at(6, hl7.ErrTableValue, "%s", err.Error())
	}
	if v < code.Min || v > code.Max {
		return nil, nil, at(5, hl7.ErrDataType, "value %s %s is outside the possible range %s–%s %s for %s (%s)",
			fmtNum(v), code.Unit, fmtNum(code.Min), fmtNum(code.Max), code.Unit, code.LOINC, code.Display)
	}
	if inherited.time == "" {
		return nil, nil, at(14, hl7.ErrRequiredMissing, "no observation time in OBX-14, its parents, OBR-7 or MSH-7")
	}
	t, err := hl7.ParseTime(inherited.time, zone)
	if err != nil {
		return nil, nil, at(14, hl7.ErrDataType, "%s", err.Error())
	}
	if lim.MaxFuture > 0 && t.After(now.Add(lim.MaxFuture)) {
		return nil, nil, at(14, hl7.ErrDataType, "observation time %s is in the future (now %s)", t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	r := &Reading{Equipment: inherited.equipment, OBX: []int{seq}}
	r.Code, r.MDC, r.Value, r.HasValue, r.Unit, r.Time = code.LOINC, mdcID, v, true, code.Unit, t.UTC()
	return r, nil, nil
}

// obxCode resolves OBX-3 (CWE: identifier^text^system, then the alternate
// triple) through MDC first, then LOINC.
func obxCode(seg *hl7.Segment) (codes.Code, string, bool) {
	type triple struct{ id, text, system string }
	trips := []triple{{seg.C(3, 1), seg.C(3, 2), seg.C(3, 3)}, {seg.C(3, 4), seg.C(3, 5), seg.C(3, 6)}}
	for _, tr := range trips {
		sys := strings.ToUpper(tr.system)
		if sys == "MDC" || (sys == "" && strings.HasPrefix(strings.ToUpper(tr.text), "MDC_")) {
			if c, ok := codes.LookupMDC(tr.id, tr.text); ok {
				mdc := c.MDC
				if mdc == "" {
					mdc = tr.text
				}
				return c, mdc, true
			}
		}
	}
	for _, tr := range trips {
		switch strings.ToUpper(tr.system) {
		case "LN", "LOINC", "HTTP://LOINC.ORG":
			if c, ok := codes.Lookup(tr.id); ok && c.SystemURI() == codes.SystemLOINC && isLOINC(tr.id) {
				return c, c.MDC, true
			}
		}
	}
	return codes.Code{}, "", false
}

// obxUnit reads OBX-6 in MDC or UCUM; an empty unit is refused, since a
// number without a unit cannot be told apart (°C or °F, kPa or mm[Hg]).
func obxUnit(seg *hl7.Segment, code codes.Code) (string, error) {
	for _, tr := range [][3]string{{seg.C(6, 1), seg.C(6, 2), seg.C(6, 3)}, {seg.C(6, 4), seg.C(6, 5), seg.C(6, 6)}} {
		id, text, sys := tr[0], tr[1], strings.ToUpper(tr[2])
		if id == "" && text == "" {
			continue
		}
		if sys == "MDC" || strings.HasPrefix(strings.ToUpper(text), "MDC_DIM") {
			if u, ok := codes.MDCUnit(id, text); ok {
				return u, nil
			}
			return "", fmt.Errorf("unit %s^%s is not an MDC unit Tend converts for %s (%s); send %q", clip(id), clip(text), code.LOINC, code.Display, code.Unit)
		}
		if sys == "UCUM" || sys == "" || sys == "ANS+" {
			return id, nil
		}
	}
	if code.Unit == "{flag}" || code.Unit == "{score}" {
		return code.Unit, nil
	}
	return "", fmt.Errorf("unit is missing for %s (%s); send %q in UCUM or its MDC unit", code.LOINC, code.Display, code.Unit)
}

// treeKey is an OBX-4 containment position without its trailing zeros
// ("1.16.1.0" → "1.16.1", "1.0.0.0" → "1"), so that every ancestor of a
// node is a prefix of its key (the MDS.VMD.channel.metric containment of
// IEEE 11073) and finding them allocates nothing.
func treeKey(h string) string {
	for strings.HasSuffix(h, ".0") {
		h = h[:len(h)-2]
	}
	return h
}

// parentKey is the key of the parent node, "" at the root.
func parentKey(k string) string {
	if i := strings.LastIndexByte(k, '.'); i >= 0 {
		return k[:i]
	}
	return ""
}

// channelOf is the channel a metric belongs to ("1.16.1.2" → "1.16.1"), so
// that readings of two NIBP channels are not merged.
func channelOf(h string) string {
	if i := strings.LastIndexByte(h, '.'); i >= 0 {
		return h[:i]
	}
	return h
}

// parseNM parses an HL7 NM: optional sign, digits, optional decimal point;
// no exponent, no NaN or infinity.
func parseNM(s string) (float64, error) {
	s = strings.TrimSpace(s)
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' || ((c == '+' || c == '-') && i == 0):
		default:
			return 0, fmt.Errorf("not a number")
		}
	}
	if digits == 0 || strings.Count(s, ".") > 1 {
		return 0, fmt.Errorf("not a number")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, fmt.Errorf("not a number")
	}
	return v, nil
}

func isLOINC(s string) bool {
	i := strings.IndexByte(s, '-')
	return i > 0 && i == len(s)-2 && strings.Trim(s[:i], "0123456789") == "" && s[i+1] >= '0' && s[i+1] <= '9'
}

// PatientIDs reads PID-3.
func PatientIDs(pid *hl7.Segment) []PatientID {
	var out []PatientID
	for r := 1; r <= pid.Reps(3); r++ {
		id := PatientID{Value: pid.Get(3, r, 1, 1), Authority: pid.Get(3, r, 4, 1), Type: pid.Get(3, r, 5, 1)}
		if id.Authority == "" {
			id.Authority = pid.Get(3, r, 4, 2)
		}
		if id.Value != "" && id.Value != `""` {
			out = append(out, id)
		}
	}
	return out
}

// LocationOf reads PV1-3.
func LocationOf(pv1 *hl7.Segment) Location {
	return Location{PointOfCare: pv1.C(3, 1), Room: pv1.C(3, 2), Bed: pv1.C(3, 3), Facility: pv1.C(3, 4)}
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
