package storetest

import (
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

func testDevicesByIdentifier(t *testing.T, s store.Store) {
	bed := store.Identifier{System: store.LocationSystem, Value: "WEST/ICU/12/A"}
	for _, d := range []*store.Device{
		{ID: "pump-2", Identifiers: []store.Identifier{bed, {System: "urn:serial", Value: "P2"}}},
		{ID: "monitor-1", Identifiers: []store.Identifier{bed}},
		{ID: "monitor-9", Identifiers: []store.Identifier{{System: store.LocationSystem, Value: "WEST/ICU/12/B"}}},
		{ID: "other", Identifiers: []store.Identifier{{System: "urn:serial", Value: "WEST/ICU/12/A"}}},
	} {
		d.Resource = []byte(`{"resourceType":"Device"}`)
		must(t, s.CreateDevice(ctx(t), d, t0.Add(-time.Hour)), "create device")
	}
	ids := func(ds []store.Device) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	got, err := s.DevicesByIdentifier(ctx(t), bed)
	must(t, err, "devices at bed")
	if want := []string{"monitor-1", "pump-2"}; len(got) != 2 || ids(got)[0] != want[0] || ids(got)[1] != want[1] {
		t.Errorf("devices at bed = %v, want %v", ids(got), want)
	}
	if len(got) == 2 && len(got[1].Identifiers) != 2 {
		t.Errorf("device identifiers not loaded: %+v", got[1])
	}
	got, err = s.DevicesByIdentifier(ctx(t), store.Identifier{Value: "WEST/ICU/12/A"})
	must(t, err, "devices by value only")
	if len(got) != 3 {
		t.Errorf("any system: %v, want monitor-1, other, pump-2", ids(got))
	}
	got, err = s.DevicesByIdentifier(ctx(t), store.Identifier{System: store.LocationSystem, Value: "nowhere"})
	must(t, err, "devices nowhere")
	if len(got) != 0 {
		t.Errorf("devices nowhere = %v", ids(got))
	}
}
