package reading

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sampleReadings() []Reading {
	t0 := time.Date(2026, 3, 1, 8, 30, 0, 123456789, time.UTC)
	return []Reading{
		{
			Patient: "p-1", Device: "oxi-7", Code: "59408-5", MDC: "150456",
			Value: 97, HasValue: true, Unit: "%", Time: t0, Received: t0.Add(40 * time.Millisecond), Source: "mqtt",
		},
		{
			Patient: "p-1", Device: "bp-2", Code: "85354-9", Unit: "mm[Hg]", Time: t0, Received: t0, Source: "http",
			Components: []Component{
				{Code: "8480-6", MDC: "150021", Value: 120.5, Unit: "mm[Hg]"},
				{Code: "8462-4", MDC: "150022", Value: -0.25, Unit: "mm[Hg]"},
			},
		},
	}
}

func TestBatchRoundTrip(t *testing.T) {
	long := strings.Repeat("é", 300) // multi-byte length prefix, non-ASCII
	tests := []struct {
		name string
		in   []Reading
	}{
		{"empty", []Reading{}},
		{"sample", sampleReadings()},
		{"zero reading", []Reading{{}}},
		{"zero times, value zero but set", []Reading{{Device: "d", Code: "c", HasValue: true}}},
		{"negative and pre-epoch time", []Reading{{Code: "c", HasValue: true, Value: -1e300, Time: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)}}},
		{"long strings", []Reading{{Patient: long, Device: long, Code: long, MDC: long, Unit: long, Source: long, HasValue: true, Value: 1}}},
		{"many", func() []Reading {
			var rs []Reading
			for i := 0; i < 1000; i++ {
				rs = append(rs, sampleReadings()...)
			}
			return rs
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeBatch(EncodeBatch(tt.in))
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if diff := cmp.Diff(tt.in, got); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBatchTimesDecodeAsUTC(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	in := []Reading{{Code: "c", HasValue: true, Time: time.Date(2026, 1, 1, 1, 0, 0, 0, loc)}}
	got, err := DecodeBatch(EncodeBatch(in))
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Time.Equal(in[0].Time) || got[0].Time.Location() != time.UTC {
		t.Fatalf("time = %v, want %v in UTC", got[0].Time, in[0].Time)
	}
}

// TestBatchGolden pins the version 1 wire format: messages already in a
// stream must stay readable after any change to this file.
func TestBatchGolden(t *testing.T) {
	path := filepath.Join("testdata", "batch_v1.hex")
	enc := EncodeBatch(sampleReadings())
	if *update {
		if err := os.WriteFile(path, []byte(hex.EncodeToString(enc)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", enc, want)
	}
	got, err := DecodeBatch(want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleReadings(), got); diff != "" {
		t.Fatalf("golden decode (-want +got):\n%s", diff)
	}
}

func TestDecodeBatchRejects(t *testing.T) {
	good := EncodeBatch(sampleReadings())
	nan := EncodeBatch([]Reading{{Code: "c", HasValue: true, Value: 1}})
	// Value sits right after 6 empty-ish strings and the flags byte.
	idx := bytes.Index(nan, []byte{0, 0, 0, 0, 0, 0xf0, 0x3f})
	if idx < 0 {
		t.Fatal("test setup: value bytes not found")
	}
	nan = append([]byte(nil), nan...)
	copy(nan[idx:], []byte{1, 0, 0, 0, 0, 0xf8, 0x7f}) // a NaN bit pattern

	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"unknown version", append([]byte{2}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"huge count", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"huge string", []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"unknown flags", []byte{1, 1, 0, 0, 0, 0, 0, 0, 0x80, 0}},
		{"huge components", []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x03}},
		{"nan", nan},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := DecodeBatch(tt.in)
			if err == nil {
				t.Fatalf("DecodeBatch accepted bad input, got %d readings", len(rs))
			}
			if !errors.Is(err, ErrBatch) {
				t.Fatalf("error %v does not wrap ErrBatch", err)
			}
		})
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(EncodeBatch(sampleReadings()))
	f.Add(EncodeBatch(nil))
	f.Add(EncodeBatch([]Reading{{}}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := DecodeBatch(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to an equivalent batch.
		again, err := DecodeBatch(EncodeBatch(rs))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := cmp.Diff(rs, again); diff != "" {
			t.Fatalf("re-encode changed readings:\n%s", diff)
		}
	})
}

func BenchmarkEncodeBatch(b *testing.B) {
	rs := benchReadings(4096)
	b.ReportAllocs()
	for b.Loop() {
		EncodeBatch(rs)
	}
	b.ReportMetric(float64(len(rs)*b.N)/b.Elapsed().Seconds(), "readings/s")
}

func BenchmarkDecodeBatch(b *testing.B) {
	enc := EncodeBatch(benchReadings(4096))
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBatch(enc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(4096*b.N)/b.Elapsed().Seconds(), "readings/s")
}

func benchReadings(n int) []Reading {
	s := sampleReadings()
	rs := make([]Reading, n)
	for i := range rs {
		rs[i] = s[i%len(s)]
	}
	return rs
}
