package audit_test

import (
	"testing"

	"github.com/tendhealth/tend/internal/audit"
)

// BenchmarkAppend is the cost one audited request adds: one durable
// transaction (SQLite synchronous=FULL; PostgreSQL with the advisory lock).
func BenchmarkAppend(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s, _ := be.open(b)
			log := audit.New(s, nil)
			rec := audit.Record{Action: "search", Subtype: "search-type", Status: 200, Subject: "nurse1", Role: "nurse", Org: "default",
				Source: "192.0.2.1", Patients: []string{"p1"}, Entity: "Observation", Query: "patient=p1&code=http://loinc.org|8867-4"}
			b.ResetTimer()
			for b.Loop() {
				if _, err := log.Append(b.Context(), rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
