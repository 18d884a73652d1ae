package commit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/reading"
)

// fakePub decodes and records every published batch. When gate is non-nil
// each publish waits for a value on it first; fail decides per batch.
type fakePub struct {
	mu      sync.Mutex
	batches [][]reading.Reading
	ids     map[string]bool
	gate    chan struct{}
	entered chan struct{}
	delay   time.Duration
	fail    func(rs []reading.Reading) error
	active  atomic.Int32
	peak    atomic.Int32
}

func (p *fakePub) Publish(ctx context.Context, subject string, data []byte, msgID string) error {
	n := p.active.Add(1)
	defer p.active.Add(-1)
	for {
		old := p.peak.Load()
		if n <= old || p.peak.CompareAndSwap(old, n) {
			break
		}
	}
	rs, err := reading.DecodeBatch(data)
	if err != nil {
		return fmt.Errorf("fake: undecodable message: %w", err)
	}
	if p.entered != nil {
		p.entered <- struct{}{}
	}
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if p.delay > 0 {
		time.Sleep(p.delay)
	}
	if p.fail != nil {
		if err := p.fail(rs); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[string]bool{}
	}
	if p.ids[msgID] {
		return fmt.Errorf("fake: message id %q reused", msgID)
	}
	p.ids[msgID] = true
	p.batches = append(p.batches, rs)
	return nil
}

func (p *fakePub) published() (batches int, devices map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	devices = map[string]int{}
	for _, b := range p.batches {
		for _, r := range b {
			devices[r.Device]++
		}
	}
	return len(p.batches), devices
}

func rd(device string, n int) []reading.Reading {
	rs := make([]reading.Reading, n)
	for i := range rs {
		rs[i] = reading.Reading{Patient: "p", Device: device, Code: "8867-4", HasValue: true, Value: float64(60 + i), Unit: "/min",
			Time: time.Unix(int64(i), 0).UTC(), Received: time.Unix(int64(i), 0).UTC(), Source: "test"}
	}
	return rs
}

func start(t *testing.T, c *Committer) {
	t.Helper()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
}

// queued waits until n requests sit in the queue.
func queued(t *testing.T, c *Committer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		got := len(c.queue)
		c.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("queue never reached %d requests", n)
}

func TestConcurrentCallersBatch(t *testing.T) {
	tests := []struct {
		name        string
		callers     int
		per         int
		maxBatch    int
		maxInflight int
	}{
		{"defaults", 200, 10, 0, 0},
		{"one inflight", 100, 3, 0, 1},
		{"small batches", 100, 5, 20, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePub{delay: 2 * time.Millisecond} // stands in for an fsync
			reg := prometheus.NewRegistry()
			m, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			c := &Committer{Pub: pub, Subject: "tend.readings.all", MaxBatch: tt.maxBatch, MaxInflight: tt.maxInflight, Metrics: m}
			start(t, c)
			var wg sync.WaitGroup
			errs := make(chan error, tt.callers)
			for i := range tt.callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- c.Commit(context.Background(), rd(fmt.Sprintf("dev-%d", i), tt.per))
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("Commit: %v", err)
				}
			}
			batches, devices := pub.published()
			if len(devices) != tt.callers {
				t.Fatalf("%d devices published, want %d", len(devices), tt.callers)
			}
			for d, n := range devices {
				if n != tt.per {
					t.Fatalf("device %s: %d readings published, want exactly %d", d, n, tt.per)
				}
			}
			if batches >= tt.callers {
				t.Fatalf("%d publishes for %d callers: no batching", batches, tt.callers)
			}
			pub.mu.Lock()
			for _, b := range pub.batches {
				if len(b) > c.MaxBatch {
					t.Errorf("batch of %d readings exceeds MaxBatch %d", len(b), c.MaxBatch)
				}
			}
			pub.mu.Unlock()
			if peak := int(pub.peak.Load()); peak > c.MaxInflight {
				t.Fatalf("%d concurrent publishes, MaxInflight %d", peak, c.MaxInflight)
			}
			if got := sampleCount(t, reg, "tend_commit_batch_readings"); got != batches {
				t.Fatalf("batch histogram count %d, want %d", got, batches)
			}
			if got := sampleCount(t, reg, "tend_commit_seconds"); got != tt.callers {
				t.Fatalf("commit latency count %d, want %d", got, tt.callers)
			}
			t.Logf("%d callers in %d publishes", tt.callers, batches)
		})
	}
}

func TestPublishFailureReachesOnlyThatBatch(t *testing.T) {
	pub := &fakePub{gate: make(chan struct{}), entered: make(chan struct{}, 10),
		fail: func(rs []reading.Reading) error {
			for _, r := range rs {
				if r.Device == "bad" {
					return errors.New("disk full")
				}
			}
			return nil
		}}
	c := &Committer{Pub: pub, Subject: "s", MaxInflight: 1}
	start(t, c)
	ctx := context.Background()
	results := map[string]chan error{}
	commit := func(dev string) {
		ch := make(chan error, 1)
		results[dev] = ch
		go func() { ch <- c.Commit(ctx, rd(dev, 2)) }()
	}
	commit("a") // batch 1, held at the gate
	<-pub.entered
	commit("bad") // batch 2 …
	commit("b")   // … shares it
	queued(t, c, 2)
	pub.gate <- struct{}{} // batch 1 succeeds
	<-pub.entered
	pub.gate <- struct{}{} // batch 2 fails
	want := map[string]bool{"a": true, "bad": false, "b": false}
	for dev, ok := range want {
		err := <-results[dev]
		if ok != (err == nil) {
			t.Errorf("caller %s: err = %v, want success %v", dev, err, ok)
		}
	}
	commit("c") // the committer recovers: batch 3 succeeds
	<-pub.entered
	pub.gate <- struct{}{}
	if err := <-results["c"]; err != nil {
		t.Fatalf("commit after a failed batch: %v", err)
	}
}

