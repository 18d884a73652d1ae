package fhir

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// Metrics of the org fixture plus readings: d1 (north, bound to p1)
// measured heart rate, SpO2 and blood pressure; d3 (north) measured
// respiratory rate while bound to p3 and heart rate since it moved to p1;
// ds (south, s1) body temperature.
var (
	mD1HR   = "d1.2" + codes.HeartRate
	mD1SpO2 = "d1.2" + codes.OxygenSaturation
	mD1BP   = "d1.2" + codes.BloodPressurePanel
	mD3HR   = "d3.2" + codes.HeartRate
	mD3RR   = "d3.2" + codes.RespiratoryRate
	mDSTemp = "ds.2" + codes.BodyTemperature
)

func newMetricFixture(t *testing.T) *orgFixture {
	t.Helper()
	f := newOrgFixture(t, nil)
	ctx := context.Background()
	t0 := fixedNow.Add(-2 * time.Hour)
	d3 := store.Device{ID: "d3", Org: "north", Patient: "p3", Resource: []byte(`{"resourceType":"Device"}`)}
	if err := f.st.CreateDevice(ctx, &d3, t0); err != nil {
		t.Fatal(err)
	}
	d3.Patient = "p1"
	if err := f.st.UpdateDevice(ctx, &d3, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	val := func(patient, device, code string, v float64, unit string, m int) reading.Reading {
		return reading.Reading{Patient: patient, Device: device, Code: code, Value: v, HasValue: true, Unit: unit, Time: at(m), Received: at(m), Source: "test"}
	}
	bp := reading.Reading{Patient: "p1", Device: "d1", Code: codes.BloodPressurePanel, Unit: "mm[Hg]", Time: at(5), Received: at(5), Source: "test",
		Components: []reading.Component{{Code: codes.SystolicBP, Value: 120, Unit: "mm[Hg]"}, {Code: codes.DiastolicBP, Value: 80, Unit: "mm[Hg]"}}}
	rs := []reading.Reading{
		val("p1", "d1", codes.HeartRate, 70, "/min", 1), val("p1", "d1", codes.HeartRate, 72, "/min", 2),
		val("p1", "d1", codes.OxygenSaturation, 97, "%", 3), bp,
		val("p3", "d3", codes.RespiratoryRate, 14, "/min", 10), val("p1", "d3", codes.HeartRate, 80, "/min", 70),
		val("s1", "ds", codes.BodyTemperature, 37, "Cel", 4),
	}
	if _, err := f.st.Append(ctx, rs); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestDeviceMetricScoping: each principal's search returns and counts
// exactly the metrics of the devices it may see, from the readings of
// the patients it may see; every other metric reads as 404.
func TestDeviceMetricScoping(t *testing.T) {
	f := newMetricFixture(t)
	all := []string{mD1HR, mD1SpO2, mD1BP, mD3HR, mD3RR, mDSTemp, "d1.2" + codes.BodyWeight, "nope.2" + codes.HeartRate}
	for _, tc := range []struct {
		who  string
		want []string
	}{
		{"north-admin", []string{mD1HR, mD1SpO2, mD1BP, mD3HR, mD3RR}},
		{"north-ehr", []string{mD1HR, mD1SpO2, mD1BP, mD3HR, mD3RR}},
		{"north-doc", []string{mD1HR, mD1SpO2, mD1BP, mD3HR}}, // not p3's respiratory rate
		{"north-locum", []string{}},                           // d3 is no longer bound to p3
		{"north-pat", []string{}},
		{"south-admin", []string{mDSTemp}},
	} {
		t.Run(tc.who, func(t *testing.T) {
			code, body := f.get(tc.who, "/fhir/DeviceMetric")
			if code != 200 {
				t.Fatalf("search: %d %s", code, body)
			}
			total, ids := searchIDs(t, body)
			want := slices.Sorted(slices.Values(tc.want))
			if total != len(want) || !slices.Equal(ids, want) {
				t.Errorf("search = %d %v, want %v", total, ids, want)
			}
			for _, id := range all {
				code, body := f.get(tc.who, "/fhir/DeviceMetric/"+id)
				if visible := slices.Contains(tc.want, id); (code == 200) != visible || (!visible && code != 404) {
					t.Errorf("read %s: %d (visible %v) %s", id, code, visible, body)
				}
			}
		})
	}
}

func TestDeviceMetricSearchParams(t *testing.T) {
	f := newMetricFixture(t)
	for _, tc := range []struct {
		who, query string
		want       []string // nil: refused with 400
	}{
		{"north-admin", "source=Device/d3", []string{mD3HR, mD3RR}},
		{"north-doc", "source=d3", []string{mD3HR}},
		{"north-admin", "source=d1,d3&source=Device/d3", []string{mD3HR, mD3RR}},
		{"north-admin", "source=d1&source=d3", []string{}},
		{"north-admin", "source=ds", []string{}}, // south's device
		{"north-admin", "source=nope", []string{}},
		{"north-admin", "source=Device/d1&_count=2", []string{mD1HR, mD1SpO2}},
		{"north-admin", "source=Device/d1&_offset=2", []string{mD1BP}},
		{"north-admin", "source=Device/a%20b", nil},
		{"north-admin", "source=", nil},
		{"north-admin", "type=x", nil}, // undeclared, strict handling
	} {
		code, body := f.get(tc.who, "/fhir/DeviceMetric?"+tc.query, "Prefer", "handling=strict")
		if tc.want == nil {
			if code != 400 {
				t.Errorf("%s: %d, want 400", tc.query, code)
			}
			continue
		}
		if code != 200 {
			t.Errorf("%s %s: %d %s", tc.who, tc.query, code, body)
			continue
		}
		if _, ids := searchIDs(t, body); !slices.Equal(ids, slices.Sorted(slices.Values(tc.want))) {
			t.Errorf("%s %s: %v, want %v", tc.who, tc.query, ids, tc.want)
		}
	}
}

func TestGoldenDeviceMetric(t *testing.T) {
	f := newMetricFixture(t)
	for name, target := range map[string]string{
		"devicemetric.json":        "/fhir/DeviceMetric/" + mD1BP,
		"devicemetric_search.json": "/fhir/DeviceMetric?source=Device/d3",
	} {
		code, body := f.get("north-admin", target)
		if code != 200 {
			t.Fatalf("%s: %d %s", target, code, body)
		}
		checkGolden(t, name, body)
	}
}

func TestMetricIDCodec(t *testing.T) {
	for _, tc := range []struct {
		device, code, fid string
	}{
		{"d1", "8867-4", "d1.28867-4"},
		{"a.b", "sensor-off", "a.0b.2sensor-off"},
		{"x_y", "c.d", "x.1y.2c.0d"},
	} {
		got, ok := metricID(tc.device, tc.code)
		if !ok || got != tc.fid {
			t.Errorf("metricID(%q, %q) = %q %v, want %q", tc.device, tc.code, got, ok, tc.fid)
		}
		d, c, ok := parseMetricID(got)
		if !ok || d != tc.device || c != tc.code {
			t.Errorf("parseMetricID(%q) = %q %q %v", got, d, c, ok)
		}
	}
	for _, fid := range []string{"d1", "d1.2", ".28867-4", "d1.2a.2b", "d1.3x", "a.b.2c"} {
		if d, c, ok := parseMetricID(fid); ok {
			t.Errorf("parseMetricID(%q) = %q %q, want refused", fid, d, c)
		}
	}
}

func FuzzMetricID(f *testing.F) {
	for _, s := range []string{"d1.28867-4", "a.0b.2sensor-off", "d1.2a.2b", ".2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, c, ok := parseMetricID(s)
		if !ok {
			return
		}
		if back, ok := metricID(d, c); !ok || back != s {
			t.Fatalf("parse %q = %q %q, which is %q %v", s, d, c, back, ok)
		}
	})
}

// TestDeviceMetricAccessClassified: SMART scopes of the DeviceMetric paths.
func TestDeviceMetricAccessClassified(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/DeviceMetric", "DeviceMetric:s"},
		{"GET", "/DeviceMetric/" + mD1HR, "DeviceMetric:r"},
	} {
		acc, err := RequiredAccess(tc.method, tc.path, url.Values{}, "", nil)
		if err != nil || len(acc) != 1 || acc[0].Type+":"+acc[0].AnyString() != tc.want {
			t.Errorf("%s %s: %+v %v, want %s", tc.method, tc.path, acc, err, tc.want)
		}
	}
}
