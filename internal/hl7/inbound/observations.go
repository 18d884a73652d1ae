package inbound

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/hl7/pcd"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// refusal is an error that is the message's fault: it is answered with its
// outcome (AE) and the message is kept as a dead letter.
type refusal struct{ outcome }

// observations maps a PCD-01 report, resolves its devices and patients and
// starts the commit; the returned function waits for it.
func (h *Handler) observations(ctx context.Context, m *hl7.Message, raw []byte, now time.Time) func() outcome {
	ready := func(o outcome) func() outcome { return func() outcome { return o } }
	rep, errs := pcd.ParseORU(m, now, h.Limits)
	if len(errs) > 0 {
		return ready(h.deadLetter(ctx, raw, "", outcome{code: hl7.AE, errs: errs}))
	}
	rs, device, err := h.attribute(ctx, rep, now)
	var ref *refusal
	if errors.As(err, &ref) {
		return ready(h.deadLetter(ctx, raw, device, ref.outcome))
	}
	if err != nil {
		h.Logger.Error("HL7 observation report not stored", "err", err)
		return ready(rejected(hl7.ErrInternal, "Tend could not store the readings right now; nothing was stored, resend the message"))
	}
	if len(rs) == 0 {
		return ready(accepted(rep.Notes))
	}
	done := make(chan error, 1)
	go func() { done <- h.Commit.Commit(ctx, rs) }()
	return func() outcome {
		if err := <-done; err != nil {
			h.Logger.Error("HL7 readings not committed", "err", err)
			return rejected(hl7.ErrInternal, "Tend could not make the readings durable; resend the message")
		}
		if h.Metrics != nil {
			h.Metrics.readings.Add(float64(len(rs)))
		}
		o := accepted(rep.Notes)
		o.readings = len(rs)
		return o
	}
}

func (r *refusal) Error() string { return "refused" }

func refuse(seg string, seq, field, code int, format string, args ...any) error {
	return &refusal{outcome{code: hl7.AE, errs: []*hl7.Error{{Segment: seg, Sequence: seq, Field: field, Code: code, Msg: fmt.Sprintf(format, args...)}}}}
}

// attribute gives every reading its Tend device and patient. The patient
// named in PID wins; without one, the patient the device was bound to at
// the reading's time. It returns the first equipment id for dead letters.
func (h *Handler) attribute(ctx context.Context, rep *pcd.Report, now time.Time) ([]reading.Reading, string, error) {
	patients := make([]string, len(rep.Patients))
	for i, p := range rep.Patients {
		id, err := h.findPatient(ctx, p.IDs)
		if err != nil {
			return nil, "", err
		}
		if id == "" && len(p.IDs) > 0 {
			h.Logger.Debug("HL7 patient identifier not registered; using device bindings")
		}
		patients[i] = id
	}
	out := make([]reading.Reading, 0, len(rep.Readings))
	first := ""
	for _, r := range rep.Readings {
		if first == "" {
			first = r.Equipment
		}
		if r.Equipment == "" {
			return nil, first, refuse("OBX", r.OBX[0], 18, hl7.ErrRequiredMissing, "no equipment identifier in OBX-18, its parents or MSH-3")
		}
		dev, err := h.findDevice(ctx, r.Equipment, now)
		if err != nil {
			return nil, first, err
		}
		if dev == "" {
			return nil, first, refuse("OBX", r.OBX[0], 18, hl7.ErrUnknownKey,
				"equipment %q is not a registered device; register a Device with this identifier (or start Tend with --mllp-auto-register), then resend", clip(r.Equipment))
		}
		patient := ""
		if r.Patient >= 0 {
			patient = patients[r.Patient]
		}
		if patient == "" {
			if patient, err = h.Registry.PatientAt(ctx, dev, r.Time); err != nil {
				return nil, first, fmt.Errorf("device binding: %w", err)
			}
		}
		if patient == "" {
			return nil, first, refuse("PID", 0, 3, hl7.ErrUnknownKey,
				"no registered patient for PID-3 and equipment %q is not bound to a patient at %s; register the patient or bind the device, then resend",
				clip(r.Equipment), r.Time.Format(time.RFC3339))
		}
		rd := r.Reading
		rd.Patient, rd.Device, rd.Received, rd.Source = patient, dev, now, Source
		out = append(out, rd)
	}
	return out, first, nil
}

