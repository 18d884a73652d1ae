package commit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/commit"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/stream"
)

// BenchmarkCommitEmbedded measures group commit against the embedded,
// fsync-always JetStream: 50 goroutines each committing 10 readings at a
// time, as 50 busy device connections would.
func BenchmarkCommitEmbedded(b *testing.B) {
	s := stream.New(stream.Config{Dir: b.TempDir(), Durables: []string{"bench"}})
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := &commit.Committer{Pub: s, Subject: "tend.readings.bench"}
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	const workers, per = 50, 10
	batches := make([][]reading.Reading, workers)
	now := time.Now().UTC()
	for w := range batches {
		for i := range per {
			batches[w] = append(batches[w], reading.Reading{
				Patient: fmt.Sprintf("patient-%d", w), Device: fmt.Sprintf("device-%d", w),
				Code: "59408-5", MDC: "150456", HasValue: true, Value: 97, Unit: "%",
				Time: now.Add(time.Duration(i) * time.Second), Received: now, Source: "bench",
			})
		}
	}
	b.ResetTimer()
	// b.N commits in total, spread over the workers.
	var wg sync.WaitGroup
	work := make(chan struct{}, workers)
	go func() {
		for range b.N {
			work <- struct{}{}
		}
		close(work)
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if err := c.Commit(context.Background(), batches[w]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "readings/s")
}
