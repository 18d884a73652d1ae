package sim

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The first minutes of one ward and one home patient, payloads and ground
// truth, are fixed for a seed: a change to the model or the wire format
// shows up here (rewrite with -update when it is meant).
func TestGoldenStream(t *testing.T) {
	var truth bytes.Buffer
	_, r := run(t, Config{Patients: registered(1, 1, 10), Seed: 10, Duration: 2 * time.Minute, Truth: &truth,
		Scenarios: []ScenarioSpec{{Name: FallNoResponse, Share: 1, At: 30 * time.Second}}})
	var got strings.Builder
	for _, s := range r.stream() {
		got.WriteString(s + "\n")
	}
	got.WriteString("-- truth --\n")
	got.Write(truth.Bytes())
	path := filepath.Join("testdata", "stream.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("stream differs from %s (go test -run GoldenStream -update to accept):\n%s", path, got.String())
	}
}
