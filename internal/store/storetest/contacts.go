package storetest

import (
	"testing"

	"github.com/tendhealth/tend/internal/store"
)

// contactCases test ContactStore and the audit trail's purpose of use.
var contactCases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"UserContacts", testUserContacts},
	{"AuditPurpose", testAuditPurpose},
}

func testUserContacts(t *testing.T, s store.Store) {
	if c, err := s.UserContact(ctx(t), "po"); err != nil || c != "" {
		t.Fatalf("contact of a user without one: %q %v", c, err)
	}
	for _, want := range []string{"email:po@example.org", "webhook:privacy-desk"} {
		if err := s.SetUserContact(ctx(t), "po", want); err != nil {
			t.Fatal(err)
		}
		if c, err := s.UserContact(ctx(t), "po"); err != nil || c != want {
			t.Fatalf("contact %q %v, want %q", c, err, want)
		}
	}
	if c, _ := s.UserContact(ctx(t), "someone-else"); c != "" {
		t.Errorf("another user got contact %q", c)
	}
	if err := s.SetUserContact(ctx(t), "po", ""); err != nil {
		t.Fatal(err)
	}
	if c, err := s.UserContact(ctx(t), "po"); err != nil || c != "" {
		t.Errorf("removed contact: %q %v", c, err)
	}
}

// testAuditPurpose: the purpose of use is kept verbatim, like every field
// of a record (the chain's hashes are recomputed from what is stored).
func testAuditPurpose(t *testing.T, s store.Store) {
	for i, purpose := range []string{"BTG", ""} {
		_, err := s.AppendAudit(ctx(t), func(h store.AuditHead) (store.AuditEntry, error) {
			prev := h.Hash
			if h.Seq == 0 {
				prev = make([]byte, 32)
			}
			return store.AuditEntry{Seq: h.Seq + 1, Time: t0, Action: "read", Subject: "nurse1", Patients: []string{"p1"},
				Purpose: purpose, PrevHash: prev, Hash: []byte{byte(i + 1)}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.AuditEntries(ctx(t), store.AuditQuery{Patient: "p1"})
	if err != nil || len(es) != 2 {
		t.Fatalf("entries %+v %v", es, err)
	}
	if es[0].Purpose != "BTG" || es[1].Purpose != "" {
		t.Errorf("purposes %q %q, want BTG and none", es[0].Purpose, es[1].Purpose)
	}
}
