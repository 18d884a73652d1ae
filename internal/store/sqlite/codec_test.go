package sqlite

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/reading"
)

var update = flag.Bool("update", false, "rewrite golden files")

var goldenComponents = []struct {
	name string
	cs   []reading.Component
}{
	{"blood pressure", []reading.Component{
		{Code: "8480-6", MDC: "MDC_PRESS_BLD_NONINV_SYS", Value: 120, Unit: "mm[Hg]"},
		{Code: "8462-4", MDC: "MDC_PRESS_BLD_NONINV_DIA", Value: 80, Unit: "mm[Hg]"},
	}},
	{"empty strings", []reading.Component{{Value: -0.5}}},
	{"unicode", []reading.Component{{Code: "µ", Unit: "°C", Value: 37.25}}},
}

func TestComponentsGolden(t *testing.T) {
	var buf bytes.Buffer
	for _, g := range goldenComponents {
		enc := encodeComponents(g.cs)
		fmt.Fprintf(&buf, "%s: %s\n", g.name, hex.EncodeToString(enc))
		dec, err := decodeComponents(enc)
		if err != nil {
			t.Fatalf("%s: decode: %v", g.name, err)
		}
		if diff := cmp.Diff(g.cs, dec); diff != "" {
			t.Fatalf("%s: round trip (-want +got):\n%s", g.name, diff)
		}
	}
	path := filepath.Join("testdata", "components.golden")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Fatalf("encoding changed; stored data would no longer decode (-golden +got):\n%s", diff)
	}
}

func TestDecodeComponentsRejects(t *testing.T) {
	valid := encodeComponents(goldenComponents[0].cs)
	tests := []struct {
		name string
		b    []byte
	}{
		{"unknown version", []byte{2, 0}},
		{"no count", []byte{1}},
		{"huge count", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"count beyond data", []byte{1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"string too long", []byte{1, 1, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"truncated", valid[:len(valid)-1]},
		{"trailing", append(append([]byte{}, valid...), 0)},
	}
	for _, tc := range tests {
		if cs, err := decodeComponents(tc.b); err == nil {
			t.Errorf("%s: decoded %v; want an error", tc.name, cs)
		}
	}
}

func FuzzDecodeComponents(f *testing.F) {
	for _, g := range goldenComponents {
		f.Add(encodeComponents(g.cs))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := decodeComponents(b)
		if err != nil {
			return
		}
		// Whatever decodes must survive a re-encode unchanged, down to the
		// bits of each value.
		again, err := decodeComponents(encodeComponents(cs))
		if err != nil {
			t.Fatalf("re-encoded components do not decode: %v", err)
		}
		if len(again) != len(cs) {
			t.Fatalf("re-encode changed the count: %d != %d", len(again), len(cs))
		}
		for i := range cs {
			a, b := cs[i], again[i]
			if a.Code != b.Code || a.MDC != b.MDC || a.Unit != b.Unit || math.Float64bits(a.Value) != math.Float64bits(b.Value) {
				t.Fatalf("component %d changed: %+v != %+v", i, a, b)
			}
		}
	})
}
