package fhir

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// A record made under a break-glass grant says so as purposeOfEvent
// (HL7 v3 ActReason BTG); an ordinary one carries no purpose.
func TestAuditEventPurposeOfEvent(t *testing.T) {
	e := store.AuditEntry{Seq: 3, Time: time.Date(2026, 7, 1, 3, 0, 0, 0, time.UTC), Action: "read", Subtype: "read", Status: 200,
		Subject: "east-nurse", Role: "nurse", Org: "east", Patients: []string{"p2"}, Entity: "Patient/p2", Purpose: "BTG"}
	b, err := json.Marshal(AuditEventOf(e))
	if err != nil {
		t.Fatal(err)
	}
	want := `"purposeOfEvent":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"BTG","display":"break the glass"}]}]`
	if !strings.Contains(string(b), want) {
		t.Errorf("AuditEvent %s\nlacks %s", b, want)
	}
	e.Purpose = ""
	if b, _ := json.Marshal(AuditEventOf(e)); strings.Contains(string(b), "purposeOfEvent") {
		t.Errorf("an ordinary record has a purpose: %s", b)
	}
}
