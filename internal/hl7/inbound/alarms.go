package inbound

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/hl7/pcd"
)

// alarms applies a PCD-04 report: each alarm becomes a device alarm state
// of the patient (alarm.Service.RaiseExternal). Alarm states are applied
// before the ACK, so AA means Tend has the alarm.
func (h *Handler) alarms(ctx context.Context, m *hl7.Message, raw []byte, now time.Time) outcome {
	if h.Alarms == nil {
		return rejected(hl7.ErrUnsupportedEvt, "device alarms (ORU^R40) are not enabled on this server")
	}
	rep, errs := pcd.ParseAlarms(m, now, h.Limits)
	if len(errs) > 0 {
		return h.deadLetter(ctx, raw, "", outcome{code: hl7.AE, errs: errs})
	}
	patients := make([]string, len(rep.Patients))
	for i, p := range rep.Patients {
		id, err := h.findPatient(ctx, p.IDs)
		var ref *refusal
		if errors.As(err, &ref) {
			return h.deadLetter(ctx, raw, "", ref.outcome)
		}
		if err != nil {
			h.Logger.Error("HL7 alarm patient lookup", "err", err)
			return rejected(hl7.ErrInternal, "Tend could not take the alarm right now; resend the message")
		}
		patients[i] = id
	}
	for _, a := range rep.Alarms {
		dev, err := h.findDevice(ctx, a.Equipment, now)
		var ref *refusal
		if errors.As(err, &ref) {
			return h.deadLetter(ctx, raw, a.Equipment, ref.outcome)
		}
		if err != nil {
			h.Logger.Error("HL7 alarm device lookup", "err", err)
			return rejected(hl7.ErrInternal, "Tend could not take the alarm right now; resend the message")
		}
		if dev == "" {
			return h.deadLetter(ctx, raw, a.Equipment, outcome{code: hl7.AE, errs: []*hl7.Error{{Segment: "OBX", Sequence: a.Segment, Field: 18, Code: hl7.ErrUnknownKey,
				Msg: "equipment " + clip(a.Equipment) + " is not a registered device; register it (or start Tend with --mllp-auto-register), then resend"}}})
		}
		patient := ""
		if a.Patient >= 0 {
			patient = patients[a.Patient]
		}
		if patient == "" {
			if patient, err = h.Registry.PatientAt(ctx, dev, a.Time); err != nil {
				return rejected(hl7.ErrInternal, "Tend could not take the alarm right now; resend the message")
			}
		}
		if patient == "" {
			return h.deadLetter(ctx, raw, a.Equipment, outcome{code: hl7.AE, errs: []*hl7.Error{{Segment: "PID", Field: 3, Code: hl7.ErrUnknownKey,
				Msg: "no registered patient for PID-3 and the device is not bound to a patient; register the patient or bind the device, then resend"}}})
		}
		x := a.External
		x.Patient, x.Device, x.Source = patient, dev, Source
		if err := h.Alarms.RaiseExternal(ctx, x); err != nil {
			h.Logger.Error("HL7 alarm not applied", "err", err)
			return rejected(hl7.ErrInternal, "Tend could not record the alarm right now; resend the message")
		}
	}
	return accepted(rep.Notes)
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