func TestCallerContextCancelled(t *testing.T) {
	pub := &fakePub{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	c := &Committer{Pub: pub, Subject: "s", MaxInflight: 1}
	start(t, c)
	go c.Commit(context.Background(), rd("a", 1))
	<-pub.entered // the only flusher is busy
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Commit(ctx, rd("b", 1)) }()
	queued(t, c, 1)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled caller still waiting")
	}
	pub.gate <- struct{}{}
	c.Close()
	_, devices := pub.published()
	if devices["b"] != 0 {
		t.Fatalf("a request cancelled before its batch was taken was still published")
	}
}

func TestCloseDrains(t *testing.T) {
	pub := &fakePub{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	c := &Committer{Pub: pub, Subject: "s", MaxInflight: 1, MaxBatch: 4}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int32
	commit := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Commit(context.Background(), rd(fmt.Sprint(i), 2)); err != nil {
				failed.Add(1)
			}
		}()
	}
	commit(0)
	<-pub.entered // the only flusher is now busy
	for i := 1; i < 10; i++ {
		commit(i)
	}
	queued(t, c, 9)
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	// Close must wait for the queue: release publishes one by one.
	go func() {
		for {
			select {
			case pub.gate <- struct{}{}:
			case <-closed:
				return
			}
		}
	}()
	wg.Wait()
	<-closed
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d commits failed during Close", n)
	}
	if _, devices := pub.published(); len(devices) != 10 {
		t.Fatalf("%d of 10 callers published after Close", len(devices))
	}
	if err := c.Commit(context.Background(), rd("late", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close = %v, want ErrClosed", err)
	}
}

func TestStartContextCancelFailsQueue(t *testing.T) {
	pub := &fakePub{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Committer{Pub: pub, Subject: "s", MaxInflight: 1}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errs := make(chan error, 2)
	go func() { errs <- c.Commit(context.Background(), rd("a", 1)) }()
	<-pub.entered
	go func() { errs <- c.Commit(context.Background(), rd("b", 1)) }()
	queued(t, c, 1)
	cancel()
	for range 2 {
		select {
		case err := <-errs:
			if err == nil {
				t.Fatal("commit succeeded after the committer was stopped")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("commit hung after Start context was cancelled")
		}
	}
	if err := c.Commit(context.Background(), rd("c", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after stop = %v, want ErrClosed", err)
	}
}

func TestLargeCommitIsSplit(t *testing.T) {
	pub := &fakePub{}
	c := &Committer{Pub: pub, Subject: "s", MaxBatch: 100}
	start(t, c)
	if err := c.Commit(context.Background(), rd("big", 1050)); err != nil {
		t.Fatal(err)
	}
	batches, devices := pub.published()
	if devices["big"] != 1050 || batches != 11 {
		t.Fatalf("published %d readings in %d messages, want 1050 in 11", devices["big"], batches)
	}
}

func TestOversizedGroupIsSplit(t *testing.T) {
	pub := &fakePub{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	one := len(reading.EncodeBatch(rd("x", 10)))
	c := &Committer{Pub: pub, Subject: "s", MaxInflight: 1, MaxMessageBytes: one + one/2}
	start(t, c)
	errs := make(chan error, 4)
	go func() { errs <- c.Commit(context.Background(), rd("first", 1)) }()
	<-pub.entered
	for _, d := range []string{"a", "b"} {
		go func() { errs <- c.Commit(context.Background(), rd(d, 10)) }()
	}
	queued(t, c, 2)
	// "too-big" alone exceeds the limit and must fail on its own.
	go func() { errs <- c.Commit(context.Background(), rd("too-big", 20)) }()
	queued(t, c, 3)
	go func() {
		for range 3 {
			<-pub.entered
		}
	}()
	for range 3 {
		pub.gate <- struct{}{}
	}
	failures := 0
	for range 4 {
		if err := <-errs; err != nil {
			failures++
		}
	}
	if failures != 1 {
		t.Fatalf("%d commits failed, want only the oversized one", failures)
	}
	batches, devices := pub.published()
	if batches != 3 || devices["a"] != 10 || devices["b"] != 10 || devices["too-big"] != 0 {
		t.Fatalf("published %d messages %v; want first, a and b in separate messages", batches, devices)
	}
}

func TestCommitRejects(t *testing.T) {
	c := &Committer{Pub: &fakePub{}, Subject: "s"}
	if err := c.Commit(context.Background(), rd("a", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit before Start = %v, want ErrClosed", err)
	}
	start(t, c)
	bad := rd("a", 3)
	bad[1].HasValue = false // no value and no components
	tests := []struct {
		name string
		rs   []reading.Reading
		want error
	}{
		{"empty", nil, nil},
		{"no value", bad, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.Commit(context.Background(), tt.rs); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if err := (&Committer{}).Start(context.Background()); err == nil {
		t.Fatal("Start without Pub succeeded")
	}
}

func sampleCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return int(mf.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
