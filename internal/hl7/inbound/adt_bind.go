package inbound

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// BindingStore is what binding devices by location needs of the store.
type BindingStore interface {
	DevicesByIdentifier(ctx context.Context, ident store.Identifier) ([]store.Device, error)
	Locations(ctx context.Context, patient string) ([]store.LocationStay, error)
	Bindings(ctx context.Context, device string) ([]store.Binding, error)
	UpdateDevice(ctx context.Context, d *store.Device, at time.Time) error
}

// LocationBinder binds bedside devices to patients from ADT: a device is
// installed at a location when it carries an identifier of system
// store.LocationSystem whose value is that location as Tend keeps it
// ("POINT/ROOM/BED", facility first when PV1-3 names one). When an ADT
// message puts a patient at a location (A01, A02, A04, A08, and A13 back
// into the bed), the devices there are bound to the patient from the
// event's time; when the patient leaves it (A02 elsewhere, A03, A11), the
// devices there that are still bound to the patient are unbound.
type LocationBinder struct {
	Store BindingStore
	// OnDeviceChanged is told of every device whose binding changed, so
	// caches of bindings (the ingest pipeline's) are refreshed.
	OnDeviceChanged func(device string)
	Logger          *slog.Logger
}

// current is the patient's location now, "" when none is recorded.
func (b *LocationBinder) current(ctx context.Context, patient string) (string, error) {
	stays, err := b.Store.Locations(ctx, patient)
	if err != nil {
		return "", fmt.Errorf("read patient location: %w", err)
	}
	if n := len(stays); n > 0 && stays[n-1].To.IsZero() {
		return stays[n-1].Location, nil
	}
	return "", nil
}

// moved binds and unbinds after the patient moved from prev to next ("" is
// nowhere) at at. Devices already in the wanted state are left alone, so a
// resent message changes nothing.
func (b *LocationBinder) moved(ctx context.Context, patient, prev, next string, at time.Time) error {
	if prev != "" && prev != next {
		devs, err := b.Store.DevicesByIdentifier(ctx, store.Identifier{System: store.LocationSystem, Value: prev})
		if err != nil {
			return fmt.Errorf("find devices at the previous location: %w", err)
		}
		for _, d := range devs {
			if d.Patient == patient {
				if err := b.rebind(ctx, d, "", at); err != nil {
					return err
				}
			}
		}
	}
	if next == "" {
		return nil
	}
	devs, err := b.Store.DevicesByIdentifier(ctx, store.Identifier{System: store.LocationSystem, Value: next})
	if err != nil {
		return fmt.Errorf("find devices at the location: %w", err)
	}
	for _, d := range devs {
		if d.Patient != patient {
			if err := b.rebind(ctx, d, patient, at); err != nil {
				return err
			}
		}
	}
	return nil
}

// rebind changes the device's binding at at, or at the device's latest
// binding change when at is before it: binding history is append-only,
// and an event reported late must still take effect.
func (b *LocationBinder) rebind(ctx context.Context, d store.Device, patient string, at time.Time) error {
	hist, err := b.Store.Bindings(ctx, d.ID)
	if err != nil {
		return fmt.Errorf("read device bindings: %w", err)
	}
	for _, h := range hist {
		if h.From.After(at) {
			at = h.From
		}
		if !h.To.IsZero() && h.To.After(at) {
			at = h.To
		}
	}
	d.Patient = patient
	d.Resource = withPatient(d.Resource, patient)
	if err := b.Store.UpdateDevice(ctx, &d, at); err != nil {
		return fmt.Errorf("change device binding: %w", err)
	}
	if b.OnDeviceChanged != nil {
		b.OnDeviceChanged(d.ID)
	}
	if b.Logger != nil {
		b.Logger.Info("HL7 ADT changed a device binding", "device", d.ID, "bound", patient != "")
	}
	return nil
}

// withPatient sets Device.patient in the stored FHIR resource, keeping
// everything else, so the Device read over FHIR says what the binding is.
func withPatient(res []byte, patient string) []byte {
	obj := map[string]any{}
	_ = json.Unmarshal(res, &obj) // a broken stored resource is rebuilt
	obj["resourceType"] = "Device"
	if patient == "" {
		delete(obj, "patient")
	} else {
		obj["patient"] = map[string]string{"reference": "Patient/" + patient}
	}
	b, _ := json.Marshal(obj)
	return b
}
