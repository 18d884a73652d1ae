package sim

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/mqtt"
)

// broker is Tend's own MQTT server with a device table and a counter in
// place of the ingest pipeline.
type broker struct {
	got atomic.Int64
}

func (b *broker) Authenticate(ctx context.Context, clientID, username string, password []byte) error {
	if username != "dev-1" || string(password) != "s3cret" {
		return errors.New("bad credentials")
	}
	return nil
}

func (b *broker) HandlePublish(ctx context.Context, m mqtt.Message) error {
	b.got.Add(1)
	return nil
}

func startBroker(t *testing.T, b *broker, addr string) *mqtt.Server {
	t.Helper()
	s := &mqtt.Server{Addr: addr, Auth: b, Handler: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var err error
	for range 50 { // the old listener's port may take a moment to free
		if err = s.Start(context.Background()); err == nil {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("start broker on %s: %v", addr, err)
	return nil
}

// A device whose connection drops reports what it cannot send, reconnects
// by itself and delivers again once the server is back.
func TestMQTTSenderReconnects(t *testing.T) {
	b := &broker{}
	srv := startBroker(t, b, "127.0.0.1:0")
	addr := srv.ListenAddr().String()
	snd := &MQTTSender{Addr: addr, Timeout: 2 * time.Second}
	defer snd.Close()
	dev := &Device{Kind: Monitor, ID: "dev-1", Secret: "s3cret"}
	ctx := context.Background()
	payload := []byte(`[{"n":"hr","u":"/min","v":70}]`)
	if err := snd.Send(ctx, dev, payload); err != nil {
		t.Fatalf("first send: %v", err)
	}
	srv.Close()
	var lost error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && lost == nil; {
		lost = snd.Send(ctx, dev, payload)
	}
	if lost == nil {
		t.Fatal("sends kept succeeding with the server down")
	}
	srv = startBroker(t, b, addr)
	defer srv.Close()
	before := b.got.Load()
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = snd.Send(ctx, dev, payload); err == nil {
			break
		}
	}
	if err != nil || b.got.Load() <= before {
		t.Fatalf("no delivery after the server came back: %v", err)
	}
}

func TestMQTTSenderBadSecret(t *testing.T) {
	b := &broker{}
	srv := startBroker(t, b, "127.0.0.1:0")
	defer srv.Close()
	snd := &MQTTSender{Addr: srv.ListenAddr().String(), Timeout: time.Second}
	defer snd.Close()
	err := snd.Send(context.Background(), &Device{ID: "dev-1", Secret: "wrong"}, []byte(`[]`))
	if err == nil || !strings.Contains(err.Error(), "dev-1") {
		t.Fatalf("error %v", err)
	}
}
