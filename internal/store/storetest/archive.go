package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/store"
)

// archiveCases are the conformance cases of store.ArchiveStore; Run includes them.
var archiveCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ArchivePutOrg", testArchivePutOrg},
	{"ArchiveJTIs", testArchiveJTIs},
	{"ArchiveSignInFailures", testArchiveSignInFailures},
}

func testArchivePutOrg(t *testing.T, s store.Store) {
	def := store.Organisation{ID: store.DefaultOrg, Name: "Riverside Clinic", PrivacyOfficer: "dpo", Created: t0}
	must(t, s.PutOrg(ctx(t), def), "put the default organisation over the one every store has")
	north := store.Organisation{ID: "north", Name: "North", Created: t0.Add(time.Second)}
	must(t, s.PutOrg(ctx(t), north), "put a new organisation")
	got, err := s.Orgs(ctx(t))
	must(t, err, "orgs")
	if diff := cmp.Diff([]store.Organisation{def, north}, got); diff != "" {
		t.Fatalf("organisations after PutOrg (-want +got):\n%s", diff)
	}
	wantErr(t, s.CreateOrg(ctx(t), north), store.ErrConflict, "create an organisation PutOrg made")
}

func testArchiveJTIs(t *testing.T, s store.Store) {
	must(t, s.UseJTI(ctx(t), "c2", "j1", t0.Add(time.Minute), t0), "use")
	must(t, s.UseJTI(ctx(t), "c1", "j2", t0.Add(2*time.Minute), t0), "use")
	must(t, s.UseJTI(ctx(t), "c1", "j1", t0.Add(30*time.Second), t0), "use")
	got, err := s.JTIs(ctx(t), t0.Add(45*time.Second))
	must(t, err, "jtis")
	want := []store.JTI{{Client: "c1", JTI: "j2", Expires: t0.Add(2 * time.Minute)}, {Client: "c2", JTI: "j1", Expires: t0.Add(time.Minute)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("unexpired jtis (-want +got):\n%s", diff)
	}
}

func testArchiveSignInFailures(t *testing.T, s store.Store) {
	got, err := s.AllSignInFailures(ctx(t))
	must(t, err, "list on a new store")
	if len(got) != 0 {
		t.Fatalf("failures on a new store: %v", got)
	}
	must(t, s.PutSignInFailures(ctx(t), "user:bob", store.SignInFailures{Count: 7, Last: t0}), "put")
	must(t, s.PutSignInFailures(ctx(t), "addr:192.0.2.1", store.SignInFailures{Count: 2, Last: t0.Add(time.Second)}), "put")
	must(t, s.PutSignInFailures(ctx(t), "user:bob", store.SignInFailures{Count: 9, Last: t0.Add(time.Minute)}), "put again replaces")
	must(t, s.PutSignInFailures(ctx(t), "user:gone", store.SignInFailures{Count: 1, Last: t0}), "put")
	must(t, s.PutSignInFailures(ctx(t), "user:gone", store.SignInFailures{}), "put zero removes")
	got, err = s.AllSignInFailures(ctx(t))
	must(t, err, "list")
	want := []store.KeyedSignInFailures{
		{Key: "addr:192.0.2.1", SignInFailures: store.SignInFailures{Count: 2, Last: t0.Add(time.Second)}},
		{Key: "user:bob", SignInFailures: store.SignInFailures{Count: 9, Last: t0.Add(time.Minute)}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("failure counters (-want +got):\n%s", diff)
	}
	one, err := s.SignInFailures(ctx(t), "user:bob")
	must(t, err, "one counter")
	if one.Count != 9 || !one.Last.Equal(t0.Add(time.Minute)) {
		t.Fatalf("counter after put: %+v", one)
	}
	// The counter keeps counting from what was put.
	n, err := s.RecordSignInFailure(ctx(t), "user:bob", t0.Add(2*time.Minute))
	must(t, err, "record")
	if n.Count != 10 {
		t.Fatalf("count after one more failure: %d, want 10", n.Count)
	}
}
