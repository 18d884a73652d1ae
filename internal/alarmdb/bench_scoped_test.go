package alarmdb

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/rules"
)

// BenchmarkAlarmsScoped lists a page of 100 newest alarms restricted to
// one organisation's 2,000 patients and to a care team of 20, in a table
// of 200,000 alarms of two organisations (the other one's all newer).
func BenchmarkAlarmsScoped(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "alarms.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := b.Context()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const total, perOrg = 200_000, 2000
	org := func(name string) []string {
		var ps []string
		for i := range perOrg {
			ps = append(ps, fmt.Sprintf("%s-%04d", name, i))
		}
		return ps
	}
	quiet, busy := org("quiet"), org("busy")
	for start := 0; start < total; start += 10_000 {
		err := db.Update(ctx, func(tx alarm.Tx) error {
			for i := start; i < start+10_000; i++ {
				p := busy[i%perOrg]
				if i < total/10 {
					p = quiet[i%perOrg]
				}
				at := base.Add(time.Duration(i) * time.Second)
				a := alarm.Alarm{ID: fmt.Sprintf("a%07d", i), Patient: p, State: alarm.Resolved, Priority: rules.PriorityHigh,
					Kind: rules.CategoryClinical, Rule: "spo2-low", RuleKind: rules.KindThreshold, Subject: fmt.Sprint(i),
					Name: "SpO2 low", Raised: at, Updated: at, Message: "SpO2 84 % < 85 %"}
				if err := tx.PutAlarm(&a); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		patients []string
		want     int
	}{
		{"org-2000-patients", quiet, 100},
		{"team-20-patients", quiet[:20], 100},
		{"busy-org", busy, 100},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				as, err := db.Alarms(ctx, alarm.Filter{Restrict: true, Patients: tc.patients, Limit: 100})
				if err != nil {
					b.Fatal(err)
				}
				if len(as) != tc.want {
					b.Fatalf("%d alarms, want %d", len(as), tc.want)
				}
			}
		})
	}
}
