package bench

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var inf = math.Inf(1)

func TestHistogramQuantile(t *testing.T) {
	// 100 observations: 10 in (0,1], 40 in (1,2], 50 in (2,4], none above.
	std := []bucket{{1, 10}, {2, 50}, {4, 100}, {inf, 100}}
	tests := []struct {
		name string
		q    float64
		bs   []bucket
		want float64 // NaN for "no estimate"
	}{
		{"first bucket interpolates from 0", 0.05, std, 0.5},
		{"bucket edge", 0.10, std, 1},
		{"median inside second bucket", 0.50, std, 2},
		{"p30", 0.30, std, 1.5},
		{"p99 in the top finite bucket", 0.99, std, 2 + 2*0.98},
		{"q=1 is the top of the last filled bucket", 1, std, 4},
		{"rank in +Inf bucket gives largest finite bound", 0.99, []bucket{{1, 10}, {2, 50}, {inf, 100}}, 2},
		{"q=0", 0, std, 0},
		{"empty histogram", 0.5, []bucket{{1, 0}, {inf, 0}}, math.NaN()},
		{"no +Inf bucket", 0.5, []bucket{{1, 1}, {2, 2}}, math.NaN()},
		{"single bucket", 0.5, []bucket{{inf, 5}}, math.NaN()},
		{"q out of range", 1.5, std, math.NaN()},
		{"negative q", -0.1, std, math.NaN()},
		{"non-monotonic counts are repaired", 0.5, []bucket{{1, 10}, {2, 5}, {4, 20}, {inf, 20}}, 1 + 0.0},
		{"first bound not positive", 0.1, []bucket{{-1, 5}, {1, 10}, {inf, 10}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := histogramQuantile(tt.q, tt.bs)
			if math.IsNaN(tt.want) {
				if !math.IsNaN(got) {
					t.Errorf("got %v, want NaN", got)
				}
				return
			}
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseHistogram(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []bucket
		wantErr string
	}{
		{"absent", "# nothing\nother_metric 1\n", nil, ""},
		{"labels summed across series, sorted by le",
			`m_bucket{a="x",le="+Inf"} 3
m_bucket{a="y",le="+Inf"} 4
m_bucket{le="0.5",a="x"} 1
m_bucket{a="y",le="0.5"} 2
m_sum 3
m_count 7
`, []bucket{{0.5, 3}, {inf, 7}}, ""},
		{"escaped quote in another label", `m_bucket{path="a\"b,c}",le="1"} 2` + "\n" + `m_bucket{le="+Inf"} 2`, []bucket{{1, 2}, {inf, 2}}, ""},
		{"timestamp after value", `m_bucket{le="+Inf"} 5 1700000000000`, []bucket{{inf, 5}}, ""},
		{"scientific le", `m_bucket{le="2.5e-3"} 1` + "\n" + `m_bucket{le="+Inf"} 1`, []bucket{{0.0025, 1}, {inf, 1}}, ""},
		{"missing le", `m_bucket{a="b"} 1`, nil, "without le"},
		{"bad count", `m_bucket{le="1"} x`, nil, "bad bucket count"},
		{"negative count", `m_bucket{le="1"} -1`, nil, "bad bucket count"},
		{"unterminated", `m_bucket{le="1`, nil, "unterminated"},
		{"longer name ignored", `m_bucketed{le="1"} 5`, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHistogram([]byte(tt.text), "m")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(bucket{})); diff != "" {
				t.Errorf("buckets (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStoredQuantilesSubtractsWarmup(t *testing.T) {
	before, err := os.ReadFile("testdata/metrics_before.txt")
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile("testdata/metrics_after.txt")
	if err != nil {
		t.Fatal(err)
	}
	// Window: 1000 observations; 200 in (1ms,5ms], 400 in (5,10], 300 in (10,50], 100 in (50,100].
	p50, p99, err := storedQuantiles(before, after)
	if err != nil {
		t.Fatal(err)
	}
	// p50: rank 500, bucket (5ms,10ms] holds ranks 200..600 → 5 + 5*(300/400) = 8.75ms.
	// p99: rank 990, bucket (50ms,100ms] holds 900..1000 → 50 + 50*(90/100) = 95ms.
	if want := 8750 * time.Microsecond; absDur(p50-want) > time.Microsecond {
		t.Errorf("p50 = %v, want %v", p50, want)
	}
	if want := 95 * time.Millisecond; absDur(p99-want) > time.Microsecond {
		t.Errorf("p99 = %v, want %v", p99, want)
	}
	// Without a before scrape every observation counts: rank 550 of 1100
	// falls in (5ms,10ms] holding 210..640 → 5 + 5*(340/430) ms.
	whole, _, err := storedQuantiles(nil, after)
	if err != nil {
		t.Fatal(err)
	}
	if want := seconds((5 + 5*340.0/430) / 1000); absDur(whole-want) > time.Microsecond {
		t.Errorf("p50 without subtraction = %v, want %v", whole, want)
	}
	if _, _, err := storedQuantiles(before, []byte("up 1\n")); err == nil {
		t.Error("missing histogram must be reported")
	}
	if _, _, err := storedQuantiles(after, after); err == nil {
		t.Error("a window without observations must be reported")
	}
}

func TestSubtractBucketsAfterRestart(t *testing.T) {
	before := []bucket{{1, 50}, {inf, 100}}
	after := []bucket{{1, 5}, {inf, 10}} // counters went down: server restarted
	if diff := cmp.Diff(after, subtractBuckets(after, before), cmp.AllowUnexported(bucket{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// FuzzParseHistogram checks the metrics parser never panics and that what
// it returns is sorted and gives a quantile within the bucket bounds.
func FuzzParseHistogram(f *testing.F) {
	for _, p := range []string{"testdata/metrics_before.txt", "testdata/metrics_after.txt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`tend_publish_to_stored_seconds_bucket{le="NaN"} 1`))
	f.Add([]byte(`tend_publish_to_stored_seconds_bucket{le="1",x="\\"} 1e308`))
	f.Add([]byte("tend_publish_to_stored_seconds_bucket"))
	f.Fuzz(func(t *testing.T, text []byte) {
		bs, err := parseHistogram(text, storedMetric)
		if err != nil {
			return
		}
		for i := 1; i < len(bs); i++ {
			if !(bs[i-1].le < bs[i].le) {
				t.Fatalf("buckets not strictly sorted: %v", bs)
			}
		}
		q := histogramQuantile(0.99, bs)
		if math.IsNaN(q) || len(bs) < 2 {
			return
		}
		if q > bs[len(bs)-2].le || (q < 0 && q < bs[0].le) {
			t.Fatalf("quantile %v outside bucket bounds %v", q, bs)
		}
	})
}
