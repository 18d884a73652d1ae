package pcd

import (
	"fmt"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/rules"
)

// Alarm is one alarm of a PCD-04 report, without its Tend patient and
// device, which the caller resolves from Patient and Equipment.
type Alarm struct {
	alarm.External
	Patient   int    // index into AlarmReport.Patients; -1 without PID
	Equipment string // OBX-18 of the alarm, else MSH-3
	Segment   int    // the OBX that identifies the alarm
	Technical bool   // OBX-8 source ST (technical) rather than SP (physiological)
}

// AlarmReport is a mapped PCD-04 message.
type AlarmReport struct {
	Patients []Patient
	Alarms   []Alarm
	Notes    []*hl7.Error
}

// MDC alarm attributes of PCD-04 (IEEE 11073-10101 partition 1).
const (
	mdcEventPhase = "68481" // MDC_ATTR_EVENT_PHASE: start, continue, end, present, …
	mdcAlarmState = "68482" // MDC_ATTR_ALARM_STATE: active, inactive, latched, …
)

// ParseAlarms maps an IHE PCD-04 ORU^R40 message. Each OBR group is one
// alarm: its first OBX carries the event (OBX-3), priority and source in
// OBX-8 (PH/PM/PL/PN, SP/ST/SA); later OBX of the group may give the phase
// and state. An alarm is active unless its phase is end (or stop) or its
// state inactive.
func ParseAlarms(m *hl7.Message, now time.Time, lim Limits) (*AlarmReport, []*hl7.Error) {
	rep := &AlarmReport{}
	var errs []*hl7.Error
	zone := hl7.ZoneOf(m.MSH().C(7, 1))
	if zone == nil {
		zone = time.UTC
	}
	fallback := m.MSH().C(3, 2)
	if fallback == "" {
		fallback = m.MSH().C(3, 1)
	}
	patient := -1
	groupTime := m.MSH().C(7, 1)
	var cur *Alarm
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
			cur = nil
			if t := seg.C(7, 1); t != "" {
				groupTime = t
			}
		case "OBX":
			if cur != nil {
				applyAttribute(cur, seg)
				continue
			}
			a, note, err := alarmOBX(seg, seq, groupTime, zone, now, lim)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if note != nil {
				note.Severity = 'W'
				rep.Notes = append(rep.Notes, note)
				continue
			}
			a.Patient = patient
			if a.Equipment == "" {
				a.Equipment = fallback
			}
			rep.Alarms = append(rep.Alarms, *a)
			cur = &rep.Alarms[len(rep.Alarms)-1]
		}
	}
	if len(rep.Alarms) == 0 && len(errs) == 0 && len(rep.Notes) == 0 {
		errs = append(errs, &hl7.Error{Segment: "OBX", Code: hl7.ErrSegmentSequence, Msg: "ORU^R40 carries no alarm OBX"})
	}
	return rep, errs
}

func alarmOBX(seg *hl7.Segment, seq int, groupTime string, zone *time.Location, now time.Time, lim Limits) (*Alarm, *hl7.Error, *hl7.Error) {
	at := func(field, code int, format string, args ...any) *hl7.Error {
		return &hl7.Error{Segment: "OBX", Sequence: seq, Field: field, Code: code, Msg: fmt.Sprintf(format, args...)}
	}
	code, name := seg.C(3, 1), seg.C(3, 2)
	if code == "" {
		return nil, nil, at(3, hl7.ErrRequiredMissing, "alarm event code is empty")
	}
	a := &Alarm{Segment: seq}
	prio := ""
	for r := 1; r <= seg.Reps(8); r++ {
		switch f := strings.ToUpper(seg.Get(8, r, 1, 1)); f {
		case "PH", "PM", "PL", "PN":
			prio = f
		case "ST":
			a.Technical = true
		}
	}
	switch prio {
	case "PH":
		a.Priority = rules.PriorityHigh
	case "PM":
		a.Priority = rules.PriorityMedium
	case "PL":
		a.Priority = rules.PriorityLow
	case "PN":
		return nil, at(8, hl7.ErrTableValue, "alarm %s has priority PN (no alarm); not raised", clip(code)), nil
	default:
		return nil, nil, at(8, hl7.ErrRequiredMissing, "no alarm priority (PH, PM, PL or PN)")
	}
	ts := seg.C(14, 1)
	if ts == "" {
		ts = groupTime
	}
	t, err := hl7.ParseTime(ts, zone)
	if err != nil {
		return nil, nil, at(14, hl7.ErrDataType, "%s", err.Error())
	}
	if lim.MaxFuture > 0 && t.After(now.Add(lim.MaxFuture)) {
		return nil, nil, at(14, hl7.ErrDataType, "alarm time %s is in the future", t.UTC().Format(time.RFC3339))
	}
	text := seg.C(5, 2)
	if text == "" {
		text = seg.C(5, 1)
	}
	if text == "" {
		text = name
	}
	if text == "" {
		text = code
	}
	if a.Technical {
		text = "Technical alarm: " + text
	}
	a.Equipment = seg.C(18, 1)
	if a.Equipment == "" {
		a.Equipment = seg.C(18, 3)
	}
	a.Code, a.Text, a.Active, a.Time = code, text, true, t.UTC()
	return a, nil, nil
}

// applyAttribute reads the phase and state OBX that follow an alarm.
func applyAttribute(a *Alarm, seg *hl7.Segment) {
	v := strings.ToLower(seg.C(5, 1))
	switch seg.C(3, 1) {
	case mdcEventPhase:
		if v == "end" || v == "stop" {
			a.Active = false
		}
	case mdcAlarmState:
		if v == "inactive" || v == "off" {
			a.Active = false
		}
	}
}
