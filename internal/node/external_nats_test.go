package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/stream"
)

// TestExternalNATS runs a node against a separate NATS JetStream server (as
// with --nats-url) and checks that readings flow from device to FHIR.
func TestExternalNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	defer ns.Shutdown()

	dir := t.TempDir()
	n := node.New(node.Config{DataDir: dir, NATSReplicas: 1, HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "off",
		NATSURLs: []string{ns.ClientURL()}, BootstrapToken: testToken,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	defer n.Close()
	if a := readListen(t, dir); a.MQTT != "" || a.MLLP != "" {
		t.Fatalf("disabled listeners in listen.json: %+v", a)
	}
	c := api{t: t, base: "http://" + n.Addrs().HTTP, token: testToken}
	c.must(200, "GET", "/readyz", "", nil)
	e := enrol(c, "ext")
	ts := time.Now().Add(time.Second).Unix()
	time.Sleep(time.Until(time.Unix(ts, 0)))
	dev := api{t: t, base: c.base, token: e.secret}
	dev.must(202, "POST", "/api/v1/devices/"+e.device+"/obs", "application/senml+json",
		[]byte(fmt.Sprintf(`[{"bt":%d,"n":"hr","v":61},{"n":"rr","v":14}]`, ts)))
	if got := waitObs(c, e.patient, 2); got != 2 {
		t.Fatalf("stored %d readings through the external stream, want 2", got)
	}
	// The readings went through the external server, not an embedded one.
	if _, err := os.Stat(filepath.Join(dir, "stream")); !os.IsNotExist(err) {
		t.Fatalf("an embedded stream directory exists in external mode: %v", err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), stream.StreamName)
	if err != nil {
		t.Fatalf("stream %s not on the external server: %v", stream.StreamName, err)
	}
	if st.CachedInfo().State.LastSeq == 0 {
		t.Fatal("the external stream received no message")
	}
}
