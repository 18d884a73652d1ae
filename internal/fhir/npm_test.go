package fhir_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/node"
)

// TestFHIRKitClient drives fhir-kit-client, a FHIR client library from npm,
// against a running node: create, conditional create, a transaction of 60
// Observations through the real commit path, refused input, paged search
// and $lastn.
func TestFHIRKitClient(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("skipped: node (Node.js) is not installed; CI installs it with the npm client (see .ci/run)")
	}
	// fhir-kit-client 2 uses the fetch API of Node.js 20 and later.
	if v, err := exec.Command(nodeBin, "-p", "process.versions.node.split('.')[0]").Output(); err != nil {
		t.Skipf("skipped: node --version failed: %v", err)
	} else if major, _ := strconv.Atoi(strings.TrimSpace(string(v))); major < 20 {
		t.Skipf("skipped: fhir-kit-client needs Node.js 20 or later, found %s", strings.TrimSpace(string(v)))
	}
	clientDir, _ := filepath.Abs(filepath.Join("testdata", "npm"))
	if _, err := os.Stat(filepath.Join(clientDir, "node_modules", "fhir-kit-client")); err != nil {
		t.Skipf("skipped: fhir-kit-client is not installed; run `npm ci` in %s (.ci/run does)", clientDir)
	}
	const token = "fhir-client-test-token-0123456789abcdef"
	dir := t.TempDir()
	n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "off",
		BootstrapToken: token, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	now := time.Now().UTC().Format(time.RFC3339)
	cmd := exec.CommandContext(ctx, nodeBin, "client.mjs", "http://"+n.Addrs().HTTP+"/fhir", token, now)
	cmd.Dir = clientDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, stderr.String())
	}
	var got struct {
		CreatedID, ConditionalID string
		TransactionType          string
		TransactionStatuses      []string
		BadTransaction           struct {
			Status     int
			Expression string
		}
		InvalidCreate struct {
			Status     int
			Expression string
		}
		Total, Pages, Seen, Unique int
		Lastn                      []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if got.CreatedID == "" || got.ConditionalID != got.CreatedID {
		t.Errorf("conditional create returned %q, want the created %q", got.ConditionalID, got.CreatedID)
	}
	if got.TransactionType != "transaction-response" || !slices.Equal(got.TransactionStatuses, []string{"201 Created"}) {
		t.Errorf("transaction: %s %v", got.TransactionType, got.TransactionStatuses)
	}
	if got.BadTransaction.Status != 422 || got.BadTransaction.Expression != "Bundle.entry[1].resource.code" {
		t.Errorf("bad transaction: %+v", got.BadTransaction)
	}
	if got.InvalidCreate.Status != 422 || got.InvalidCreate.Expression != "Observation.status" {
		t.Errorf("invalid create: %+v", got.InvalidCreate)
	}
	// 61 readings: the one create and the 60 of the transaction; nothing of
	// the refused transaction (its first entry was valid) was stored.
	if got.Total != 61 || got.Seen != 61 || got.Unique != 61 || got.Pages != 3 {
		t.Errorf("paged search: total %d, seen %d (%d unique) in %d pages; want 61 in 3", got.Total, got.Seen, got.Unique, got.Pages)
	}
	if !slices.Equal(got.Lastn, []string{"59408-5", "8867-4", "8867-4"}) {
		t.Errorf("$lastn codes = %v", got.Lastn)
	}
}
