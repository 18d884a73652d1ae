package hl7

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to the parser and the ACK builders: they
// must never panic, every accepted message's values must be reachable, and
// every ACK must itself parse.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{filepath.Join("testdata", "fuzz-seeds"), filepath.Join("..", "..", "..", "shared", "testdata", "hl7")} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.hl7"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(sample))
	now := time.Unix(0, 0).UTC()
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			ack := AckUnparsed(data, AR, []*Error{{Msg: err.Error()}}, "F", now)
			if _, perr := Parse(ack); perr != nil {
				t.Fatalf("ACK of refused input does not parse: %v\n%q", perr, ack)
			}
			return
		}
		for i := range m.Segments {
			s := &m.Segments[i]
			for n := 1; n <= s.Fields(); n++ {
				for r := 1; r <= s.Reps(n)+1; r++ {
					_ = s.Get(n, r, 1, 1)
					_ = s.Get(n, r, 2, 2)
				}
			}
		}
		_ = m.Header()
		ack := Ack(m, AE, []*Error{{Segment: "OBX", Sequence: 1, Field: 5, Code: ErrDataType, Msg: string(data[:min(len(data), 40)])}}, "F", now)
		if _, perr := Parse(ack); perr != nil {
			t.Fatalf("ACK does not parse: %v\n%q", perr, ack)
		}
	})
}
