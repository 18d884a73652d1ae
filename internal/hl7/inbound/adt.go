package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/hl7/pcd"
	"github.com/tendhealth/tend/internal/store"
)

// FHIR extensions in which ADT state is kept on the Patient resource.
const (
	ExtLocation = "https://tendhealth.org/fhir/StructureDefinition/hl7-location"
	ExtStatus   = "https://tendhealth.org/fhir/StructureDefinition/hl7-encounter-status"
)

// adtEvents says what each accepted ADT trigger does: the encounter status
// it records ("" keeps the current one), whether it may create the patient
// and whether PV1-3 is taken as the new location.
var adtEvents = map[string]struct {
	status   string
	create   bool
	location bool
	leaves   bool // the patient leaves: the open location stay is closed
}{
	"A01": {"admitted", true, true, false},
	"A02": {"admitted", true, true, false}, // transfer: a new bed
	"A03": {"discharged", false, false, true},
	"A04": {"registered", true, true, false},
	"A08": {"", true, true, false},
	"A11": {"admit-cancelled", false, false, true},
	"A13": {"admitted", false, true, false}, // discharge cancelled: back in the bed
}

// adt applies an ADT message to the patient record. Changes are applied
// one message at a time so that a pipelined A01 and A08 keep their order.
func (h *Handler) adt(ctx context.Context, m *hl7.Message, raw []byte, event string, now time.Time) outcome {
	ev, ok := adtEvents[event]
	if !ok {
		return outcome{code: hl7.AR, errs: []*hl7.Error{{Segment: "MSH", Sequence: 1, Field: 9, Code: hl7.ErrUnsupportedEvt,
			Msg: fmt.Sprintf("ADT event %q is not accepted; Tend takes A01, A02, A03, A04, A08, A11 and A13", clip(event))}}}
	}
	pid := m.First("PID")
	if pid == nil {
		return h.deadLetter(ctx, raw, "", outcome{code: hl7.AE, errs: []*hl7.Error{{Segment: "PID", Code: hl7.ErrSegmentSequence, Msg: "ADT message has no PID segment"}}})
	}
	ids := pcd.PatientIDs(pid)
	if len(ids) == 0 {
		return h.deadLetter(ctx, raw, "", outcome{code: hl7.AE, errs: []*hl7.Error{{Segment: "PID", Sequence: segIndex(m, pid), Field: 3, Code: hl7.ErrRequiredMissing, Msg: "PID-3 patient identifier is empty"}}})
	}
	h.adtMu.Lock()
	defer h.adtMu.Unlock()
	id, err := h.findPatient(ctx, ids)
	var ref *refusal
	if errors.As(err, &ref) {
		return h.deadLetter(ctx, raw, "", ref.outcome)
	}
	if err != nil {
		h.Logger.Error("HL7 ADT not applied", "err", err)
		return rejected(hl7.ErrInternal, "Tend could not update the patient right now; resend the message")
	}
	var loc pcd.Location
	if pv1 := m.First("PV1"); pv1 != nil && ev.location {
		loc = pcd.LocationOf(pv1)
	}
	if id == "" {
		if !ev.create {
			return h.deadLetter(ctx, raw, "", outcome{code: hl7.AE, errs: []*hl7.Error{{Segment: "PID", Sequence: segIndex(m, pid), Field: 3, Code: hl7.ErrUnknownKey,
				Msg: fmt.Sprintf("patient %q is not registered, so ADT^%s has nothing to change", clip(ids[0].Value), event)}}})
		}
		p := &store.Patient{ID: newPatientID(ids[0]), Identifiers: identifiers(ids)}
		p.Resource = patientResource(nil, p.ID, pid, p.Identifiers, ev.status, loc)
		if err := h.Registry.CreatePatient(ctx, p); err != nil {
			h.Logger.Error("HL7 ADT patient not created", "err", err)
			return rejected(hl7.ErrInternal, "Tend could not register the patient right now; resend the message")
		}
		h.people.forget()
		return h.move(ctx, m, p.ID, ev.leaves, loc, now)
	}
	p, err := h.Registry.Patient(ctx, id)
	if err != nil {
		h.Logger.Error("HL7 ADT patient not read", "err", err)
		return rejected(hl7.ErrInternal, "Tend could not read the patient right now; resend the message")
	}
	p.Identifiers = mergeIdentifiers(p.Identifiers, identifiers(ids))
	p.Resource = patientResource(p.Resource, p.ID, pid, p.Identifiers, ev.status, loc)
	if err := h.Registry.UpdatePatient(ctx, &p); err != nil {
		h.Logger.Error("HL7 ADT patient not updated", "err", err)
		return rejected(hl7.ErrInternal, "Tend could not update the patient right now; resend the message")
	}
	h.people.forget()
	return h.move(ctx, m, p.ID, ev.leaves, loc, now)
}

