package api

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// getJSON returns the body of a successful admin GET, pretty-printed.
func (f *alarmFixture) getJSON(t *testing.T, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestGoldenAlarmDocument(t *testing.T) {
	f := newAlarmFixture(t)
	a := f.raise(t, "p1", "spo2-low", rules.PriorityMedium)
	f.advance(time.Minute)
	f.do(t, "POST", "/api/v1/alarms/"+a.ID+"/ack", adminTok, "application/json", `{"reason":"at the bedside"}`)
	golden(t, "alarm.json", f.getJSON(t, "/api/v1/alarms/"+a.ID))
}

func TestGoldenNEWS2(t *testing.T) {
	f := newAlarmFixture(t)
	now := f.clock()
	var rs []reading.Reading
	for code, v := range map[string]float64{codes.RespiratoryRate: 22, codes.OxygenSaturation: 95, codes.HeartRate: 88,
		codes.BodyTemperature: 38.4, codes.InhaledO2Flow: 2, codes.ACVPU: 0} {
		rs = append(rs, reading.Reading{Patient: "p1", Device: "d1", Code: code, Value: v, HasValue: true, Unit: "1", Time: now.Add(-time.Minute), Received: now, Source: "test"})
	}
	if _, err := f.st.Append(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	golden(t, "news2.json", f.getJSON(t, "/api/v1/patients/p1/news2"))
}

// TestGoldenStream records the exact bytes of a stream: preamble, two
// events, and the error event that ends it.
func TestGoldenStream(t *testing.T) {
	f := newAlarmFixture(t)
	c := connect(t, f, "?patient=p1", adminTok)
	f.hub.Publish(live.Event{Type: live.TypeReading, Patient: "p1", Data: []byte(`{"patient":"p1","code":"8867-4","value":72}`)})
	f.hub.Publish(live.Event{Type: live.TypeReading, Patient: "p2", Data: []byte(`{"patient":"p2"}`)})
	f.hub.Publish(live.Event{Type: live.TypeAlarm, Patient: "p1", Data: []byte(`{"id":"a1","state":"active"}`)})
	f.hub.Close()
	rest, err := io.ReadAll(c.r)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "stream.txt", append([]byte(": tend live stream\nretry: 3000\n\n"), rest...))
}
