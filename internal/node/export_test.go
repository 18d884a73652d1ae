package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store/postgres"
	"github.com/tendhealth/tend/internal/store/postgres/pgtest"
)

// TestExportImport moves an embedded installation killed with SIGKILL to
// PostgreSQL: every acknowledged reading, the registry with its binding
// history, device credentials, the admin token, dead letters, alarms with
// their history, rule overrides and webhooks arrive, and a node on the new
// store carries on with them.
func TestExportImport(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a server; skipped with -short")
	}
	pgURL := pgtest.Schema(t, postgres.Redact)
	dir := t.TempDir()
	cmd, addrs := serveChild(t, dir)
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	a, b := enrol(c, "exp-a"), enrol(c, "exp-b")
	dev := api{t: t, base: c.base, token: a.secret}
	base := time.Now().Add(time.Second).Truncate(time.Second)
	time.Sleep(time.Until(base))
	const batches, perBatch = 20, 50
	for i := range batches {
		dev.must(202, "POST", "/api/v1/devices/"+a.device+"/obs", "application/senml+json", senmlHR(base.Add(time.Duration(i)*time.Millisecond), perBatch, 70))
	}
	dev.must(202, "POST", "/api/v1/devices/"+a.device+"/obs", "application/senml+json", []byte(`[{"n":"fall","v":1}]`))
	dev.do("POST", "/api/v1/devices/"+a.device+"/obs", "application/senml+json", []byte(`[{"n":"no-such-code","v":1}]`)) // a dead letter
	c.must(200, "PUT", "/api/v1/patients/"+a.patient+"/rules?reason=export+test", "application/json",
		[]byte(`{"setting":"home","rules":[]}`))
	c.must(201, "POST", "/api/v1/webhooks", "application/json", []byte(`{"url":"http://127.0.0.1:9/alarms"}`))
	// Move b's device to a: a binding history with two entries.
	c.must(200, "PUT", "/fhir/Device/"+b.device, "application/fhir+json", []byte(fmt.Sprintf(
		`{"resourceType":"Device","id":"%s","identifier":[{"system":"urn:test","value":"dev-exp-b"}],"patient":{"reference":"Patient/%s"}}`, b.device, a.patient)))
	waitFor(t, "the fall alarm", func() bool {
		m := c.must(200, "GET", "/api/v1/alarms?patient="+a.patient, "", nil)
		return len(m["alarms"].([]any)) == 1
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var file bytes.Buffer
	exported, err := node.Export(context.Background(), node.Config{DataDir: dir, Logger: quiet}, &file)
	if err != nil {
		t.Fatal(err)
	}
	if exported.Readings < batches*perBatch+1 || exported.Patients != 2 || exported.Devices != 2 || exported.Alarms != 1 ||
		exported.DeadLetters != 1 || exported.Webhooks != 1 || exported.Documents != 1 || exported.Tokens != 1 {
		t.Fatalf("exported %+v", exported)
	}
	imported, err := node.Import(context.Background(), node.Config{StoreURL: pgURL, Logger: quiet}, bytes.NewReader(file.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if imported != exported {
		t.Fatalf("imported %+v, exported %+v", imported, exported)
	}
	if _, err := node.Import(context.Background(), node.Config{StoreURL: pgURL, Logger: quiet}, bytes.NewReader(file.Bytes())); err == nil ||
		!strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second import into the same store: %v, want a refusal", err)
	}

	// A node on the new store: same data, same credentials.
	pgDir := t.TempDir()
	n := node.New(node.Config{DataDir: pgDir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "off", StoreURL: pgURL,
		Logger: quiet, Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	pc := api{t: t, base: "http://" + readListen(t, pgDir).HTTP, token: testToken} // the token came along
	if got := countObs(pc, a.patient, "8867-4"); got != batches*perBatch {
		t.Errorf("heart rates after import: %d, want every acknowledged one (%d)", got, batches*perBatch)
	}
	m := pc.must(200, "GET", "/api/v1/alarms?patient="+a.patient, "", nil)
	as := m["alarms"].([]any)
	if len(as) != 1 {
		t.Fatalf("alarms after import: %v", as)
	}
	got := pc.must(200, "GET", "/api/v1/alarms/"+as[0].(map[string]any)["id"].(string), "", nil)
	if h, _ := got["history"].([]any); len(h) == 0 {
		t.Errorf("alarm history lost: %v", got)
	}
	rules := pc.must(200, "GET", "/api/v1/patients/"+a.patient+"/rules/history", "", nil)
	if !strings.Contains(fmt.Sprint(rules), "export test") {
		t.Errorf("rule override history lost: %v", rules)
	}
	// b's device still authenticates and now feeds patient a.
	before := countObs(pc, a.patient, "")
	pdev := api{t: t, base: pc.base, token: b.secret}
	pdev.must(202, "POST", "/api/v1/devices/"+b.device+"/obs", "application/senml+json", []byte(`[{"n":"8867-4","u":"/min","v":88}]`))
	if got := waitObsFor(pc, a.patient, before+1, 20*time.Second); got != before+1 {
		t.Errorf("reading from the re-bound device not stored for its new patient: %d", got)
	}
}
