package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/store"
)

// noteCases: patient notes and organisation settings (notes.go).
var noteCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"PatientNotes", testPatientNotes},
	{"UpdateOrg", testUpdateOrg},
}

func testPatientNotes(t *testing.T, s store.Store) {
	notes := []store.Note{
		{ID: "n1", Org: "north", Patient: "p1", Author: "nina", Role: store.RoleNurse, Text: "Slept well.", Created: t0},
		{ID: "n2", Org: "north", Patient: "p1", Author: "carl", Role: store.RoleCaregiver, Text: "Ate <little>; \"tired\".\nSecond line.", Created: t0.Add(time.Hour)},
		{ID: "n3", Org: "north", Patient: "p2", Author: "nina", Role: store.RoleNurse, Text: "Other patient.", Created: t0.Add(2 * time.Hour)},
		{ID: "n0", Org: "north", Patient: "p1", Author: "doc", Role: store.RoleClinician, Text: "Same time as n1.", Created: t0},
	}
	for _, n := range notes {
		must(t, s.AddNote(ctx(t), n), "add note")
	}
	if err := s.AddNote(ctx(t), store.Note{ID: "n1", Org: "north", Patient: "p1", Author: "x", Text: "again", Created: t0}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second note n1: %v, want ErrConflict", err)
	}
	if err := s.AddNote(ctx(t), store.Note{ID: "n9", Patient: "p1", Text: "no author"}); err == nil {
		t.Error("a note without author was stored")
	}
	for _, tc := range []struct {
		name    string
		patient string
		limit   int
		want    []string
	}{
		{"newest first, ties by id", "p1", 0, []string{"n2", "n1", "n0"}},
		{"limited", "p1", 2, []string{"n2", "n1"}},
		{"another patient", "p2", 0, []string{"n3"}},
		{"none", "p9", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Notes(ctx(t), tc.patient, tc.limit)
			must(t, err, "notes")
			var ids []string
			for _, n := range got {
				ids = append(ids, n.ID)
			}
			if diff := cmp.Diff(tc.want, ids); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
		})
	}
	got, err := s.Notes(ctx(t), "p1", 1)
	must(t, err, "notes")
	if diff := cmp.Diff([]store.Note{notes[1]}, got); diff != "" {
		t.Errorf("the note as stored (-want +got):\n%s", diff)
	}
}

func testUpdateOrg(t *testing.T, s store.Store) {
	must(t, s.CreateOrg(ctx(t), store.Organisation{ID: "north", Name: "North", Created: t0}), "create org")
	must(t, s.UpdateOrg(ctx(t), store.Organisation{ID: "north", Name: "North Hospital", PrivacyOfficer: "pat", Created: t0.Add(time.Hour)}), "update org")
	o, err := s.Org(ctx(t), "north")
	must(t, err, "org")
	if o.Name != "North Hospital" || o.PrivacyOfficer != "pat" || !o.Created.Equal(t0) {
		t.Errorf("after update: %+v", o)
	}
	if err := s.UpdateOrg(ctx(t), store.Organisation{ID: "nowhere", Name: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("updating a missing organisation: %v, want ErrNotFound", err)
	}
}
