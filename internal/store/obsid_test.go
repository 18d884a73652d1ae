package store

import (
	"math"
	"regexp"
	"testing"
	"time"
)

var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

func TestObservationIDRoundTrip(t *testing.T) {
	tests := []struct {
		series, t int64
		want      string
	}{
		{1, 0, "1-0"},
		{35, 35, "z-z"},
		{35, 36, "z-10"},
		{36, 1772600767123456789, "10-dgtqj2ktrifp"},
		{1, -1, "1--1"},
		{math.MaxInt64, math.MaxInt64, "1y2p0ij32e8e7-1y2p0ij32e8e7"},
		{math.MaxInt64, math.MinInt64, "1y2p0ij32e8e7--1y2p0ij32e8e8"},
		{7, time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC).UnixNano(), "7-dgtqj2ktrifp"},
	}
	for _, tc := range tests {
		id := ObservationID(tc.series, tc.t)
		if id != tc.want {
			t.Errorf("ObservationID(%d, %d) = %q, want %q", tc.series, tc.t, id, tc.want)
		}
		if !fhirID.MatchString(id) {
			t.Errorf("id %q is not a valid FHIR id", id)
		}
		s, ts, err := ParseObservationID(id)
		if err != nil || s != tc.series || ts != tc.t {
			t.Errorf("ParseObservationID(%q) = %d, %d, %v; want %d, %d", id, s, ts, err, tc.series, tc.t)
		}
	}
}

func TestParseObservationIDRejects(t *testing.T) {
	for _, id := range []string{
		"", "-", "--", "x", "1", "1-", "-1", "0-0", "0-1", "-1-1", "-1-2", "1-2-3", "01-1", "1-01", "A-1", "1-+1", "+1-2",
		"1--0", "1---2", "ñ-1", "1- 1", "1-1 ", "1-zzzzzzzzzzzzzzz", "zzzzzzzzzzzzzz-1",
	} {
		if s, ts, err := ParseObservationID(id); err == nil {
			t.Errorf("ParseObservationID(%q) = %d, %d; want an error", id, s, ts)
		}
	}
}

func FuzzParseObservationID(f *testing.F) {
	for _, seed := range []string{"1-0", "z-10", "1--1", "1y2p0ij32e8e7--1y2p0ij32e8e8", "0-0", "1-2-3", "", "1-01"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		series, ts, err := ParseObservationID(id)
		if err != nil {
			return
		}
		if series <= 0 {
			t.Fatalf("accepted series %d from %q", series, id)
		}
		if back := ObservationID(series, ts); back != id {
			t.Fatalf("%q parsed to (%d, %d), which formats as %q", id, series, ts, back)
		}
		if !fhirID.MatchString(id) {
			t.Fatalf("accepted %q, not a valid FHIR id", id)
		}
	})
}
