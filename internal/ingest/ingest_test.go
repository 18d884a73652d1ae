package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/mqtt"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

func TestPatientAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hist := []store.Binding{
		{Patient: "a", From: t0, To: t0.Add(time.Hour)},
		{Patient: "b", From: t0.Add(2 * time.Hour)},
	}
	tests := []struct {
		at   time.Time
		want string
	}{
		{t0.Add(-time.Nanosecond), ""},
		{t0, "a"},
		{t0.Add(time.Hour - time.Nanosecond), "a"},
		{t0.Add(time.Hour), ""}, // To is exclusive; gap before b
		{t0.Add(2 * time.Hour), "b"},
		{t0.Add(1000 * time.Hour), "b"},
	}
	for _, tc := range tests {
		if got := patientAt(hist, tc.at); got != tc.want {
			t.Errorf("at %s: %q, want %q", tc.at, got, tc.want)
		}
	}
}

func TestContentTypes(t *testing.T) {
	for in, want := range map[string]string{
		"application/senml+json":                "application/senml+json",
		"application/senml+json; charset=utf-8": "application/senml+json",
		"application/json":                      "application/senml+json",
		"application/senml+cbor":                "application/senml+cbor",
		"":                                      "",
	} {
		if got, err := canonicalContentType(in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"text/plain", "application/xml", ";;;"} {
		if _, err := canonicalContentType(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for in, want := range map[string]string{
		` [{"n":"hr"}]`: "application/senml+json",
		`{"n":"hr"}`:    "application/senml+json",
		"\x81\xa2":      "application/senml+cbor",
		"":              "application/senml+cbor",
	} {
		if got := sniffContentType([]byte(in)); got != want {
			t.Errorf("sniff %q: %q, want %q", in, got, want)
		}
	}
}

type recorder struct{ rs []reading.Reading }

func (r *recorder) Commit(ctx context.Context, rs []reading.Reading) error {
	r.rs = append(r.rs, rs...)
	return nil
}

// TestAttributionFollowsBindingHistory checks that readings go to the
// patient bound at each reading's time, that a payload with any reading
// outside a binding is refused whole, and that refusals are dead-lettered.
func TestAttributionFollowsBindingHistory(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	t1, t2 := now.Add(-2*time.Hour), now.Add(-time.Hour)
	for _, id := range []string{"alice", "bob"} {
		if err := st.CreatePatient(ctx, &store.Patient{ID: id, Resource: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	d := &store.Device{ID: "dev", Patient: "alice", Resource: []byte(`{}`)}
	if err := st.CreateDevice(ctx, d, t1); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	p := NewPipeline(st, rec, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	// Warm the binding cache, then rebind: InvalidateDevice must drop it.
	if _, err := p.history(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	d.Patient = "bob"
	if err := st.UpdateDevice(ctx, d, t2); err != nil {
		t.Fatal(err)
	}
	p.InvalidateDevice("dev")

	payload := fmt.Sprintf(`[{"n":"hr","v":60,"t":%d},{"n":"hr","v":61,"t":%d}]`, t1.Add(time.Minute).Unix(), t2.Add(time.Minute).Unix())
	n, err := p.Ingest(ctx, Request{Source: "test", Device: "dev", ContentType: "application/senml+json", Payload: []byte(payload)})
	if err != nil || n != 2 {
		t.Fatalf("ingest: %d %v", n, err)
	}
	if rec.rs[0].Patient != "alice" || rec.rs[1].Patient != "bob" {
		t.Fatalf("attribution: %s, %s", rec.rs[0].Patient, rec.rs[1].Patient)
	}

	before := fmt.Sprintf(`[{"n":"hr","v":60,"t":%d},{"n":"hr","v":62,"t":%d}]`, t1.Add(-time.Minute).Unix(), t2.Add(2*time.Minute).Unix())
	_, err = p.Ingest(ctx, Request{Source: "test", Device: "dev", ContentType: "application/senml+json", Payload: []byte(before)})
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Status != 422 || rej.DeadLetter == 0 || len(rec.rs) != 2 {
		t.Fatalf("reading before any binding: %v (committed %d)", err, len(rec.rs))
	}
	_, err = p.Ingest(ctx, Request{Source: "test", Device: "ghost", ContentType: "application/senml+json", Payload: []byte(payload)})
	if !errors.As(err, &rej) || rej.Status != 404 {
		t.Fatalf("unknown device: %v", err)
	}
	ds, err := st.DeadLetters(ctx, 10, 0)
	if err != nil || len(ds) != 2 || ds[0].Device != "ghost" || ds[1].Reason == "" {
		t.Fatalf("dead letters: %+v %v", ds, err)
	}
}

func TestMQTTTopicsAndRejections(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now().UTC()
	st.CreatePatient(ctx, &store.Patient{ID: "p", Resource: []byte(`{}`)})
	if err := st.CreateDevice(ctx, &store.Device{ID: "dev", Patient: "p", Resource: []byte(`{}`)}, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	a := MQTT{P: NewPipeline(st, rec, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)}
	good := []byte(`[{"n":"spo2","u":"%","v":95}]`)
	tests := []struct {
		name, topic string
		payload     []byte
		code        byte // 0 = accepted
	}{
		{"own obs topic", "tend/v1/devices/dev/obs", good, 0},
		{"another device", "tend/v1/devices/other/obs", good, 0x87},
		{"prefix trick", "tend/v1/devices/dev2/obs", good, 0x87},
		{"own unknown subtopic", "tend/v1/devices/dev/status", good, 0x90},
		{"outside the tree", "hello", good, 0x87},
		{"bad payload", "tend/v1/devices/dev/obs", []byte(`[{"n":"spo2","v":"x"}]`), 0x99},
	}
	for _, tc := range tests {
		err := a.HandlePublish(ctx, mqtt.Message{Username: "dev", Topic: tc.topic, Payload: tc.payload, QoS: 1})
		var rej *mqtt.RejectError
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.code != 0 && (!errors.As(err, &rej) || rej.Code != tc.code):
			t.Errorf("%s: %v, want reject code %#x", tc.name, err, tc.code)
		}
	}
	if len(rec.rs) != 1 || rec.rs[0].Value != 95 {
		t.Fatalf("committed %+v", rec.rs)
	}
	ds, _ := st.DeadLetters(ctx, 100, 0)
	if len(ds) != len(tests)-1 {
		t.Fatalf("dead letters %d, want %d", len(ds), len(tests)-1)
	}
	if err := a.Authenticate(ctx, "c", "dev", []byte("x")); !errors.Is(err, mqtt.ErrBadCredentials) {
		t.Fatalf("device without a secret: %v", err)
	}
	// Ids with MQTT or NATS wildcards or separators are refused even if a
	// store (say, an old import) held such a device with a valid secret.
	for _, id := range []string{"+", "#", "dev/x", "dev.x", "*", ">"} {
		if err := st.CreateDevice(ctx, &store.Device{ID: id, Resource: []byte(`{}`)}, now); err != nil {
			t.Fatal(err)
		}
		if err := st.SetDeviceSecret(ctx, id, auth.HashSecret("s3cret")); err != nil {
			t.Fatal(err)
		}
		if err := a.Authenticate(ctx, "c", id, []byte("s3cret")); !errors.Is(err, mqtt.ErrBadCredentials) {
			t.Errorf("device id %q: %v, want bad credentials", id, err)
		}
	}
}
