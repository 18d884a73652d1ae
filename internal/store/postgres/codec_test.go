package postgres

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/reading"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

var bpComponents = []reading.Component{
	{Code: "8480-6", MDC: "MDC_PRESS_BLD_NONINV_SYS", Value: 120.5, Unit: "mm[Hg]"},
	{Code: "8462-4", MDC: "MDC_PRESS_BLD_NONINV_DIA", Value: 80.25, Unit: "mm[Hg]"},
	{Code: "8478-0", Value: math.Nextafter(0.3, 1), Unit: "mm[Hg]"}, // not a short decimal,
	{Code: "x", Value: math.MaxFloat64, Unit: "1"},
	{Code: "y", Value: math.SmallestNonzeroFloat64, Unit: "1"},
}

func TestComponentsGolden(t *testing.T) {
	b, err := encodeComponents(bpComponents)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "components.golden.json")
	if *update {
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(b, '\n'), want) {
		t.Fatalf("encoding changed (stored data would no longer match; run with -update only if intended):\n got %s\nwant %s", b, want)
	}
	back, err := decodeComponents(want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(bpComponents, back); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

func TestComponentsEmpty(t *testing.T) {
	for _, cs := range [][]reading.Component{nil, {}} {
		b, err := encodeComponents(cs)
		if err != nil || b != nil {
			t.Fatalf("encodeComponents(%v) = %q, %v; want nil (stored as NULL)", cs, b, err)
		}
	}
	for _, in := range []string{"", "[]", "null"} {
		cs, err := decodeComponents([]byte(in))
		if err != nil || cs != nil {
			t.Fatalf("decodeComponents(%q) = %v, %v; want nil", in, cs, err)
		}
	}
}

func FuzzDecodeComponents(f *testing.F) {
	seed, _ := encodeComponents(bpComponents)
	for _, s := range [][]byte{seed, []byte(`[]`), []byte(`[{"value":1e309}]`), []byte(`{`), []byte(`[{"code":1}]`)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := decodeComponents(b)
		if err != nil {
			return
		}
		again, err := encodeComponents(cs)
		if err != nil {
			t.Fatalf("decoded components do not encode: %v", err)
		}
		back, err := decodeComponents(again)
		if err != nil {
			t.Fatalf("re-encoded components do not decode: %v", err)
		}
		if diff := cmp.Diff(cs, back); diff != "" {
			t.Fatalf("unstable round trip (-first +second):\n%s", diff)
		}
	})
}

func TestWeeks(t *testing.T) {
	ns := time.Nanosecond
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{"monday midnight starts a week", time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), "samples_20260302"},
		{"sunday night ends it", time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC).Add(-ns), "samples_20260302"},
		{"other zones count in UTC", time.Date(2026, 3, 2, 0, 30, 0, 0, time.FixedZone("+1", 3600)), "samples_20260223"},
		{"the epoch", time.Unix(0, 0), "samples_19691229"},
		{"before the epoch", time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC), "samples_19691229"},
		{"first monday after the epoch", time.Date(1970, 1, 5, 0, 0, 0, 0, time.UTC), "samples_19700105"},
		{"earliest storable", time.Unix(0, math.MinInt64), "samples_16770920"},
		{"latest storable", time.Unix(0, math.MaxInt64), "samples_22620407"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := weekOf(tc.at)
			if got := partitionName(w); got != tc.want {
				t.Fatalf("partition of %v = %s, want %s", tc.at, got, tc.want)
			}
			if start := weekStart(w); tc.at.Before(start) || !tc.at.Before(weekStart(w+1)) || start.Weekday() != time.Monday {
				t.Fatalf("week %d [%v, %v) does not hold %v or start on a Monday", w, start, weekStart(w+1), tc.at)
			}
		})
	}
}

func TestPartitionBounds(t *testing.T) {
	tests := []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC), "FROM (1772409600000000000) TO (1773014400000000000)"},
		{time.Unix(0, math.MinInt64), "FROM (MINVALUE) TO (-9222854400000000000)"},
		{time.Unix(0, math.MaxInt64), "FROM (9222940800000000000) TO (MAXVALUE)"},
	}
	for _, tc := range tests {
		if got := partitionBounds(weekOf(tc.at)); got != tc.want {
			t.Errorf("bounds of the week of %v = %s, want %s", tc.at, got, tc.want)
		}
		if m := boundRE.FindStringSubmatch("FOR VALUES " + tc.want); m == nil {
			t.Errorf("bound %q would not be understood by DropPartitionsBefore", tc.want)
		}
	}
}
