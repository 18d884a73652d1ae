package pcd

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tendhealth/tend/internal/hl7"
)

// FuzzParseORU maps arbitrary messages as PCD-01 and PCD-04: no panic, and
// every reading it returns is finite, has a code, a unit and a time.
func FuzzParseORU(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "fuzz-seeds", "*.hl7"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := hl7.Parse(data)
		if err != nil {
			return
		}
		rep, errs := ParseORU(m, now, DefaultLimits)
		if len(errs) == 0 {
			for _, r := range rep.Readings {
				if r.Code == "" || r.Unit == "" || r.Time.IsZero() || !r.Valid() || math.IsNaN(r.Value) {
					t.Fatalf("bad reading %+v", r)
				}
				if r.Patient >= len(rep.Patients) {
					t.Fatalf("reading names patient %d of %d", r.Patient, len(rep.Patients))
				}
			}
		}
		ParseAlarms(m, now, DefaultLimits)
	})
}
