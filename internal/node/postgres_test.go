package node_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store/postgres"
	"github.com/tendhealth/tend/internal/store/postgres/pgtest"
)

// TestPostgresStore runs a node on the machine's PostgreSQL (--store
// postgres://…): devices are registered, readings ingested over HTTP and
// read back over FHIR, a fall raises an alarm kept in PostgreSQL, and a
// restart finds everything again.
func TestPostgresStore(t *testing.T) {
	url := pgtest.Schema(t, postgres.Redact)
	dir := t.TempDir()
	start := func() (*node.Node, api) {
		n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "off", StoreURL: url,
			BootstrapToken: testToken, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
		if err := n.Start(context.Background()); err != nil {
			t.Fatalf("start node on PostgreSQL: %v", err)
		}
		return n, api{t: t, base: "http://" + readListen(t, dir).HTTP, token: testToken}
	}
	n, c := start()
	e := enrol(c, "pg")
	req, _ := http.NewRequest("POST", c.base+"/api/v1/devices/"+e.device+"/obs", strings.NewReader(`[{"n":"hr","u":"/min","v":71},{"n":"spo2","u":"%","v":98},{"n":"fall","v":1}]`))
	req.Header.Set("Authorization", "Bearer "+e.secret)
	req.Header.Set("Content-Type", "application/senml+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 202 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("ingest: %d %s", resp.StatusCode, b)
	}
	if got := waitObs(c, e.patient, 3); got != 3 {
		t.Fatalf("%d observations stored in PostgreSQL, want 3", got)
	}
	waitFor(t, "the fall alarm", func() bool {
		return len(c.must(200, "GET", "/api/v1/alarms?patient="+e.patient+"&state=active", "", nil)["alarms"].([]any)) == 1
	})
	n.Close()

	n, c = start()
	defer n.Close()
	if got := countObs(c, e.patient, "8867-4"); got != 1 {
		t.Fatalf("after restart: %d heart-rate observations, want 1", got)
	}
	if as := c.must(200, "GET", "/api/v1/alarms?patient="+e.patient, "", nil)["alarms"].([]any); len(as) != 1 {
		t.Fatalf("after restart: %d alarms, want the one fall alarm", len(as))
	}
}
