package bench

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(i + 1)
	}
	tests := []struct {
		name   string
		sorted []int64
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []int64{7}, 0.99, 7},
		{"p50 of 1..100", hundred, 0.50, 50},
		{"p99 of 1..100", hundred, 0.99, 99},
		{"p100 of 1..100", hundred, 1, 100},
		{"p07 exact rank despite float noise", hundred, 0.07, 7},
		{"p29 exact rank despite float noise", hundred, 0.29, 29},
		{"p50 of two rounds up to first", []int64{10, 20}, 0.50, 10},
		{"p99 of two is the larger", []int64{10, 20}, 0.99, 20},
		{"tiny p is the minimum", []int64{3, 4, 5}, 0.0001, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestTallyAndSummarise(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w := window{from: base.Add(time.Second), to: base.Add(3 * time.Second)}
	a, b := &tally{}, &tally{}
	// Sent in warmup, acked in the window: counts for throughput, not latency.
	a.ack(w, base.Add(900*time.Millisecond), base.Add(1100*time.Millisecond), 10)
	// Sent and acked in the window.
	a.ack(w, base.Add(2*time.Second), base.Add(2*time.Second+5*time.Millisecond), 10)
	// Sent in the window, acked during drain: latency yes, throughput no.
	b.ack(w, base.Add(2900*time.Millisecond), base.Add(3100*time.Millisecond), 10)
	// Warmup only.
	b.ack(w, base, base.Add(time.Millisecond), 10)
	b.fail(errTest)
	s := summarise([]*tally{a, b}, 2*time.Second)
	if s.acked != 20 || s.ackedTotal != 40 || s.errors != 1 || s.firstErr != errTest {
		t.Fatalf("counts: acked %d total %d errors %d first %v", s.acked, s.ackedTotal, s.errors, s.firstErr)
	}
	if s.rate != 10 {
		t.Errorf("rate = %v, want 10 readings/s", s.rate)
	}
	if s.p50 != 5*time.Millisecond || s.p99 != 200*time.Millisecond || s.max != 200*time.Millisecond {
		t.Errorf("latencies p50 %v p99 %v max %v", s.p50, s.p99, s.max)
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("boom")

func TestPacer(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if newPacer(0, start) != nil {
		t.Fatal("rate 0 must mean unpaced")
	}
	p := newPacer(100, start) // 10ms apart, 20ms burst
	tests := []struct {
		now, want time.Duration // offsets from start
	}{
		{0, 0},
		{0, 10 * time.Millisecond},
		{0, 20 * time.Millisecond},
		// Far behind: catch up by at most the burst, not from 30ms on.
		{time.Second, time.Second - 20*time.Millisecond},
		{time.Second, time.Second - 10*time.Millisecond},
		{time.Second, time.Second},
		{time.Second, time.Second + 10*time.Millisecond},
	}
	for i, tt := range tests {
		if got := p.reserve(start.Add(tt.now)).Sub(start); got != tt.want {
			t.Errorf("reserve #%d at +%v = +%v, want +%v", i, tt.now, got, tt.want)
		}
	}
}
