package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tendhealth/tend/internal/store"
)

// deviceCACases are the conformance cases of store.DeviceCAStore; Run includes them.
var deviceCACases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"DeviceCAs", testDeviceCAs},
	{"DeviceCerts", testDeviceCerts},
}

func testDeviceCAs(t *testing.T, s store.Store) {
	_, err := s.DeviceCA(ctx(t), "org1")
	wantErr(t, err, store.ErrNotFound, "absent CA")
	cas, err := s.DeviceCAs(ctx(t))
	must(t, err, "list none")
	if len(cas) != 0 {
		t.Fatalf("CAs on an empty store: %v", cas)
	}
	a := store.DeviceCA{Org: "org1", Cert: []byte{0x30, 1, 2}, SealedKey: []byte{9, 8, 7}, Created: t0}
	b := store.DeviceCA{Org: "org0", Cert: []byte{0x30, 3}, SealedKey: []byte{6}, Created: t0.Add(time.Hour)}
	must(t, s.CreateDeviceCA(ctx(t), a), "create a")
	must(t, s.CreateDeviceCA(ctx(t), b), "create b")
	// One CA per organisation: a second would make earlier certificates
	// unverifiable, so it is refused rather than replaced.
	wantErr(t, s.CreateDeviceCA(ctx(t), store.DeviceCA{Org: "org1", Cert: []byte{1}, SealedKey: []byte{1}, Created: t0}), store.ErrConflict, "second CA")
	got, err := s.DeviceCA(ctx(t), "org1")
	must(t, err, "read")
	if diff := cmp.Diff(a, got); diff != "" {
		t.Fatalf("CA round trip (-want +got):\n%s", diff)
	}
	cas, err = s.DeviceCAs(ctx(t))
	must(t, err, "list")
	if diff := cmp.Diff([]store.DeviceCA{b, a}, cas); diff != "" {
		t.Fatalf("CAs by org (-want +got):\n%s", diff)
	}
}

func testDeviceCerts(t *testing.T, s store.Store) {
	c1 := store.DeviceCert{Serial: "0a", Device: "d1", Org: "org1", Issued: t0, NotAfter: t0.Add(24 * time.Hour)}
	c2 := store.DeviceCert{Serial: "ff01", Device: "d1", Org: "org1", Issued: t0.Add(time.Minute), NotAfter: t0.Add(48 * time.Hour)}
	c3 := store.DeviceCert{Serial: "0b", Device: "d2", Org: "org1", Issued: t0, NotAfter: t0.Add(24 * time.Hour)}
	for _, c := range []store.DeviceCert{c2, c1, c3} {
		must(t, s.AddDeviceCert(ctx(t), c), "add "+c.Serial)
	}
	wantErr(t, s.AddDeviceCert(ctx(t), c1), store.ErrConflict, "add again")
	_, err := s.DeviceCert(ctx(t), "nope")
	wantErr(t, err, store.ErrNotFound, "unknown serial")
	got, err := s.DeviceCert(ctx(t), "ff01")
	must(t, err, "read")
	if diff := cmp.Diff(c2, got); diff != "" {
		t.Fatalf("certificate round trip (-want +got):\n%s", diff)
	}
	list, err := s.DeviceCerts(ctx(t), "d1")
	must(t, err, "list")
	if diff := cmp.Diff([]store.DeviceCert{c1, c2}, list); diff != "" {
		t.Fatalf("device certificates oldest first (-want +got):\n%s", diff)
	}

	// Revoking one keeps the first revocation time.
	at := t0.Add(time.Hour)
	r, err := s.RevokeDeviceCert(ctx(t), "0a", at)
	must(t, err, "revoke one")
	if !r.Revoked.Equal(at) {
		t.Fatalf("revoked at %v, want %v", r.Revoked, at)
	}
	r, err = s.RevokeDeviceCert(ctx(t), "0a", at.Add(time.Hour))
	must(t, err, "revoke again")
	if !r.Revoked.Equal(at) {
		t.Fatalf("second revocation moved the time to %v", r.Revoked)
	}
	_, err = s.RevokeDeviceCert(ctx(t), "nope", at)
	wantErr(t, err, store.ErrNotFound, "revoke unknown")

	// Revoking a device's certificates takes only those still valid.
	at2 := t0.Add(2 * time.Hour)
	revoked, err := s.RevokeDeviceCerts(ctx(t), "d1", at2)
	must(t, err, "revoke device")
	c2.Revoked = at2
	if diff := cmp.Diff([]store.DeviceCert{c2}, revoked); diff != "" {
		t.Fatalf("revoked by device (-want +got):\n%s", diff)
	}
	revoked, err = s.RevokeDeviceCerts(ctx(t), "d1", at2.Add(time.Hour))
	must(t, err, "revoke device again")
	if len(revoked) != 0 {
		t.Fatalf("second device revocation revoked %v", revoked)
	}
	if c, _ := s.DeviceCert(ctx(t), "0b"); !c.Revoked.IsZero() {
		t.Fatal("another device's certificate was revoked")
	}

	c1.Revoked = at
	tests := []struct {
		since time.Time
		want  []store.DeviceCert
	}{
		{time.Time{}, []store.DeviceCert{c1, c2}},
		{at, []store.DeviceCert{c1, c2}},
		{at.Add(time.Nanosecond), []store.DeviceCert{c2}},
		{at2.Add(time.Nanosecond), nil},
	}
	for _, tc := range tests {
		got, err := s.RevokedDeviceCertsSince(ctx(t), tc.since)
		must(t, err, "revoked since")
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("revoked since %v (-want +got):\n%s", tc.since, diff)
		}
	}
}
