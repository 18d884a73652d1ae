package node_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store/postgres"
	"github.com/tendhealth/tend/internal/store/postgres/pgtest"
	"github.com/tendhealth/tend/internal/stream/natstest"
)

// TestLiveAcrossNodes: two nodes share a NATS server and PostgreSQL; each
// node's live stream shows the readings and alarms of a patient whose
// reading arrived at the other node, whichever node stored or evaluated it.
func TestLiveAcrossNodes(t *testing.T) {
	url := pgtest.Schema(t, postgres.Redact)
	ns := natstest.StartServer(t)
	var bases []string
	for range 2 {
		dir := t.TempDir()
		n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "off", StoreURL: url,
			NATSURLs: []string{ns.ClientURL()}, NATSReplicas: 1, BootstrapToken: testToken,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
		if err := n.Start(context.Background()); err != nil {
			t.Fatalf("start node: %v", err)
		}
		t.Cleanup(func() { n.Close() })
		bases = append(bases, "http://"+readListen(t, dir).HTTP)
	}
	c := api{t: t, base: bases[0], token: testToken}
	e := enrol(c, "live")
	var streams []<-chan string
	for _, b := range bases {
		streams = append(streams, sseEvents(t, b, "?patient="+e.patient))
	}
	dev := api{t: t, base: bases[1], token: e.secret}
	dev.must(202, "POST", "/api/v1/devices/"+e.device+"/obs", "application/senml+json", []byte(`[{"n":"fall","v":1}]`))
	for i, s := range streams {
		var got []string
		deadline := time.After(10 * time.Second)
		for !(contains(got, "reading ") && contains(got, "alarm ")) {
			select {
			case ev := <-s:
				got = append(got, ev)
			case <-deadline:
				t.Fatalf("node %d's live stream after 10 s: %q; want the reading and the fall alarm", i, got)
			}
		}
	}
}

func contains(evs []string, prefix string) bool {
	for _, e := range evs {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}
