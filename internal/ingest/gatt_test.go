package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/gatt"
	"github.com/tendhealth/tend/internal/mqtt"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

func TestGATTContentType(t *testing.T) {
	for _, in := range []string{gatt.ContentType, gatt.ContentType + "; charset=utf-8"} {
		if got, err := canonicalContentType(in); err != nil || got != gatt.ContentType {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for in, want := range map[string]string{
		`{"uuid":"2A37","hex":"0048"}`:            gatt.ContentType,
		` [ {"t":1, "uuid":"2A37","hex":"0048"}]`: gatt.ContentType,
		`[{"n":"hr","v":60},{"uuid":"2A37"}]`:     "application/senml+json", // only the first object counts
		`[{"n":"uuid","v":60}]`:                   "application/senml+json", // a value, not a member
		`[{"bn":"x","u":"/min","n":"hr","v":60}]`: "application/senml+json",
	} {
		if got := sniffContentType([]byte(in)); got != want {
			t.Errorf("sniff %s: %q, want %q", in, got, want)
		}
	}
}

// TestGATTPipeline runs envelopes through the pipeline: readings are
// attributed and committed, a payload with no storable value is refused as
// 422 and kept, a malformed one as 400 and kept, and MQTT 3.1.1 (no content
// type) reaches the GATT decoder by sniffing.
func TestGATTPipeline(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	if err := st.CreatePatient(ctx, &store.Patient{ID: "p", Resource: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateDevice(ctx, &store.Device{ID: "dev", Patient: "p", Resource: []byte(`{}`)}, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	p := NewPipeline(st, rec, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	at := float64(now.Add(-time.Second).Unix())

	// Heart rate 72 with skin contact, and an SpO2 spot check 97 % / 64 /min.
	good := fmt.Sprintf(`[{"uuid":"2A37","hex":"0648","t":%g},{"uuid":"0x2a5e","base64":"AGEAQAA=","t":%g}]`, at, at)
	n, err := p.Ingest(ctx, Request{Source: "http", Device: "dev", ContentType: gatt.ContentType, Payload: []byte(good)})
	if err != nil || n != 4 {
		t.Fatalf("ingest: %d %v", n, err)
	}
	got := map[string]float64{}
	for _, r := range rec.rs {
		if r.Patient != "p" || r.Source != "http" || !r.Time.Equal(now.Add(-time.Second)) {
			t.Errorf("reading %+v", r)
		}
		got[r.Code] = r.Value
	}
	want := map[string]float64{codes.HeartRate: 72, codes.SensorOff: 0, codes.OxygenSaturation: 97, codes.PulseRate: 64}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("readings %v, want %v", got, want)
	}

	tests := []struct {
		name, payload string
		status        int
		reason        string
	}{
		{"only NaN", `{"uuid":"2A1C","hex":"00ffff7f00"}`, 422, "NaN"},
		{"truncated", `{"uuid":"2A35","hex":"00"}`, 400, "value ends before systolic"},
		{"unknown characteristic", `{"uuid":"2A19","hex":"64"}`, 400, "not supported"},
	}
	for _, tc := range tests {
		_, err := p.Ingest(ctx, Request{Source: "http", Device: "dev", ContentType: gatt.ContentType, Payload: []byte(tc.payload)})
		var rej *Rejection
		if !errors.As(err, &rej) || rej.Status != tc.status || !strings.Contains(rej.Reason, tc.reason) || rej.DeadLetter == 0 {
			t.Errorf("%s: %v, want %d with %q", tc.name, err, tc.status, tc.reason)
		}
	}
	ds, err := st.DeadLetters(ctx, 10, 0)
	if err != nil || len(ds) != len(tests) || ds[0].ContentType != gatt.ContentType {
		t.Fatalf("dead letters %+v %v", ds, err)
	}

	// MQTT 3.1.1 carries no content type: the envelope is recognised.
	rec.rs = nil
	a := MQTT{P: p}
	temp := fmt.Sprintf(`{"uuid":"2A1C","hex":"01da0300ff","t":%g}`, at) // 98.6 °F
	if err := a.HandlePublish(ctx, mqtt.Message{Username: "dev", Topic: "tend/v1/devices/dev/obs", Payload: []byte(temp), QoS: 1}); err != nil {
		t.Fatalf("mqtt: %v", err)
	}
	if len(rec.rs) != 1 || rec.rs[0].Code != codes.BodyTemperature || rec.rs[0].Value != 37 || rec.rs[0].Source != "mqtt" {
		t.Fatalf("mqtt readings %+v", rec.rs)
	}
}
