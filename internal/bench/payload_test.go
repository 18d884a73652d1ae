package bench

import (
	"encoding/json"
	"testing"
	"time"
)

type senmlRecord struct {
	N string   `json:"n"`
	U string   `json:"u"`
	V *float64 `json:"v"`
	T float64  `json:"t"`
}

func TestGeneratorTimesUniqueAndIncreasing(t *testing.T) {
	now := time.Date(2026, 11, 23, 18, 0, 0, 999_500_000, time.UTC)
	tests := []struct {
		name       string
		perMessage int
		messages   int
		step       time.Duration // clock advance between messages
	}{
		{"one per message, slow", 1, 20, 50 * time.Millisecond},
		{"ten per message, clock frozen", 10, 200, 0},
		{"seven per message, fast clock", 7, 100, 100 * time.Microsecond},
	}
	units := map[string]string{"8867-4": "/min", "59408-5": "%", "9279-1": "/min"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGenerator(tt.perMessage)
			last := map[string]int64{}
			clock := now
			var buf []byte
			for m := 0; m < tt.messages; m++ {
				buf = g.Append(buf[:0], clock)
				var recs []senmlRecord
				if err := json.Unmarshal(buf, &recs); err != nil {
					t.Fatalf("message %d is not JSON: %v\n%s", m, err, buf)
				}
				if len(recs) != tt.perMessage {
					t.Fatalf("message %d has %d records, want %d", m, len(recs), tt.perMessage)
				}
				for _, r := range recs {
					if units[r.N] != r.U || r.V == nil {
						t.Fatalf("record %+v: wrong code, unit or missing value", r)
					}
					ms := int64(r.T*1000 + 0.5)
					if ms <= last[r.N] {
						t.Fatalf("code %s: time %d ms not after %d ms", r.N, ms, last[r.N])
					}
					if ms <= clock.UnixMilli() {
						t.Fatalf("time %d ms not after the clock %d ms (could precede the binding)", ms, clock.UnixMilli())
					}
					last[r.N] = ms
				}
				clock = clock.Add(tt.step)
			}
		})
	}
}

func TestGeneratorValuesPlausible(t *testing.T) {
	g := newGenerator(300)
	var recs []senmlRecord
	if err := json.Unmarshal(g.Append(nil, time.Unix(1_800_000_000, 0)), &recs); err != nil {
		t.Fatal(err)
	}
	bounds := map[string][2]float64{"8867-4": {60, 100}, "59408-5": {94, 100}, "9279-1": {12, 21}}
	seen := map[string]map[float64]bool{}
	for _, r := range recs {
		b := bounds[r.N]
		if *r.V < b[0] || *r.V >= b[1] {
			t.Errorf("%s value %v outside [%v,%v)", r.N, *r.V, b[0], b[1])
		}
		if seen[r.N] == nil {
			seen[r.N] = map[float64]bool{}
		}
		seen[r.N][*r.V] = true
	}
	for code, vs := range seen {
		if len(vs) < 3 {
			t.Errorf("%s values do not vary: %v", code, vs)
		}
	}
}

func TestGeneratorLead(t *testing.T) {
	g := newGenerator(3)
	now := time.Unix(1_800_000_000, 0)
	for range 2000 { // 2000 readings of each code in one frozen millisecond
		g.Append(nil, now)
	}
	if g.lead < 1900*time.Millisecond || g.lead > 2000*time.Millisecond {
		t.Errorf("lead = %v, want about 2s", g.lead)
	}
}

func TestAppendMillis(t *testing.T) {
	tests := []struct {
		ms   int64
		want string
	}{
		{0, "0.000"},
		{7, "0.007"},
		{1_763_920_000_123, "1763920000.123"},
		{1_763_920_000_050, "1763920000.050"},
		{1_763_920_001_000, "1763920001.000"},
	}
	for _, tt := range tests {
		if got := string(appendMillis(nil, tt.ms)); got != tt.want {
			t.Errorf("appendMillis(%d) = %s, want %s", tt.ms, got, tt.want)
		}
	}
}

func TestGeneratorDoesNotAllocate(t *testing.T) {
	g := newGenerator(10)
	buf := make([]byte, 0, 4096)
	now := time.Unix(1_800_000_000, 0)
	allocs := testing.AllocsPerRun(100, func() { buf = g.Append(buf[:0], now) })
	if allocs != 0 {
		t.Errorf("Append allocates %.1f times per message; want 0", allocs)
	}
}

func BenchmarkGenerator(b *testing.B) {
	g := newGenerator(10)
	buf := make([]byte, 0, 4096)
	now := time.Unix(1_800_000_000, 0)
	for b.Loop() {
		buf = g.Append(buf[:0], now)
	}
}