// move records the location change in the patient's location history, at
// the time the event occurred (EVN-6, else EVN-2, MSH-7, now).
func (h *Handler) move(ctx context.Context, m *hl7.Message, patient string, leaves bool, loc pcd.Location, now time.Time) outcome {
	if !leaves && loc == (pcd.Location{}) {
		return accepted(nil)
	}
	zone := hl7.ZoneOf(m.MSH().C(7, 1))
	at := now
	evn := m.First("EVN")
	for _, v := range []string{evn.C(6, 1), evn.C(2, 1), m.MSH().C(7, 1)} {
		if t, err := hl7.ParseTime(v, zone); v != "" && err == nil {
			at = t.UTC()
			break
		}
	}
	where := loc.String()
	if leaves {
		where = ""
	}
	var prev string
	if h.Bind != nil {
		var err error
		if prev, err = h.Bind.current(ctx, patient); err != nil {
			h.Logger.Error("HL7 ADT location not read", "err", err)
			return rejected(hl7.ErrInternal, "Tend could not read the patient's location right now; resend the message")
		}
	}
	if err := h.Registry.MovePatient(ctx, patient, where, at); err != nil {
		h.Logger.Error("HL7 ADT location not recorded", "err", err)
		return rejected(hl7.ErrInternal, "Tend could not record the patient's location right now; resend the message")
	}
	if h.Bind != nil {
		if err := h.Bind.moved(ctx, patient, prev, where, at); err != nil {
			h.Logger.Error("HL7 ADT device bindings not changed", "err", err)
			return rejected(hl7.ErrInternal, "Tend could not bind the devices at the patient's location right now; resend the message")
		}
	}
	return accepted(nil)
}

func segIndex(m *hl7.Message, s *hl7.Segment) int {
	for i := range m.Segments {
		if &m.Segments[i] == s {
			return i + 1
		}
	}
	return 0
}

// newPatientID derives the id of a patient registered by ADT from its
// first identifier, so a resent A01 whose first delivery was stored but
// not acknowledged meets the same record (CreatePatient then conflicts).
func newPatientID(id pcd.PatientID) string {
	return "hl7-" + shortHash(id.Authority+"\x00"+id.Value)
}

func identifiers(ids []pcd.PatientID) []store.Identifier {
	out := make([]store.Identifier, 0, len(ids))
	for _, id := range ids {
		out = append(out, store.Identifier{System: authoritySystem(id.Authority), Value: id.Value})
	}
	return out
}

// mergeIdentifiers keeps the registered identifiers and adds new ones.
func mergeIdentifiers(have, add []store.Identifier) []store.Identifier {
	out := append([]store.Identifier(nil), have...)
	for _, a := range add {
		dup := false
		for _, h := range have {
			if h.Value == a.Value && (h.System == a.System || h.System == "" || a.System == "") {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}

// patientResource updates (or starts) the FHIR Patient JSON from PID and
// keeps every field it does not own, so edits made over FHIR survive.
func patientResource(old []byte, id string, pid *hl7.Segment, ids []store.Identifier, status string, loc pcd.Location) []byte {
	obj := map[string]any{}
	if len(old) > 0 {
		_ = json.Unmarshal(old, &obj) // a broken stored resource is rebuilt
	}
	obj["resourceType"], obj["id"] = "Patient", id
	delete(obj, "meta")
	idents := make([]map[string]string, 0, len(ids))
	for _, i := range ids {
		e := map[string]string{"value": i.Value}
		if i.System != "" {
			e["system"] = i.System
		}
		idents = append(idents, e)
	}
	obj["identifier"] = idents
	if family, given := pid.C(5, 1), pid.C(5, 2); family != "" || given != "" {
		name := map[string]any{}
		if family != "" && family != `""` {
			name["family"] = family
		}
		var gs []string
		for _, g := range []string{given, pid.C(5, 3)} {
			if g != "" && g != `""` {
				gs = append(gs, g)
			}
		}
		if len(gs) > 0 {
			name["given"] = gs
		}
		obj["name"] = []any{name}
	}
	if b := pid.C(7, 1); len(b) >= 8 {
		if t, err := hl7.ParseTime(b[:8], time.UTC); err == nil {
			obj["birthDate"] = t.Format("2006-01-02")
		}
	}
	switch pid.C(8, 1) {
	case "M":
		obj["gender"] = "male"
	case "F":
		obj["gender"] = "female"
	case "O", "A", "N":
		obj["gender"] = "other"
	case "U":
		obj["gender"] = "unknown"
	}
	var exts []any
	if old, ok := obj["extension"].([]any); ok {
		for _, e := range old {
			if m, ok := e.(map[string]any); ok && (m["url"] == ExtLocation && loc != (pcd.Location{}) || m["url"] == ExtStatus && status != "") {
				continue
			}
			exts = append(exts, e)
		}
	}
	if loc != (pcd.Location{}) {
		exts = append(exts, map[string]any{"url": ExtLocation, "valueString": loc.String()})
	}
	if status != "" {
		exts = append(exts, map[string]any{"url": ExtStatus, "valueCode": status})
	}
	if len(exts) > 0 {
		obj["extension"] = exts
	}
	b, _ := json.Marshal(obj)
	return b
}
