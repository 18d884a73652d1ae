package senml

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzLimits are tighter than the defaults so the fuzzer reaches the limit
// checks, with MaxPast wide enough for absolute times to be accepted.
var fuzzLimits = Limits{MaxBytes: 4096, MaxRecords: 32, MaxFuture: DefaultLimits.MaxFuture, MaxPast: DefaultLimits.MaxPast}

// fuzzCheck holds for every input: no panic, every failure is an *Error,
// and whatever is accepted is a well-formed set of measurements.
func fuzzCheck(t *testing.T, ct string, data []byte) {
	ms, err := Decode(ct, data, testNow, fuzzLimits)
	if err != nil {
		var se *Error
		if !errors.As(err, &se) {
			t.Fatalf("error %T is not *senml.Error: %v", err, err)
		}
		if se.Error() == "" || se.Record < -1 {
			t.Fatalf("malformed error %#v", se)
		}
		return
	}
	checkAccepted(t, ms, testNow, fuzzLimits)
}

func FuzzDecodeJSON(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "cases", "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCheck(t, ContentTypeJSON, data)
		checkScannerAgainstStdlib(t, data)
	})
}

// checkScannerAgainstStdlib holds the hand-written JSON scanner to
// encoding/json: it must not accept invalid JSON, must not call valid JSON
// malformed, and must read the same field values.
func checkScannerAgainstStdlib(t *testing.T, data []byte) {
	recs, err := parseJSON(data, 1<<20)
	valid := json.Valid(data)
	if err != nil {
		var se *Error
		errors.As(err, &se)
		syntax := strings.HasPrefix(se.Msg, "payload is not valid JSON")
		if syntax && valid && utf8.Valid(data) {
			t.Fatalf("valid JSON rejected: %v", err)
		}
		return
	}
	if !valid {
		t.Fatalf("invalid JSON accepted: %q", data)
	}
	var std []map[string]any
	if err := json.Unmarshal(data, &std); err != nil {
		t.Fatalf("accepted what encoding/json cannot read as a pack: %v", err)
	}
	if len(std) != len(recs) {
		t.Fatalf("%d records, encoding/json sees %d", len(recs), len(std))
	}
	for i, m := range std {
		r := &recs[i]
		for label, v := range m {
			if sp := r.stringField(label); sp != nil {
				if *sp == nil || **sp != v {
					t.Fatalf("record %d %s: got %v, encoding/json %q", i, label, *sp, v)
				}
			} else if np := r.numberField(label); np != nil {
				if *np == nil || **np != v {
					t.Fatalf("record %d %s: got %v, encoding/json %v", i, label, *np, v)
				}
			} else if bp := r.boolField(label); bp != nil {
				if *bp == nil || **bp != v {
					t.Fatalf("record %d %s: got %v, encoding/json %v", i, label, *bp, v)
				}
			}
		}
	}
}

func FuzzDecodeCBOR(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "cases", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if cb, ok := jsonToCBOR(b); ok {
			f.Add(cb)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzCheck(t, ContentTypeCBOR, data) })
}
