// Package storetest is the conformance suite every store.Store
// implementation must pass. It relies only on the interface so the embedded
// and the scale-out stores are held to exactly the same behaviour.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// Opener returns a new, empty store for one subtest and arranges for it to
// be closed (t.Cleanup).
type Opener func(t *testing.T) store.Store

// Run runs the conformance suite, each case on a fresh store from open.
func Run(t *testing.T, open Opener) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PatientCreateUpdate", testPatientCreateUpdate},
		{"PatientSearch", testPatientSearch},
		{"DeviceBindings", testDeviceBindings},
		{"DeviceCreateUnbound", testDeviceCreateUnbound},
		{"DeviceByIdentifier", testDeviceByIdentifier},
		{"DevicesByIdentifier", testDevicesByIdentifier}, // devicelocation.go
		{"DeleteDevice", testDeleteDevice},               // devicedelete.go
		{"PatientLocations", testPatientLocations},
		{"BindingHistoryAppendOnly", testBindingHistoryAppendOnly},
		{"DeviceSecrets", testDeviceSecrets},
		{"Tokens", testTokens},
		{"Users", testUsers},
		{"AppendDedup", testAppendDedup},
		{"SamplesQuery", testSamplesQuery},
		{"SamplesDevicesAndAfter", testSamplesDevicesAndAfter},
		{"SampleRoundTrip", testSampleRoundTrip},
		{"SampleBadIDs", testSampleBadIDs},
		{"Latest", testLatest},
		{"Downsample", testDownsample},
		{"DeadLetters", testDeadLetters},
		{"ConcurrentAppend", testConcurrentAppend},
		{"CancelledContext", testCancelledContext},
		{"AuditChain", testAuditChain}, {"AuditQuery", testAuditQuery}, {"AuditConcurrentAppend", testAuditConcurrent}, // audit.go
		{"OAuthClients", testOAuthClients}, {"OAuthJTIReplay", testOAuthJTIReplay}, {"OAuthTokens", testOAuthTokens}, // oauth.go
		{"AccessOrgFields", testAccessOrgFields}, {"AccessCareTeams", testAccessCareTeams}, {"AccessConsents", testAccessConsents}, {"AccessBreakGlass", testAccessBreakGlass}, {"AccessSearch", testAccessSearch}, // access.go
	}
	cases = append(cases, archiveCases...) // archive.go
	cases = append(cases, exportCases...)  // export.go (FHIR Bulk Data)
	cases = append(cases, deviceCACases...)
	cases = append(cases, contactCases...) // contacts.go
	cases = append(cases, noteCases...)
	for _, c := range append(cases, peopleCases...) { // peopleCases: sessions.go
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, open(t))
		})
	}
}

// t0 has nanoseconds on purpose: stores must keep them.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func ctx(t *testing.T) context.Context { return t.Context() }

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func testPatientCreateUpdate(t *testing.T, s store.Store) {
	p := &store.Patient{
		ID:          "p1",
		Identifiers: []store.Identifier{{System: "urn:mrn", Value: "123"}, {Value: "bare"}},
		Resource:    []byte(`{"resourceType":"Patient","id":"p1"}`),
	}
	must(t, s.CreatePatient(ctx(t), p), "create")
	if p.Version != 1 || p.Updated.IsZero() {
		t.Fatalf("after create: version %d updated %v, want 1 and a time", p.Version, p.Updated)
	}
	got, err := s.Patient(ctx(t), "p1")
	must(t, err, "get")
	if diff := cmp.Diff(*p, got); diff != "" {
		t.Fatalf("get after create (-want +got):\n%s", diff)
	}

	dup := &store.Patient{ID: "p1", Resource: []byte(`{}`)}
	wantErr(t, s.CreatePatient(ctx(t), dup), store.ErrConflict, "create existing")

	p.Resource = []byte(`{"resourceType":"Patient","id":"p1","active":true}`)
	p.Identifiers = []store.Identifier{{System: "urn:mrn", Value: "999"}}
	must(t, s.UpdatePatient(ctx(t), p), "update")
	if p.Version != 2 {
		t.Fatalf("version after update = %d, want 2", p.Version)
	}
	must(t, s.UpdatePatient(ctx(t), p), "update again")
	if p.Version != 3 {
		t.Fatalf("version after second update = %d, want 3", p.Version)
	}
	got, err = s.Patient(ctx(t), "p1")
	must(t, err, "get after update")
	if diff := cmp.Diff(*p, got); diff != "" {
		t.Fatalf("get after update (-want +got):\n%s", diff)
	}

	wantErr(t, s.UpdatePatient(ctx(t), &store.Patient{ID: "nobody"}), store.ErrNotFound, "update missing")
	_, err = s.Patient(ctx(t), "nobody")
	wantErr(t, err, store.ErrNotFound, "get missing")
}

