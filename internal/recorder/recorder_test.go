package recorder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/commit"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/stream"
)

// memStore is an idempotent in-memory Appender that can be made to fail.
type memStore struct {
	mu       sync.Mutex
	keys     map[string]bool
	calls    int
	failNext int
}

func (s *memStore) Append(_ context.Context, rs []reading.Reading) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failNext > 0 {
		s.failNext--
		return 0, errors.New("database is locked")
	}
	if s.keys == nil {
		s.keys = map[string]bool{}
	}
	n := 0
	for i := range rs {
		k := rs[i].Patient + "/" + rs[i].Key()
		if !s.keys[k] {
			s.keys[k] = true
			n++
		}
	}
	return n, nil
}

func (s *memStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

func rd(device string, n int, received time.Time) []reading.Reading {
	rs := make([]reading.Reading, n)
	for i := range rs {
		rs[i] = reading.Reading{Patient: "p-" + device, Device: device, Code: "8867-4", HasValue: true, Value: 70, Unit: "/min",
			Time: time.Unix(int64(1_700_000_000+i), 0).UTC(), Received: received, Source: "test"}
	}
	return rs
}

// oneShot is a Consumer that hands handle one fixed set of messages and
// reports the handler's verdict.
type oneShot struct {
	msgs   [][]byte
	result chan error
}

func (o *oneShot) Consume(ctx context.Context, _ string, _ int, handle func(context.Context, [][]byte) error) error {
	o.result <- handle(ctx, o.msgs)
	<-ctx.Done()
	return nil
}

func TestHandle(t *testing.T) {
	received := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now := received.Add(30 * time.Millisecond)
	good1 := reading.EncodeBatch(rd("a", 3, received))
	good2 := reading.EncodeBatch(rd("b", 2, received))
	poison := []byte{9, 9, 9}
	tests := []struct {
		name       string
		msgs       [][]byte
		failStore  int
		wantErr    bool
		wantStored int
		wantPoison int
		wantCalls  int
	}{
		{"two messages one append", [][]byte{good1, good2}, 0, false, 5, 0, 1},
		{"poison skipped, rest stored", [][]byte{good1, poison, good2}, 0, false, 5, 1, 1},
		{"only poison is acked", [][]byte{poison}, 0, false, 0, 1, 0},
		{"store error naks", [][]byte{good1}, 1, true, 0, 0, 1},
		{"duplicates not counted", [][]byte{good1, good1}, 0, false, 3, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &memStore{failNext: tt.failStore}
			reg := prometheus.NewRegistry()
			m, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			var poisoned [][]byte
			var stored []reading.Reading
			cons := &oneShot{msgs: tt.msgs, result: make(chan error, 1)}
			r := &Recorder{Stream: cons, Store: st, Metrics: m, Now: func() time.Time { return now },
				OnPoison: func(data []byte, err error) {
					if err == nil {
						t.Error("OnPoison without an error")
					}
					poisoned = append(poisoned, data)
				},
				OnStored: func(rs []reading.Reading) { stored = append(stored, rs...) },
			}
			if err := r.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			herr := <-cons.result
			r.Close()
			if (herr != nil) != tt.wantErr {
				t.Fatalf("handler error = %v, want error %v", herr, tt.wantErr)
			}
			if got := st.count(); got != tt.wantStored {
				t.Errorf("stored %d, want %d", got, tt.wantStored)
			}
			if st.calls != tt.wantCalls {
				t.Errorf("%d Append calls, want %d", st.calls, tt.wantCalls)
			}
			if len(poisoned) != tt.wantPoison {
				t.Errorf("%d poison reports, want %d", len(poisoned), tt.wantPoison)
			}
			if got := metricValue(t, reg, "tend_recorder_stored_readings_total"); got != float64(tt.wantStored) {
				t.Errorf("stored counter %v, want %d", got, tt.wantStored)
			}
			if tt.wantErr && len(stored) != 0 {
				t.Error("OnStored called for a failed append")
			}
			if !tt.wantErr && tt.wantStored > 0 {
				// Every appended reading is observed: 30 ms lands in the 0.05 bucket.
				if got := metricValue(t, reg, "tend_publish_to_stored_seconds"); got != float64(len(stored)) {
					t.Errorf("latency samples %v, want %d", got, len(stored))
				}
				if le := bucketCount(t, reg, "tend_publish_to_stored_seconds", 0.02); le != 0 {
					t.Errorf("%d samples at ≤20 ms, want 0 (latency is 30 ms)", le)
				}
				if le := bucketCount(t, reg, "tend_publish_to_stored_seconds", 0.05); le != uint64(len(stored)) {
					t.Errorf("%d samples at ≤50 ms, want %d", le, len(stored))
				}
			}
		})
	}
}

// TestEndToEnd runs committer → embedded stream → recorder → store with a
// store that fails at first, and checks nothing is lost or doubled.
func TestEndToEnd(t *testing.T) {
	s := stream.New(stream.Config{Dir: t.TempDir(), Durables: []string{DefaultDurable}})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &commit.Committer{Pub: s, Subject: "tend.readings.all"}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const devices, per = 20, 25
	var wg sync.WaitGroup
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Commit(context.Background(), rd(fmt.Sprint(d), per, time.Now())); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	st := &memStore{failNext: 2}
	var mu sync.Mutex
	storedByOnStored := 0
	r := &Recorder{Stream: s, Store: st, OnStored: func(rs []reading.Reading) {
		mu.Lock()
		storedByOnStored += len(rs)
		mu.Unlock()
	}}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	deadline := time.Now().Add(20 * time.Second)
	for st.count() < devices*per && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := st.count(); got != devices*per {
		t.Fatalf("store holds %d readings, want %d", got, devices*per)
	}
	r.Close()
	mu.Lock()
	defer mu.Unlock()
	if storedByOnStored < devices*per {
		t.Fatalf("OnStored saw %d readings, want at least %d", storedByOnStored, devices*per)
	}
}

func TestStartRequiresDependencies(t *testing.T) {
	if err := (&Recorder{}).Start(context.Background()); err == nil {
		t.Fatal("Start without Stream and Store succeeded")
	}
	if err := (&Recorder{}).Close(); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func bucketCount(t *testing.T, reg *prometheus.Registry, name string, le float64) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			if b.GetUpperBound() == le {
				return b.GetCumulativeCount()
			}
		}
	}
	t.Fatalf("no bucket le=%v in %s", le, name)
	return 0
}
