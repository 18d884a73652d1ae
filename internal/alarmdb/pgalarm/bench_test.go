package pgalarm

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/rules"
)

// BenchmarkEvaluatorBatch measures the write an evaluator makes per batch,
// as internal/alarmdb's benchmark of the same name does: one new alarm, its
// "raised" change, two deliveries and the checkpoint (with a 64 KiB
// snapshot every 10th batch), committed with the server's
// synchronous_commit. It reports the 99th percentile besides the mean.
func BenchmarkEvaluatorBatch(b *testing.B) {
	db := openTest(b)
	ctx := b.Context()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	snapshot := make([]byte, 64<<10)
	body := []byte(`{"event":"alarm.raised","alarm":{"id":"x","patient":"p","priority":"high","message":"SpO2 84 % < 85 %"}}`)
	durations := make([]time.Duration, 0, b.N)

	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		at := base.Add(time.Duration(i) * time.Second)
		id := fmt.Sprintf("alarm-%08d", i)
		start := time.Now()
		err := db.Update(ctx, func(tx alarm.Tx) error {
			a := alarm.Alarm{
				ID: id, Patient: fmt.Sprintf("p%04d", i%1000), State: alarm.Active, Priority: rules.PriorityHigh,
				Kind: rules.CategoryClinical, Rule: "spo2-low", RuleKind: rules.KindThreshold, Subject: id,
				Name: "SpO2 low", Raised: at, Updated: at, Condition: true, Latching: true, Device: "d1",
				Code: "59408-5", Value: 84, Unit: "%", Message: "SpO2 84 % < 85 %", Detail: []byte(`{"threshold":85}`),
				NextEscalation: at.Add(2 * time.Minute),
			}
			if _, _, err := tx.OpenAlarm(a.Patient, a.Rule, a.Subject); err != nil {
				return err
			}
			if err := tx.PutAlarm(&a); err != nil {
				return err
			}
			if err := tx.AddChange(alarm.Change{Alarm: id, At: at, Action: "raised", By: "system"}); err != nil {
				return err
			}
			for _, r := range []string{"webhook:w1", "email:ward@example.org"} {
				if err := tx.Enqueue(alarm.Delivery{ID: id + "/1/" + r, Alarm: id, Event: "alarm.raised", Recipient: r, Body: body, Created: at, Due: at}); err != nil {
					return err
				}
			}
			cp := alarm.Checkpoint{Name: "eval-0", Applied: uint64(i + 1)}
			if i%10 == 0 {
				cp.Snapshot, cp.SnapSeq = snapshot, uint64(i+1)
			}
			return tx.SetCheckpoint(cp)
		})
		durations = append(durations, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(durations) > 0 {
		slices.Sort(durations)
		b.ReportMetric(float64(durations[len(durations)*99/100].Nanoseconds()), "p99-ns")
	}
}