func testPatientSearch(t *testing.T, s store.Store) {
	for _, p := range []store.Patient{
		{ID: "p3", Identifiers: []store.Identifier{{System: "urn:a", Value: "456"}}},
		{ID: "p1", Identifiers: []store.Identifier{{System: "urn:a", Value: "123"}}},
		{ID: "p2", Identifiers: []store.Identifier{{System: "urn:b", Value: "123"}, {System: "urn:a", Value: "777"}}},
		{ID: "p4"},
	} {
		p := p
		must(t, s.CreatePatient(ctx(t), &p), "create "+p.ID)
	}
	tests := []struct {
		name          string
		ident         *store.Identifier
		limit, offset int
		want          []string
		total         int
	}{
		{"all", nil, 0, 0, []string{"p1", "p2", "p3", "p4"}, 4},
		{"value any system", &store.Identifier{Value: "123"}, 0, 0, []string{"p1", "p2"}, 2},
		{"value and system", &store.Identifier{System: "urn:a", Value: "123"}, 0, 0, []string{"p1"}, 1},
		{"system mismatch", &store.Identifier{System: "urn:b", Value: "456"}, 0, 0, nil, 0},
		{"second identifier", &store.Identifier{Value: "777"}, 0, 0, []string{"p2"}, 1},
		{"no match", &store.Identifier{Value: "nope"}, 0, 0, nil, 0},
		{"first page", nil, 2, 0, []string{"p1", "p2"}, 4},
		{"second page", nil, 2, 2, []string{"p3", "p4"}, 4},
		{"past the end", nil, 2, 10, nil, 4},
		{"filtered page", &store.Identifier{Value: "123"}, 1, 1, []string{"p2"}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps, total, err := s.Patients(ctx(t), tc.ident, tc.limit, tc.offset)
			must(t, err, "patients")
			var ids []string
			for _, p := range ps {
				ids = append(ids, p.ID)
			}
			if diff := cmp.Diff(tc.want, ids); diff != "" || total != tc.total {
				t.Fatalf("ids (-want +got):\n%s\ntotal %d, want %d", diff, total, tc.total)
			}
		})
	}
	ps, _, err := s.Patients(ctx(t), &store.Identifier{Value: "123", System: "urn:b"}, 0, 0)
	must(t, err, "patients")
	if len(ps) != 1 || len(ps[0].Identifiers) != 2 {
		t.Fatalf("listed patient should carry all its identifiers: %+v", ps)
	}
}

func testDeviceBindings(t *testing.T, s store.Store) {
	t1, t2, t3 := t0.Add(time.Hour), t0.Add(2*time.Hour), t0.Add(3*time.Hour)
	d := &store.Device{ID: "d1", Identifiers: []store.Identifier{{System: "urn:serial", Value: "SN1"}}, Patient: "p1", Resource: []byte(`{"id":"d1"}`)}
	must(t, s.CreateDevice(ctx(t), d, t0), "create")
	if d.Version != 1 || d.Updated.IsZero() {
		t.Fatalf("after create: version %d updated %v", d.Version, d.Updated)
	}
	got, err := s.Device(ctx(t), "d1")
	must(t, err, "get")
	if diff := cmp.Diff(*d, got); diff != "" {
		t.Fatalf("get (-want +got):\n%s", diff)
	}
	wantErr(t, s.CreateDevice(ctx(t), &store.Device{ID: "d1"}, t0), store.ErrConflict, "create existing")

	d.Patient = "p2"
	must(t, s.UpdateDevice(ctx(t), d, t1), "rebind")
	d.Patient = ""
	must(t, s.UpdateDevice(ctx(t), d, t2), "unbind")
	d.Patient = "p1"
	must(t, s.UpdateDevice(ctx(t), d, t3), "bind again")
	d.Resource = []byte(`{"id":"d1","note":"no binding change"}`)
	must(t, s.UpdateDevice(ctx(t), d, t3.Add(time.Hour)), "update without rebinding")
	if d.Version != 5 {
		t.Fatalf("version = %d, want 5", d.Version)
	}
	got, err = s.Device(ctx(t), "d1")
	must(t, err, "get after updates")
	if diff := cmp.Diff(*d, got); diff != "" {
		t.Fatalf("get after updates (-want +got):\n%s", diff)
	}

	bs, err := s.Bindings(ctx(t), "d1")
	must(t, err, "bindings")
	want := []store.Binding{
		{Device: "d1", Patient: "p1", From: t0, To: t1},
		{Device: "d1", Patient: "p2", From: t1, To: t2},
		{Device: "d1", Patient: "p1", From: t3},
	}
	if diff := cmp.Diff(want, bs); diff != "" {
		t.Fatalf("bindings (-want +got):\n%s", diff)
	}

	ns := time.Nanosecond
	at := []struct {
		name string
		t    time.Time
		want string
	}{
		{"before first", t0.Add(-ns), ""},
		{"from is inclusive", t0, "p1"},
		{"to is exclusive", t1.Add(-ns), "p1"},
		{"rebound", t1, "p2"},
		{"last instant before unbind", t2.Add(-ns), "p2"},
		{"unbound", t2, ""},
		{"gap", t3.Add(-ns), ""},
		{"open binding", t3, "p1"},
		{"far future", t3.AddDate(50, 0, 0), "p1"},
	}
	for _, tc := range at {
		t.Run("PatientAt/"+tc.name, func(t *testing.T) {
			p, err := s.PatientAt(ctx(t), "d1", tc.t)
			must(t, err, "patient at")
			if p != tc.want {
				t.Fatalf("PatientAt(%v) = %q, want %q", tc.t, p, tc.want)
			}
		})
	}

	wantErr(t, s.UpdateDevice(ctx(t), &store.Device{ID: "nope"}, t0), store.ErrNotFound, "update missing")
	_, err = s.Device(ctx(t), "nope")
	wantErr(t, err, store.ErrNotFound, "get missing")
	bs, err = s.Bindings(ctx(t), "nope")
	must(t, err, "bindings of unknown device")
	if len(bs) != 0 {
		t.Fatalf("bindings of unknown device = %v", bs)
	}
	p, err := s.PatientAt(ctx(t), "nope", t0)
	if err != nil || p != "" {
		t.Fatalf("PatientAt unknown device = %q, %v", p, err)
	}
}

