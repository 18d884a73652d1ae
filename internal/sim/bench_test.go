package sim

import (
	"context"
	"testing"
	"time"
)

// discard accepts everything at once.
type discard struct{}

func (d *discard) Send(ctx context.Context, dev *Device, p []byte) error { return nil }

// BenchmarkFleet10k measures how fast one process generates the readings
// of 10,000 patients (half ward with 1 Hz monitors, half home), without
// the network: one op is 2 virtual minutes.
func BenchmarkFleet10k(b *testing.B) {
	ps := registered(5000, 5000, 9)
	var readings int64
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		rep, err := Run(context.Background(), Config{Patients: ps, Seed: uint64(i), Start: t0, Duration: 2 * time.Minute,
			Sender: &discard{}, Scenarios: []ScenarioSpec{{Name: Hypoxia, Rate: 1}, {Name: Sepsis, Rate: 0.5}}})
		if err != nil {
			b.Fatal(err)
		}
		readings += rep.Readings
	}
	b.ReportMetric(float64(readings)/time.Since(start).Seconds(), "readings/s")
	b.ReportMetric(float64(readings)/float64(b.N)/120, "virtual-readings/s")
}
