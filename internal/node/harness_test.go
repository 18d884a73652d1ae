package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tendhealth/tend/internal/cli"
	"github.com/tendhealth/tend/internal/node"
)

// A child process started by the crash and scale-out tests runs `tend
// serve` through the same CLI code a user runs, or a NATS server.
func TestMain(m *testing.M) {
	switch os.Getenv("TEND_TEST_CHILD") {
	case "serve":
		os.Exit(cli.Run(append([]string{"serve"}, os.Args[1:]...), os.Stdout, os.Stderr))
	case "nats":
		runNATSChild()
	}
	os.Exit(m.Run())
}

const testToken = "test-admin-token-0123456789abcdef"

// startNode runs a node in-process on free ports.
func startNode(t *testing.T, dir string) (*node.Node, node.Addrs) {
	t.Helper()
	return startNodeLogging(t, dir, io.Discard)
}

// startNodeLogging is startNode with the node's log, at debug level, going
// to logs.
func startNodeLogging(t *testing.T, dir string, logs io.Writer) (*node.Node, node.Addrs) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MLLPAddr: "127.0.0.1:0",
		BootstrapToken: testToken, Logger: log, Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n, readListen(t, dir)
}

func readListen(t *testing.T, dir string) node.Addrs {
	t.Helper()
	var a node.Addrs
	b, err := os.ReadFile(filepath.Join(dir, "listen.json"))
	if err != nil {
		t.Fatalf("listen.json: %v", err)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("listen.json %q: %v", b, err)
	}
	return a
}

// api is a minimal HTTP client for the external contract.
type api struct {
	t     testing.TB
	base  string
	token string
}

func (c api) do(method, path, ctype string, body []byte) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// with returns c reporting to t (each subtest has its own).
func (c api) with(t testing.TB) api { c.t = t; return c }

// must runs a request that has to answer with status want and decodes JSON.
func (c api) must(want int, method, path, ctype string, body []byte) map[string]any {
	c.t.Helper()
	code, b := c.do(method, path, ctype, body)
	if code != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, b)
	}
	var m map[string]any
	if len(b) > 0 && (b[0] == '{' || b[0] == '[') && json.Unmarshal(b, &m) != nil {
		c.t.Fatalf("%s %s: not JSON: %s", method, path, b)
	}
	return m
}

type enrolled struct{ patient, device, secret string }

// enrol creates a patient and a device bound to it, and device credentials.
func enrol(c api, tag string) enrolled {
	c.t.Helper()
	p := c.must(201, "POST", "/fhir/Patient", "application/fhir+json", []byte(fmt.Sprintf(
		`{"resourceType":"Patient","identifier":[{"system":"urn:test","value":"%s"}],"name":[{"family":"Test","given":["%s"]}]}`, tag, tag)))
	pid := p["id"].(string)
	d := c.must(201, "POST", "/fhir/Device", "application/fhir+json", []byte(fmt.Sprintf(
		`{"resourceType":"Device","identifier":[{"system":"urn:test","value":"dev-%s"}],"manufacturer":"Acme","patient":{"reference":"Patient/%s"}}`, tag, pid)))
	did := d["id"].(string)
	cr := c.must(200, "POST", "/api/v1/devices/"+did+"/credentials", "", nil)
	if cr["device"] != did || cr["username"] != did || cr["secret"] == "" {
		c.t.Fatalf("credentials response %v", cr)
	}
	return enrolled{pid, did, cr["secret"].(string)}
}

// countObs returns the FHIR search total for a patient (and optional code).
func countObs(c api, patient, code string) int {
	c.t.Helper()
	q := "/fhir/Observation?patient=" + patient + "&_summary=count"
	if code != "" {
		q += "&code=http://loinc.org|" + code
	}
	m := c.must(200, "GET", q, "", nil)
	return int(m["total"].(float64))
}

// waitObs polls until the patient has at least want observations.
func waitObs(c api, patient string, want int) int {
	return waitObsFor(c, patient, want, 20*time.Second)
}

func waitObsFor(c api, patient string, want int, timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := countObs(c, patient, "")
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mqttConnect(t testing.TB, addr, user, pass string) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(user + "-" + fmt.Sprint(time.Now().UnixNano())).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetOrderMatters(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	return c, tok.Error()
}

func senmlHR(base time.Time, n int, hr float64) []byte {
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		us := base.UnixMicro() + int64(i)*10 // 10 µs apart: many readings stay within the future limit
		fmt.Fprintf(&b, `{"n":"8867-4","u":"/min","v":%g,"t":%d.%06d}`, hr+float64(i%50), us/1e6, us%1e6)
	}
	b.WriteString("]")
	return []byte(b.String())
}

func mustJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
}