func testDeviceCreateUnbound(t *testing.T, s store.Store) {
	d := &store.Device{ID: "d2"}
	must(t, s.CreateDevice(ctx(t), d, t0), "create")
	bs, err := s.Bindings(ctx(t), "d2")
	must(t, err, "bindings")
	if len(bs) != 0 {
		t.Fatalf("unbound device has bindings %v", bs)
	}
	if p, err := s.PatientAt(ctx(t), "d2", t0); err != nil || p != "" {
		t.Fatalf("PatientAt = %q, %v", p, err)
	}
	d.Patient = "p9"
	must(t, s.UpdateDevice(ctx(t), d, t0.Add(time.Minute)), "bind")
	if p, err := s.PatientAt(ctx(t), "d2", t0.Add(time.Minute)); err != nil || p != "p9" {
		t.Fatalf("PatientAt after bind = %q, %v", p, err)
	}
	got, err := s.Device(ctx(t), "d2")
	must(t, err, "get")
	if got.Patient != "p9" {
		t.Fatalf("device patient = %q, want p9", got.Patient)
	}
}

// Location history from ADT: each move closes the open stay; the same
// location again changes nothing; "" (discharge) only closes; a move dated
// before the open stay began is recorded at its start, never rewriting
// history; a move at the instant a stay began replaces it.
func testPatientLocations(t *testing.T, s store.Store) {
	c := ctx(t)
	if ls, err := s.Locations(c, "p1"); err != nil || len(ls) != 0 {
		t.Fatalf("no history yet: %v, %v", ls, err)
	}
	must(t, s.MovePatient(c, "p1", "ICU/12", t0), "admit")
	must(t, s.MovePatient(c, "p1", "ICU/12", t0.Add(time.Minute)), "same bed")
	must(t, s.MovePatient(c, "p1", "WARD/3", t0.Add(time.Hour)), "transfer")
	must(t, s.MovePatient(c, "p1", "WARD/4", t0.Add(30*time.Minute)), "late transfer")
	must(t, s.MovePatient(c, "p1", "", t0.Add(2*time.Hour)), "discharge")
	must(t, s.MovePatient(c, "p1", "", t0.Add(3*time.Hour)), "discharge again")
	must(t, s.MovePatient(c, "p2", "ER", t0), "other patient")
	must(t, s.MovePatient(c, "p2", "ER/1", t0), "same instant")
	got, err := s.Locations(c, "p1")
	must(t, err, "locations")
	want := []store.LocationStay{
		{Patient: "p1", Location: "ICU/12", From: t0, To: t0.Add(time.Hour)},
		// The late move is recorded when WARD/3 began, so it replaces it.
		{Patient: "p1", Location: "WARD/4", From: t0.Add(time.Hour), To: t0.Add(2 * time.Hour)},
	}
	if len(got) != len(want) {
		t.Fatalf("history %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Location != want[i].Location || !got[i].From.Equal(want[i].From) || !got[i].To.Equal(want[i].To) || got[i].Patient != "p1" {
			t.Fatalf("stay %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	got, err = s.Locations(c, "p2")
	must(t, err, "locations p2")
	if len(got) != 1 || got[0].Location != "ER/1" || !got[0].To.IsZero() {
		t.Fatalf("p2 history %+v, want one open stay at ER/1", got)
	}
}

// Devices are found by their business identifiers (HL7 OBX-18 equipment
// ids, EUI-64), with or without the identifier's system.
func testDeviceByIdentifier(t *testing.T, s store.Store) {
	eui := store.Identifier{System: "urn:ieee:eui64", Value: "080019FFFE3ED02D"}
	must(t, s.CreateDevice(ctx(t), &store.Device{ID: "dz", Identifiers: []store.Identifier{eui}}, t0), "create dz")
	must(t, s.CreateDevice(ctx(t), &store.Device{ID: "dy", Identifiers: []store.Identifier{{System: "urn:other", Value: "080019FFFE3ED02D"}}}, t0), "create dy")
	must(t, s.CreateDevice(ctx(t), &store.Device{ID: "dx"}, t0), "create dx")
	got, err := s.DeviceByIdentifier(ctx(t), eui)
	if err != nil || got.ID != "dz" || len(got.Identifiers) != 1 {
		t.Fatalf("by system and value: %+v, %v", got, err)
	}
	got, err = s.DeviceByIdentifier(ctx(t), store.Identifier{Value: eui.Value})
	if err != nil || got.ID != "dy" {
		t.Fatalf("by value only: got %q, %v; want the lowest id dy", got.ID, err)
	}
	_, err = s.DeviceByIdentifier(ctx(t), store.Identifier{System: "urn:ieee:eui64", Value: "nope"})
	wantErr(t, err, store.ErrNotFound, "unknown identifier")
}

// Binding history is append-only: a change may not reach back before the
// latest recorded boundary (ErrConflict), so the attribution of readings
// already taken never changes.
func testBindingHistoryAppendOnly(t *testing.T, s store.Store) {
	ctx := t.Context()
	d := &store.Device{ID: "d1", Patient: "p1"}
	if err := s.CreateDevice(ctx, d, t0); err != nil {
		t.Fatal(err)
	}
	d.Patient = "p2"
	if err := s.UpdateDevice(ctx, d, t0.Add(-time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rebinding before the open binding: err = %v, want ErrConflict", err)
	}
	got, err := s.Device(ctx, "d1")
	if err != nil || got.Patient != "p1" || got.Version != 1 {
		t.Fatalf("failed update changed the device: %+v, %v", got, err)
	}
	// Rebinding at the very instant of the open binding replaces it.
	if err := s.UpdateDevice(ctx, d, t0); err != nil {
		t.Fatal(err)
	}
	bs, err := s.Bindings(ctx, "d1")
	if err != nil || len(bs) != 1 || bs[0].Patient != "p2" || !bs[0].From.Equal(t0) {
		t.Fatalf("bindings = %+v, %v", bs, err)
	}
	// Unbound after a closed binding: a new binding may not reach back
	// into the closed interval.
	d.Patient = ""
	if err := s.UpdateDevice(ctx, d, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	d.Patient = "p3"
	if err := s.UpdateDevice(ctx, d, t0.Add(30*time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("binding inside closed history: err = %v, want ErrConflict", err)
	}
	if err := s.UpdateDevice(ctx, d, t0.Add(time.Hour)); err != nil {
		t.Fatalf("binding exactly at the end of history: %v", err)
	}
	if p, err := s.PatientAt(ctx, "d1", t0.Add(30*time.Minute)); err != nil || p != "p2" {
		t.Fatalf("history changed: PatientAt = %q, %v", p, err)
	}
}

func testDeviceSecrets(t *testing.T, s store.Store) {
	must(t, s.CreateDevice(ctx(t), &store.Device{ID: "d1"}, t0), "create")
	_, err := s.DeviceSecret(ctx(t), "d1")
	wantErr(t, err, store.ErrNotFound, "secret before set")
	wantErr(t, s.SetDeviceSecret(ctx(t), "nope", []byte("h")), store.ErrNotFound, "secret for unknown device")

	for _, h := range [][]byte{[]byte("hash-one"), {0, 1, 2, 255}} {
		must(t, s.SetDeviceSecret(ctx(t), "d1", h), "set")
		got, err := s.DeviceSecret(ctx(t), "d1")
		must(t, err, "get")
		if string(got) != string(h) {
			t.Fatalf("secret = %x, want %x", got, h)
		}
	}
}

func testTokens(t *testing.T, s store.Store) {
	tokens := []store.Token{
		{Hash: []byte{1, 2, 3}, Role: store.RoleAdmin, Org: store.DefaultOrg, Subject: "bootstrap", Created: t0},
		{Hash: []byte{4, 5, 6}, Role: store.RoleIntegration, Org: store.DefaultOrg, Subject: "u1", Created: t0.Add(time.Second)},
		{Hash: []byte{7}, Role: store.RoleIntegration, Org: store.DefaultOrg, Subject: "u2", Created: t0.Add(2 * time.Second)},
	}
	for _, tok := range tokens {
		must(t, s.PutToken(ctx(t), tok), "put")
	}
	wantErr(t, s.PutToken(ctx(t), tokens[0]), store.ErrConflict, "put existing hash")
	for _, tok := range tokens {
		got, err := s.TokenByHash(ctx(t), tok.Hash)
		must(t, err, "get")
		if diff := cmp.Diff(tok, got); diff != "" {
			t.Fatalf("token (-want +got):\n%s", diff)
		}
	}
	_, err := s.TokenByHash(ctx(t), []byte{9, 9})
	wantErr(t, err, store.ErrNotFound, "unknown hash")
	for role, want := range map[store.Role]int{store.RoleAdmin: 1, store.RoleIntegration: 2, "other": 0} {
		n, err := s.CountTokens(ctx(t), role)
		must(t, err, "count")
		if n != want {
			t.Fatalf("CountTokens(%q) = %d, want %d", role, n, want)
		}
	}
}

func testUsers(t *testing.T, s store.Store) {
	n, err := s.CountUsers(ctx(t), store.RoleAdmin)
	must(t, err, "count empty")
	if n != 0 {
		t.Fatalf("empty store has %d admins", n)
	}
	users := []store.User{
		{ID: "u1", Name: "Ada", Org: store.DefaultOrg, Role: store.RoleAdmin, PasswordHash: "$argon2id$x", Created: t0},
		{ID: "u2", Name: "Bob", Org: store.DefaultOrg, Role: store.RoleAdmin, PasswordHash: "$argon2id$y", Created: t0},
		{ID: "u3", Name: "Eve", Org: store.DefaultOrg, Role: store.RoleIntegration, PasswordHash: "$argon2id$z", Created: t0},
	}
	for _, u := range users {
		must(t, s.CreateUser(ctx(t), u), "create")
	}
	wantErr(t, s.CreateUser(ctx(t), users[0]), store.ErrConflict, "create existing")
	for role, want := range map[store.Role]int{store.RoleAdmin: 2, store.RoleIntegration: 1} {
		n, err := s.CountUsers(ctx(t), role)
		must(t, err, "count")
		if n != want {
			t.Fatalf("CountUsers(%q) = %d, want %d", role, n, want)
		}
	}
}

func vital(patient, device, code string, at time.Time, v float64) reading.Reading {
	return reading.Reading{
		Patient: patient, Device: device, Code: code, Value: v, HasValue: true,
		Unit: "/min", Time: at, Received: at.Add(time.Second), Source: "test",
	}
}

func testAppendDedup(t *testing.T, s store.Store) {
	a := vital("p1", "d1", "8867-4", t0, 60)
	b := vital("p1", "d1", "8867-4", t0.Add(time.Second), 61)
	c := vital("p1", "d1", "8867-4", t0.Add(2*time.Second), 62)
	otherDevice := vital("p1", "d2", "8867-4", t0, 70)
	otherCode := vital("p1", "d1", "59408-5", t0, 97)
	aRedelivered := a
	aRedelivered.Received = t0.Add(time.Hour)
	aRedelivered.Source = "http"

	steps := []struct {
		name  string
		batch []reading.Reading
		want  int
		total int
	}{
		{"duplicate inside one batch", []reading.Reading{a, b, a}, 2, 2},
		{"whole batch again", []reading.Reading{a, b}, 0, 2},
		{"redelivery with other metadata", []reading.Reading{aRedelivered}, 0, 2},
		{"overlapping batch", []reading.Reading{b, c}, 1, 3},
		{"same time other device and code", []reading.Reading{otherDevice, otherCode}, 2, 5},
		{"empty batch", nil, 0, 5},
	}
	for _, st := range steps {
		n, err := s.Append(ctx(t), st.batch)
		must(t, err, st.name)
		if n != st.want {
			t.Fatalf("%s: Append returned %d, want %d", st.name, n, st.want)
		}
		total, err := s.CountSamples(ctx(t), store.Query{Patient: "p1"})
		must(t, err, "count")
		if total != st.total {
			t.Fatalf("%s: %d samples stored, want %d", st.name, total, st.total)
		}
	}
	// The first delivery wins.
	got, err := s.Samples(ctx(t), store.Query{Patient: "p1", Codes: []string{"8867-4"}, From: t0, To: t0.Add(time.Nanosecond)})
	must(t, err, "samples")
	for _, smp := range got {
		if smp.Device == "d1" && (smp.Source != "test" || !smp.Received.Equal(a.Received)) {
			t.Fatalf("duplicate overwrote the first delivery: %+v", smp)
		}
	}
}

// key identifies a sample in expectations independently of its id.
type key struct {
	Code string
	Time time.Time
}

func keys(ss []store.Sample) []key {
	out := make([]key, 0, len(ss))
	for _, s := range ss {
		out = append(out, key{s.Code, s.Time})
	}
	return out
}

func testSamplesQuery(t *testing.T, s store.Store) {
	// Two codes from two devices, interleaved in time without ties, plus
	// another patient's data that must never leak in.
	var batch []reading.Reading
	for i := 0; i < 10; i++ {
		batch = append(batch,
			vital("p1", "d1", "8867-4", t0.Add(time.Duration(i)*time.Minute), float64(60+i)),
			vital("p1", "d2", "59408-5", t0.Add(time.Duration(i)*time.Minute+30*time.Second), float64(90+i)),
			vital("p2", "d3", "8867-4", t0.Add(time.Duration(i)*time.Minute+15*time.Second), 1),
		)
	}
	n, err := s.Append(ctx(t), batch)
	must(t, err, "append")
	if n != len(batch) {
		t.Fatalf("appended %d, want %d", n, len(batch))
	}

	// model answers a query from the input directly.
	model := func(q store.Query) []key {
		var out []key
		for _, r := range batch {
			if r.Patient != q.Patient {
				continue
			}
			if len(q.Codes) > 0 && !contains(q.Codes, r.Code) {
				continue
			}
			if !q.From.IsZero() && r.Time.Before(q.From) {
				continue
			}
			if !q.To.IsZero() && !r.Time.Before(q.To) {
				continue
			}
			out = append(out, key{r.Code, r.Time})
		}
		sort.Slice(out, func(i, j int) bool {
			if q.Oldest {
				return out[i].Time.Before(out[j].Time)
			}
			return out[i].Time.After(out[j].Time)
		})
		lo := min(q.Offset, len(out))
		out = out[lo:]
		if q.Limit > 0 && q.Limit < len(out) {
			out = out[:q.Limit]
		}
		return out
	}

	ns := time.Nanosecond
	tests := []struct {
		name string
		q    store.Query
	}{
		{"everything newest first", store.Query{Patient: "p1"}},
		{"everything oldest first", store.Query{Patient: "p1", Oldest: true}},
		{"one code", store.Query{Patient: "p1", Codes: []string{"59408-5"}}},
		{"two codes", store.Query{Patient: "p1", Codes: []string{"59408-5", "8867-4"}}},
		{"unknown code", store.Query{Patient: "p1", Codes: []string{"0000-0"}}},
		{"unknown patient", store.Query{Patient: "nobody"}},
		{"from is inclusive", store.Query{Patient: "p1", From: t0.Add(3 * time.Minute)}},
		{"from just after a sample", store.Query{Patient: "p1", From: t0.Add(3*time.Minute + ns)}},
		{"to is exclusive", store.Query{Patient: "p1", To: t0.Add(3 * time.Minute)}},
		{"to just after a sample", store.Query{Patient: "p1", To: t0.Add(3*time.Minute + ns)}},
		{"window", store.Query{Patient: "p1", From: t0.Add(2 * time.Minute), To: t0.Add(5 * time.Minute), Oldest: true}},
		{"empty window", store.Query{Patient: "p1", From: t0.Add(time.Minute + ns), To: t0.Add(time.Minute + 30*time.Second)}},
		{"limit", store.Query{Patient: "p1", Limit: 3}},
		{"limit and offset", store.Query{Patient: "p1", Limit: 3, Offset: 4}},
		{"offset only", store.Query{Patient: "p1", Offset: 17}},
		{"offset past end", store.Query{Patient: "p1", Offset: 100, Limit: 5}},
		{"everything combined", store.Query{Patient: "p1", Codes: []string{"8867-4"}, From: t0.Add(time.Minute), To: t0.Add(8 * time.Minute), Limit: 2, Offset: 1, Oldest: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Samples(ctx(t), tc.q)
			must(t, err, "samples")
			if diff := cmp.Diff(model(tc.q), keys(got), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("samples (-want +got):\n%s", diff)
			}
			for _, smp := range got {
				if smp.Patient != tc.q.Patient {
					t.Fatalf("sample of patient %q in query for %q", smp.Patient, tc.q.Patient)
				}
			}
			unpaged := tc.q
			unpaged.Limit, unpaged.Offset = 0, 0
			n, err := s.CountSamples(ctx(t), tc.q)
			must(t, err, "count")
			if want := len(model(unpaged)); n != want {
				t.Fatalf("CountSamples = %d, want %d (limit and offset must be ignored)", n, want)
			}
		})
	}
}

// testSamplesDevicesAndAfter checks the device filter and keyset paging:
// walking a query page by page with After visits every sample once, in
// order, including ties in time, even when samples arrive between pages.
func testSamplesDevicesAndAfter(t *testing.T, s store.Store) {
	var batch []reading.Reading
	for i := 0; i < 6; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		// Three series share every timestamp: ties must be ordered.
		batch = append(batch,
			vital("p1", "d1", "8867-4", at, float64(60+i)),
			vital("p1", "d1", "59408-5", at, float64(90+i)),
			vital("p1", "d2", "8867-4", at, float64(70+i)),
		)
	}
	_, err := s.Append(ctx(t), batch)
	must(t, err, "append")

	for _, oldest := range []bool{false, true} {
		all, err := s.Samples(ctx(t), store.Query{Patient: "p1", Oldest: oldest})
		must(t, err, "samples")
		var walked []string
		after := ""
		for page := 0; page < 20; page++ {
			got, err := s.Samples(ctx(t), store.Query{Patient: "p1", Oldest: oldest, Limit: 4, After: after})
			must(t, err, "samples after")
			if len(got) == 0 {
				break
			}
			for _, smp := range got {
				walked = append(walked, smp.ID)
			}
			after = got[len(got)-1].ID
			if page == 0 && !oldest {
				// A sample arriving after the first page, newer than all, must
				// not shift the pages still to come.
				_, err := s.Append(ctx(t), []reading.Reading{vital("p1", "d1", "9279-1", t0.Add(time.Hour), 12)})
				must(t, err, "append between pages")
			}
		}
		var want []string
		for _, smp := range all {
			want = append(want, smp.ID)
		}
		if diff := cmp.Diff(want, walked); diff != "" {
			t.Fatalf("oldest=%v: keyset walk (-want +got):\n%s", oldest, diff)
		}
	}

	got, err := s.Samples(ctx(t), store.Query{Patient: "p1", Devices: []string{"d2"}})
	must(t, err, "samples of d2")
	n, err := s.CountSamples(ctx(t), store.Query{Patient: "p1", Devices: []string{"d2"}, After: "1-0"})
	must(t, err, "count of d2")
	if len(got) != 6 || n != 6 {
		t.Fatalf("device d2: %d samples, count %d; want 6 and 6 (count ignores After)", len(got), n)
	}
	for _, smp := range got {
		if smp.Device != "d2" {
			t.Fatalf("sample of device %q in a query for d2", smp.Device)
		}
	}
	got, err = s.Samples(ctx(t), store.Query{Patient: "p1", Devices: []string{"d1", "d2"}, Codes: []string{"8867-4"}})
	must(t, err, "samples of d1,d2")
	if len(got) != 12 {
		t.Fatalf("devices d1,d2 heart rate: %d samples, want 12", len(got))
	}
	if _, err := s.Samples(ctx(t), store.Query{Patient: "p1", After: "not-an-id"}); err == nil {
		t.Fatal("Samples accepted a malformed After")
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func testSampleRoundTrip(t *testing.T, s store.Store) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	bp := reading.Reading{
		Patient: "p1", Device: "cuff", Code: "85354-9", MDC: "MDC_PRESS_BLD_NONINV",
		Components: []reading.Component{
			{Code: "8480-6", MDC: "MDC_PRESS_BLD_NONINV_SYS", Value: 120.5, Unit: "mm[Hg]"},
			{Code: "8462-4", MDC: "MDC_PRESS_BLD_NONINV_DIA", Value: 80.25, Unit: "mm[Hg]"},
		},
		Unit: "mm[Hg]", Time: time.Date(2026, 3, 4, 10, 36, 7, 987654321, zone),
		Received: time.Date(2026, 3, 4, 10, 36, 8, 1, zone), Source: "mqtt",
	}
	spo2 := vital("p1", "oxi", "59408-5", t0.Add(-time.Nanosecond), 0.1+0.2) // not exactly 0.3
	spo2.Unit, spo2.MDC = "%", "MDC_PULS_OXIM_SAT_O2"
	early := vital("p1", "oxi", "59408-5", time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC), -0.0)
	early.Received = time.Time{}
	inputs := []reading.Reading{bp, spo2, early}
	_, err := s.Append(ctx(t), inputs)
	must(t, err, "append")

	all, err := s.Samples(ctx(t), store.Query{Patient: "p1"})
	must(t, err, "samples")
	if len(all) != len(inputs) {
		t.Fatalf("got %d samples, want %d", len(all), len(inputs))
	}
	ids := map[string]bool{}
	for _, listed := range all {
		if listed.ID == "" || ids[listed.ID] {
			t.Fatalf("id %q empty or repeated", listed.ID)
		}
		ids[listed.ID] = true
		got, err := s.Sample(ctx(t), listed.ID)
		must(t, err, "sample by id")
		if diff := cmp.Diff(listed, got); diff != "" {
			t.Fatalf("Sample(id) differs from the listed sample (-listed +got):\n%s", diff)
		}
		if got.Time.Location() != time.UTC {
			t.Fatalf("time %v is not in UTC", got.Time)
		}
		var want reading.Reading
		for _, in := range inputs {
			if in.Time.Equal(got.Time) {
				want = in
			}
		}
		// cmp compares times with Equal, so zones may differ but instants,
		// to the nanosecond, must not.
		if diff := cmp.Diff(want, got.Reading); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	}
}

func testSampleBadIDs(t *testing.T, s store.Store) {
	_, err := s.Append(ctx(t), []reading.Reading{vital("p1", "d1", "8867-4", t0, 60)})
	must(t, err, "append")
	ss, err := s.Samples(ctx(t), store.Query{Patient: "p1"})
	must(t, err, "samples")
	realID := ss[0].ID
	bad := []string{
		"", "-", "--", "x", "1-", "-1", realID + "0", realID + "-1", realID + " ", " " + realID,
		strings.ToUpper(realID) + "Z", "0-0", "../../etc/passwd", "1-2-3", "ñ-1",
		"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
		strings.Repeat("9", 1000), "'; DROP TABLE samples; --", "\x00",
	}
	for _, id := range bad {
		if id == realID {
			continue
		}
		_, err := s.Sample(ctx(t), id)
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Sample(%q) error = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := s.Sample(ctx(t), realID); err != nil {
		t.Fatalf("realID id stopped working: %v", err)
	}
}

func testLatest(t *testing.T, s store.Store) {
	batch := []reading.Reading{
		vital("p1", "d1", "8867-4", t0, 60),
		vital("p1", "d1", "8867-4", t0.Add(2*time.Minute), 62),
		vital("p1", "d2", "8867-4", t0.Add(3*time.Minute), 75), // other device, newer: wins
		vital("p1", "d2", "8867-4", t0.Add(time.Minute), 70),
		vital("p1", "d1", "59408-5", t0.Add(time.Minute), 97),
		vital("p1", "d1", "59408-5", t0, 96),
		vital("p1", "d3", "8310-5", t0, 37),
		vital("p2", "d9", "8867-4", t0.Add(time.Hour), 50),
	}
	_, err := s.Append(ctx(t), batch)
	must(t, err, "append")
	got, err := s.Latest(ctx(t), "p1")
	must(t, err, "latest")
	type head struct {
		Code, Device string
		Value        float64
	}
	var heads []head
	for _, smp := range got {
		heads = append(heads, head{smp.Code, smp.Device, smp.Value})
		if _, err := s.Sample(ctx(t), smp.ID); err != nil {
			t.Fatalf("latest sample id %q does not resolve: %v", smp.ID, err)
		}
	}
	want := []head{{"59408-5", "d1", 97}, {"8310-5", "d3", 37}, {"8867-4", "d2", 75}}
	if diff := cmp.Diff(want, heads); diff != "" {
		t.Fatalf("latest (-want +got):\n%s", diff)
	}
	none, err := s.Latest(ctx(t), "nobody")
	must(t, err, "latest of unknown patient")
	if len(none) != 0 {
		t.Fatalf("latest of unknown patient = %v", none)
	}
}

func testDownsample(t *testing.T, s store.Store) {
	from, to := t0, t0.Add(5*time.Minute)
	at := func(d time.Duration, v float64) reading.Reading { return vital("p1", "d1", "8867-4", from.Add(d), v) }
	batch := []reading.Reading{
		at(-time.Nanosecond, 1000), // before the window
		at(0, 1), at(10*time.Second, 3), at(time.Minute-time.Nanosecond, 5),
		at(time.Minute, 10),
		// minute 2 is empty
		at(3*time.Minute, 7), at(3*time.Minute+time.Second, -1),
		at(5*time.Minute, 2000),                                  // to is exclusive
		vital("p1", "d2", "8867-4", from.Add(4*time.Minute), 20), // a second device counts too
		vital("p1", "d1", "59408-5", from, 99),                   // other code
		vital("p2", "d1", "8867-4", from, 99),                    // other patient
	}
	panel := func(d time.Duration, sys, dia float64) reading.Reading {
		return reading.Reading{Patient: "p1", Device: "cuff", Code: "85354-9", Unit: "mm[Hg]", Time: from.Add(d), Source: "test",
			Components: []reading.Component{{Code: "8480-6", Value: sys, Unit: "mm[Hg]"}, {Code: "8462-4", Value: dia, Unit: "mm[Hg]"}}}
	}
	batch = append(batch, panel(0, 120, 80), panel(30*time.Second, 130, 85))
	_, err := s.Append(ctx(t), batch)
	must(t, err, "append")

	tests := []struct {
		name string
		code string
		step time.Duration
		want []store.Bucket
	}{
		{"one minute", "8867-4", time.Minute, []store.Bucket{
			{Start: from, Count: 3, Min: 1, Max: 5, Mean: 3},
			{Start: from.Add(time.Minute), Count: 1, Min: 10, Max: 10, Mean: 10},
			{Start: from.Add(3 * time.Minute), Count: 2, Min: -1, Max: 7, Mean: 3},
			{Start: from.Add(4 * time.Minute), Count: 1, Min: 20, Max: 20, Mean: 20},
		}},
		{"whole window", "8867-4", 5 * time.Minute, []store.Bucket{
			{Start: from, Count: 7, Min: -1, Max: 20, Mean: 45.0 / 7},
		}},
		{"step wider than window", "8867-4", time.Hour, []store.Bucket{
			{Start: from, Count: 7, Min: -1, Max: 20, Mean: 45.0 / 7},
		}},
		{"panel uses first component", "85354-9", time.Minute, []store.Bucket{
			{Start: from, Count: 2, Min: 120, Max: 130, Mean: 125},
		}},
		{"unknown code", "0000-0", time.Minute, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Downsample(ctx(t), "p1", tc.code, from, to, tc.step)
			must(t, err, "downsample")
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b float64) bool { return a == b || abs(a-b) < 1e-9 })); diff != "" {
				t.Fatalf("buckets (-want +got):\n%s", diff)
			}
		})
	}
	for _, step := range []time.Duration{0, -time.Minute} {
		if _, err := s.Downsample(ctx(t), "p1", "8867-4", from, to, step); err == nil {
			t.Errorf("Downsample with step %v: want an error", step)
		}
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func testDeadLetters(t *testing.T, s store.Store) {
	var added []store.DeadLetter
	for i := 0; i < 5; i++ {
		d := store.DeadLetter{
			Received: t0.Add(time.Duration(i) * time.Second), Source: "mqtt", Device: fmt.Sprintf("d%d", i),
			ContentType: "application/cbor", Payload: []byte{0xa1, byte(i), 0x00, 0xff}, Reason: "unknown code",
		}
		must(t, s.AddDeadLetter(ctx(t), &d), "add")
		if d.ID == 0 || (i > 0 && d.ID <= added[i-1].ID) {
			t.Fatalf("dead letter id %d not increasing", d.ID)
		}
		added = append(added, d)
	}
	ids := func(ds []store.DeadLetter) []int64 {
		var out []int64
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	id := func(i int) int64 { return added[i].ID }
	pages := []struct {
		name     string
		limit    int
		beforeID int64
		want     []int64
	}{
		{"first page", 2, 0, []int64{id(4), id(3)}},
		{"next page", 2, id(3), []int64{id(2), id(1)}},
		{"last page", 2, id(1), []int64{id(0)}},
		{"past the end", 2, id(0), nil},
		{"big limit", 100, 0, []int64{id(4), id(3), id(2), id(1), id(0)}},
	}
	for _, p := range pages {
		got, err := s.DeadLetters(ctx(t), p.limit, p.beforeID)
		must(t, err, p.name)
		if diff := cmp.Diff(p.want, ids(got)); diff != "" {
			t.Fatalf("%s (-want +got):\n%s", p.name, diff)
		}
	}
	got, err := s.DeadLetter(ctx(t), id(2))
	must(t, err, "get")
	if diff := cmp.Diff(added[2], got); diff != "" {
		t.Fatalf("dead letter (-want +got):\n%s", diff)
	}
	_, err = s.DeadLetter(ctx(t), id(4)+100)
	wantErr(t, err, store.ErrNotFound, "get missing")

	replayed := t0.Add(time.Hour + time.Nanosecond)
	must(t, s.MarkReplayed(ctx(t), id(2), replayed), "mark replayed")
	got, err = s.DeadLetter(ctx(t), id(2))
	must(t, err, "get after replay")
	if !got.Replayed.Equal(replayed) {
		t.Fatalf("replayed = %v, want %v", got.Replayed, replayed)
	}
	other, err := s.DeadLetter(ctx(t), id(1))
	must(t, err, "get other")
	if !other.Replayed.IsZero() {
		t.Fatalf("marking one dead letter replayed touched another")
	}
	wantErr(t, s.MarkReplayed(ctx(t), id(4)+100, replayed), store.ErrNotFound, "mark missing")
}

func testConcurrentAppend(t *testing.T, s store.Store) {
	const workers, batches, perBatch = 6, 10, 40
	// Workers overlap in pairs (same series and times), so the store has to
	// deduplicate across concurrent transactions; series are created
	// concurrently too.
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	errs := make(chan error, workers+2)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			dev := fmt.Sprintf("d%d", w/2)
			for b := 0; b < batches; b++ {
				rs := make([]reading.Reading, 0, perBatch)
				for i := 0; i < perBatch; i++ {
					at := t0.Add(time.Duration(b*perBatch+i) * time.Second)
					rs = append(rs, vital(fmt.Sprintf("p%d", i%3), dev, "8867-4", at, float64(i)))
				}
				n, err := s.Append(ctx(t), rs)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}(w)
	}
	// Readers run alongside the writers and must never see an error.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := 0; r < 2; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Samples(ctx(t), store.Query{Patient: "p1", Limit: 10}); err != nil {
					errs <- err
					return
				}
				if _, err := s.Latest(ctx(t), "p2"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append: %v", err)
	}
	want := (workers / 2) * batches * perBatch
	if total != want {
		t.Fatalf("appends reported %d new readings, want %d", total, want)
	}
	stored := 0
	for p := 0; p < 3; p++ {
		n, err := s.CountSamples(ctx(t), store.Query{Patient: fmt.Sprintf("p%d", p)})
		must(t, err, "count")
		stored += n
	}
	if stored != want {
		t.Fatalf("%d samples stored, want %d", stored, want)
	}
}

func testCancelledContext(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	if _, err := s.Append(c, []reading.Reading{vital("p1", "d1", "8867-4", t0, 60)}); err == nil {
		t.Fatal("Append with a cancelled context succeeded")
	}
	if err := s.CreatePatient(c, &store.Patient{ID: "p1"}); err == nil {
		t.Fatal("CreatePatient with a cancelled context succeeded")
	}
	n, err := s.CountSamples(ctx(t), store.Query{Patient: "p1"})
	must(t, err, "count")
	if n != 0 {
		t.Fatalf("a cancelled Append stored %d samples", n)
	}
	_, err = s.Patient(ctx(t), "p1")
	wantErr(t, err, store.ErrNotFound, "patient after cancelled create")
	// The store stays usable.
	if n, err := s.Append(ctx(t), []reading.Reading{vital("p1", "d1", "8867-4", t0, 60)}); err != nil || n != 1 {
		t.Fatalf("Append after cancellation = %d, %v", n, err)
	}
}