// findPatient returns the patient carrying one of ids (MR first), "" when
// none is registered. An identifier shared by several patients is refused
// unless its assigning authority tells them apart.
func (h *Handler) findPatient(ctx context.Context, ids []pcd.PatientID) (string, error) {
	ordered := make([]pcd.PatientID, 0, len(ids))
	for _, id := range ids {
		if id.Type == "MR" {
			ordered = append(ordered, id)
		}
	}
	for _, id := range ids {
		if id.Type != "MR" {
			ordered = append(ordered, id)
		}
	}
	for _, id := range ordered {
		key := id.Authority + "\x00" + id.Value
		if p, ok := h.people.get(key); ok {
			return p, nil
		}
		ps, n, err := h.Registry.Patients(ctx, &store.Identifier{Value: id.Value}, 10, 0)
		if err != nil {
			return "", fmt.Errorf("find patient by identifier: %w", err)
		}
		if n == 0 {
			continue
		}
		if n > 1 {
			var match []string
			for _, p := range ps {
				for _, pi := range p.Identifiers {
					if pi.Value == id.Value && id.Authority != "" && (pi.System == id.Authority || pi.System == authoritySystem(id.Authority)) {
						match = append(match, p.ID)
					}
				}
			}
			if len(match) != 1 {
				return "", refuse("PID", 0, 3, hl7.ErrUnknownKey, "patient identifier %q belongs to %d patients; send its assigning authority (PID-3.4) as registered", clip(id.Value), n)
			}
			ps[0].ID = match[0]
		}
		h.people.put(key, ps[0].ID)
		return ps[0].ID, nil
	}
	return "", nil
}

// authoritySystem is the identifier system Tend records for an HL7
// assigning authority that is not already a URI.
func authoritySystem(a string) string {
	if a == "" {
		return "urn:tend:hl7:pid"
	}
	for i := 0; i < len(a); i++ {
		if a[i] == ':' {
			return a
		}
	}
	return "urn:tend:hl7:authority:" + a
}

// findDevice returns the Tend device of an equipment identifier, "" when
// none is registered and auto-registration is off.
func (h *Handler) findDevice(ctx context.Context, equipment string, now time.Time) (string, error) {
	if id, ok := h.devices.get(equipment); ok {
		return id, nil
	}
	d, err := h.Registry.DeviceByIdentifier(ctx, store.Identifier{Value: equipment})
	if errors.Is(err, store.ErrNotFound) {
		d, err = h.Registry.Device(ctx, equipment)
	}
	if err == nil {
		h.devices.put(equipment, d.ID)
		return d.ID, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("find device: %w", err)
	}
	if !h.AutoRegister {
		return "", nil
	}
	// A deterministic id makes concurrent registrations of one device meet.
	sum := sha256.Sum256([]byte(equipment))
	id := "hl7-" + hex.EncodeToString(sum[:8])
	ident := store.Identifier{System: EquipmentSystem, Value: equipment}
	res, _ := json.Marshal(map[string]any{"resourceType": "Device", "id": id, "identifier": []store.Identifier{ident}})
	err = h.Registry.CreateDevice(ctx, &store.Device{ID: id, Identifiers: []store.Identifier{ident}, Resource: res}, now)
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return "", fmt.Errorf("register device: %w", err)
	}
	h.Logger.Info("HL7 device registered", "device", id)
	h.devices.put(equipment, id)
	return id, nil
}
