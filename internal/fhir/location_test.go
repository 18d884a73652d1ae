package fhir

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// Locations of the org fixture: p1 (doc's) stayed at 12/A, p3 (locum's)
// is at 14/B, p2 (doc's, and pat herself) at a bed with '_' and a space;
// an unbound north device is installed in the store room; south's s1 is
// in its emergency room.
const (
	locP1    = "WEST.2ICU.212.2A"     // WEST/ICU/12/A
	locP3    = "WEST.2ICU.214.2B"     // WEST/ICU/14/B
	locP2    = "EAST.1WING.2R.x201"   // EAST_WING/R 1
	locStore = "WEST.2STORE.21"       // WEST/STORE/1
	locSouth = "SOUTH.2ER.21"         // SOUTH/ER/1
	locNone  = "NOWHERE.2AT.2ALL.x7e" // NOWHERE/AT/ALL~: nobody's
)

func newLocationFixture(t *testing.T) *orgFixture {
	t.Helper()
	f := newOrgFixture(t, nil)
	ctx := context.Background()
	t0 := fixedNow.Add(-time.Hour)
	for _, m := range []struct{ patient, loc string }{
		{"p1", "WEST/ICU/12/A"}, {"p3", "WEST/ICU/14/B"}, {"p2", "EAST_WING/R 1"}, {"s1", "SOUTH/ER/1"},
	} {
		if err := f.st.MovePatient(ctx, m.patient, m.loc, t0); err != nil {
			t.Fatal(err)
		}
	}
	// p1 moved on: the stay is history, and still a place p1 has been.
	if err := f.st.MovePatient(ctx, "p1", "", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	d := store.Device{ID: "dstore", Org: "north", Identifiers: []store.Identifier{{System: store.LocationSystem, Value: "WEST/STORE/1"}},
		Resource: []byte(`{"resourceType":"Device"}`)}
	if err := f.st.CreateDevice(ctx, &d, t0); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestLocationScoping: every principal's search returns and counts
// exactly the locations of its patients and devices, and every other
// location reads as 404.
func TestLocationScoping(t *testing.T) {
	f := newLocationFixture(t)
	all := []string{locP1, locP3, locP2, locStore, locSouth, locNone}
	for _, tc := range []struct {
		who  string
		want []string
	}{
		{"north-admin", []string{locP2, locP1, locP3, locStore}},
		{"north-ehr", []string{locP2, locP1, locP3, locStore}},
		{"north-doc", []string{locP2, locP1}},
		{"north-locum", []string{locP3}},
		{"north-pat", []string{locP2}},
		{"north-nobody", []string{}},
		{"south-admin", []string{locSouth}},
	} {
		t.Run(tc.who, func(t *testing.T) {
			code, body := f.get(tc.who, "/fhir/Location")
			if code != 200 {
				t.Fatalf("search: %d %s", code, body)
			}
			total, ids := searchIDs(t, body)
			want := slices.Sorted(slices.Values(tc.want))
			if total != len(want) || !slices.Equal(ids, want) {
				t.Errorf("search = %d %v, want %v", total, ids, want)
			}
			for _, id := range all {
				code, body := f.get(tc.who, "/fhir/Location/"+id)
				if visible := slices.Contains(tc.want, id); (code == 200) != visible || (!visible && code != 404) {
					t.Errorf("read %s: %d (visible %v) %s", id, code, visible, body)
				}
			}
			if tc.who != "south-admin" && strings.Contains(string(body), "SOUTH") {
				t.Errorf("south's location leaked: %s", body)
			}
		})
	}
}

func TestLocationSearchParams(t *testing.T) {
	f := newLocationFixture(t)
	for _, tc := range []struct {
		query string
		want  []string // nil: the search is refused with 400
	}{
		{"name=icu", []string{locP1, locP3}},
		{"name=WEST/ICU/1", []string{locP1, locP3}},
		{"name=12", []string{locP1}},
		{"name=r", []string{locP2}},
		{"name=icu&name=b", []string{locP3}},
		{"name=store,east", []string{locP2, locStore}},
		{"name=nowhere", []string{}},
		{"identifier=" + url.QueryEscape(store.LocationSystem+"|WEST/STORE/1"), []string{locStore}},
		{"identifier=WEST/ICU/14/B", []string{locP3}},
		{"identifier=urn:other|WEST/ICU/14/B", []string{}},
		{"identifier=WEST/ICU", []string{}},
		{"_count=1&name=icu", []string{locP1}},
		{"_offset=1&name=icu", []string{locP3}},
		{"name=", nil},
		{"identifier=urn:x|", nil},
	} {
		code, body := f.get("north-admin", "/fhir/Location?"+tc.query, "Prefer", "handling=strict")
		if tc.want == nil {
			if code != 400 {
				t.Errorf("%s: %d, want 400", tc.query, code)
			}
			continue
		}
		if code != 200 {
			t.Errorf("%s: %d %s", tc.query, code, body)
			continue
		}
		if _, ids := searchIDs(t, body); !slices.Equal(ids, tc.want) {
			t.Errorf("%s: %v, want %v", tc.query, ids, tc.want)
		}
	}
	if code, _ := f.get("north-admin", "/fhir/Location?address=x", "Prefer", "handling=strict"); code != 400 {
		t.Errorf("undeclared parameter under strict handling: %d", code)
	}
	if code, _ := f.get("north-admin", "/fhir/Location?name=icu&_summary=count"); code != 200 {
		t.Errorf("_summary=count: %d", code)
	}
}

func TestGoldenLocation(t *testing.T) {
	f := newLocationFixture(t)
	for name, target := range map[string]string{
		"location.json":        "/fhir/Location/" + locP2,
		"location_search.json": "/fhir/Location?name=icu",
	} {
		code, body := f.get("north-admin", target)
		if code != 200 {
			t.Fatalf("%s: %d %s", target, code, body)
		}
		checkGolden(t, name, body)
	}
}

func TestLocationIDCodec(t *testing.T) {
	for _, tc := range []struct {
		loc, fid string
		ok       bool
	}{
		{"WEST/ICU/12/A", "WEST.2ICU.212.2A", true},
		{"EAST_WING/R 1", "EAST.1WING.2R.x201", true},
		{"A.B", "A.0B", true},
		{"Zürich", "Z.xc3.xbcrich", true},
		{"ICU", "ICU", true},
		{"", "", false},
		{strings.Repeat("a/", 22), "", false}, // 66 characters encoded
	} {
		got, ok := encodeLocationID(tc.loc)
		if ok != tc.ok || (ok && got != tc.fid) {
			t.Errorf("encode %q = %q %v, want %q %v", tc.loc, got, ok, tc.fid, tc.ok)
		}
		if !ok {
			continue
		}
		if back, ok := decodeLocationID(got); !ok || back != tc.loc {
			t.Errorf("decode %q = %q %v", got, back, ok)
		}
	}
	// Only canonical forms decode, so each location has one id.
	for _, fid := range []string{"A.x2f", "A.x2e", "A.x41", "A.xC3", "A.x2", "A.", "A.3", "", "a b"} {
		if loc, ok := decodeLocationID(fid); ok {
			t.Errorf("decode %q = %q, want refused", fid, loc)
		}
	}
}

func FuzzLocationID(f *testing.F) {
	for _, s := range []string{"WEST/ICU/12/A", "EAST.1WING.2R.x201", "A.x2f", "Zürich", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if fid, ok := encodeLocationID(s); ok {
			if !validID(fid) {
				t.Fatalf("encode %q = %q, not a FHIR id", s, fid)
			}
			if back, ok := decodeLocationID(fid); !ok || back != s {
				t.Fatalf("round trip %q -> %q -> %q %v", s, fid, back, ok)
			}
		}
		if loc, ok := decodeLocationID(s); ok {
			if fid, ok := encodeLocationID(loc); !ok || fid != s {
				t.Fatalf("decode %q = %q, which encodes as %q %v", s, loc, fid, ok)
			}
		}
	})
}

// TestLocationAccessClassified: SMART scopes of the Location paths.
func TestLocationAccessClassified(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/Location", "Location:s"},
		{"GET", "/Location/" + locP1, "Location:r"},
	} {
		acc, err := RequiredAccess(tc.method, tc.path, url.Values{}, "", nil)
		if err != nil || len(acc) != 1 || acc[0].Type+":"+acc[0].AnyString() != tc.want {
			t.Errorf("%s %s: %+v %v, want %s", tc.method, tc.path, acc, err, tc.want)
		}
	}
}
