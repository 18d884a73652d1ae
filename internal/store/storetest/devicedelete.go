package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// testDeleteDevice: a bound device is refused, an unbound one goes with
// its identifiers, bindings and secret, and its readings stay.
func testDeleteDevice(t *testing.T, s store.Store) {
	must(t, s.CreatePatient(ctx(t), &store.Patient{ID: "p1", Resource: []byte(`{"resourceType":"Patient"}`)}), "create patient")
	serial := store.Identifier{System: "urn:serial", Value: "S-1"}
	d := &store.Device{ID: "d1", Patient: "p1", Identifiers: []store.Identifier{serial}, Resource: []byte(`{"resourceType":"Device"}`)}
	must(t, s.CreateDevice(ctx(t), d, t0), "create device")
	must(t, s.SetDeviceSecret(ctx(t), "d1", []byte("hash")), "set secret")
	if _, err := s.Append(ctx(t), []reading.Reading{vital("p1", "d1", "8867-4", t0.Add(time.Minute), 70)}); err != nil {
		t.Fatalf("append: %v", err)
	}

	if err := s.DeleteDevice(ctx(t), "d1"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete bound device: %v, want ErrConflict", err)
	}
	if _, err := s.Device(ctx(t), "d1"); err != nil {
		t.Fatalf("refused delete removed the device: %v", err)
	}
	if err := s.DeleteDevice(ctx(t), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete absent device: %v, want ErrNotFound", err)
	}

	d.Patient = ""
	must(t, s.UpdateDevice(ctx(t), d, t0.Add(time.Hour)), "unbind")
	must(t, s.DeleteDevice(ctx(t), "d1"), "delete unbound device")
	if _, err := s.Device(ctx(t), "d1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted device reads: %v", err)
	}
	if ds, err := s.DevicesByIdentifier(ctx(t), serial); err != nil || len(ds) != 0 {
		t.Errorf("deleted device's identifier still finds %d devices (%v)", len(ds), err)
	}
	if _, err := s.DeviceSecret(ctx(t), "d1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted device's secret: %v, want ErrNotFound", err)
	}
	if bs, err := s.Bindings(ctx(t), "d1"); err != nil || len(bs) != 0 {
		t.Errorf("deleted device's bindings: %v %v", bs, err)
	}
	if n, err := s.CountSamples(ctx(t), store.Query{Patient: "p1"}); err != nil || n != 1 {
		t.Errorf("readings after delete: %d %v, want 1", n, err)
	}
	if err := s.DeleteDevice(ctx(t), "d1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
	// The id is free again, with a fresh history.
	must(t, s.CreateDevice(ctx(t), &store.Device{ID: "d1", Resource: []byte(`{"resourceType":"Device"}`)}, t0.Add(2*time.Hour)), "create again")
	if bs, err := s.Bindings(ctx(t), "d1"); err != nil || len(bs) != 0 {
		t.Errorf("recreated device inherits bindings: %v %v", bs, err)
	}
}
