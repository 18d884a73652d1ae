package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/certs"
	"github.com/tendhealth/tend/internal/httpguard"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/tlsconf"
)

// TestTLSEverywhere runs a node with a development certificate and talks
// to every listener over TLS with real clients: curl for HTTPS,
// mosquitto_pub for MQTT over TLS (with and without a client certificate)
// and a Go TLS client for MLLP.
func TestTLSEverywhere(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	set, err := certs.Dev(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Write(certDir, false); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(certDir, certs.CAFile)
	data := filepath.Join(dir, "data")
	n := node.New(node.Config{DataDir: data, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MLLPAddr: "127.0.0.1:0",
		MQTTTLSAddr: "127.0.0.1:0", BootstrapToken: testToken,
		TLS: tlsconf.Files{CertFile: filepath.Join(certDir, certs.ServerFile), KeyFile: filepath.Join(certDir, certs.ServerKeyFile),
			ClientCAFile: caFile},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	addrs := readListen(t, data)
	if addrs.MQTTTLS == "" || addrs.MQTT == "" || addrs.HTTP == "" || addrs.MLLP == "" {
		t.Fatalf("listen.json %+v: want http, mqtt, mqtt_tls and mllp", addrs)
	}
	raw, _ := os.ReadFile(filepath.Join(data, "listen.json"))
	if !bytes.Contains(raw, []byte(`"mqtt_tls":`)) {
		t.Fatalf("listen.json %s has no mqtt_tls", raw)
	}

	call := httpsAdmin(t, set.CA.Cert, addrs.HTTP)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(set.CA.Cert)

	// Plain HTTP on the HTTPS port is refused.
	if resp, err := http.Get("http://" + addrs.HTTP + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200 on the HTTPS listener")
		}
	}

	t.Run("curl over HTTPS", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("curl not installed")
		}
		out, err := exec.Command("curl", "-sS", "-D", "-", "--cacert", caFile, "https://localhost:"+port(addrs.HTTP)+"/healthz").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		s := string(out)
		if !strings.Contains(s, "ok") || !strings.Contains(strings.ToLower(s), "strict-transport-security: max-age=") {
			t.Fatalf("curl got:\n%s", s)
		}
		// Without the CA curl refuses the certificate.
		if err := exec.Command("curl", "-sS", "https://localhost:"+port(addrs.HTTP)+"/healthz").Run(); err == nil {
			t.Fatal("curl trusted the development certificate without --cacert")
		}
	})

	p := call("POST", "/fhir/Patient", "application/fhir+json", `{"resourceType":"Patient","name":[{"family":"Tls"}]}`, 201)
	pid := p["id"].(string)
	d := call("POST", "/fhir/Device", "application/fhir+json", `{"resourceType":"Device","manufacturer":"Acme","patient":{"reference":"Patient/`+pid+`"}}`, 201)
	did := d["id"].(string)
	secret := call("POST", "/api/v1/devices/"+did+"/credentials", "", "", 200)["secret"].(string)
	count := func() int {
		m := call("GET", "/fhir/Observation?patient="+pid+"&_summary=count", "", "", 200)
		return int(m["total"].(float64))
	}
	waitCount := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for count() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d observations, want %d", count(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("mosquitto_pub over MQTT-TLS", func(t *testing.T) {
		if _, err := exec.LookPath("mosquitto_pub"); err != nil {
			t.Skip("mosquitto_pub not installed (apt-get install mosquitto-clients)")
		}
		for i, extra := range [][]string{
			nil, // server authentication only; the device secret authenticates the device
			{"--cert", filepath.Join(certDir, certs.ClientFile), "--key", filepath.Join(certDir, certs.ClientKeyFile)}, // mutual TLS
		} {
			args := append([]string{"-h", "localhost", "-p", port(addrs.MQTTTLS), "--cafile", caFile, "-q", "1",
				"-u", did, "-P", secret, "-t", "tend/v1/devices/" + did + "/obs",
				// Now, not a whole second: the device was bound a moment ago.
				"-m", fmt.Sprintf(`[{"bt":%.3f,"n":"hr","u":"/min","v":%d}]`, float64(time.Now().UnixMilli())/1000, 70+i)}, extra...)
			if out, err := exec.Command("mosquitto_pub", args...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub %v: %v\n%s", extra, err, out)
			}
			waitCount(i + 1)
		}
		// A wrong secret is still refused over TLS.
		out, err := exec.Command("mosquitto_pub", "-h", "localhost", "-p", port(addrs.MQTTTLS), "--cafile", caFile, "-q", "1",
			"-u", did, "-P", "wrong", "-t", "tend/v1/devices/"+did+"/obs", "-m", "[]").CombinedOutput()
		if err == nil {
			t.Fatalf("wrong secret accepted over TLS: %s", out)
		}
	})

	t.Run("MLLP over TLS", func(t *testing.T) {
		// With --tls-client-ca, MLLP senders must present a certificate.
		clientCert, err := tls.X509KeyPair(set.Client.Cert, set.Client.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", addrs.MLLP, &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{clientCert}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := "MSH|^~\\&|LAB|H|||20260101120000||ORM^O01|TLS-1|P|2.5\rPID|||X\r"
		c.Write([]byte("\x0b" + msg + "\x1c\r"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		ack, err := bufio.NewReader(c).ReadString('\x1c')
		if err != nil {
			t.Fatalf("no ACK over TLS: %v", err)
		}
		if !strings.Contains(ack, "MSA|") || !strings.Contains(ack, "TLS-1") {
			t.Fatalf("ACK %q", ack)
		}
		// Plain MLLP on the TLS port is never acknowledged.
		pc, err := net.Dial("tcp", addrs.MLLP)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		pc.Write([]byte("\x0b" + msg + "\x1c\r"))
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(pc)
		if bytes.Contains(b, []byte("MSA|")) {
			t.Fatal("plain MLLP acknowledged on the TLS listener")
		}
	})
}

func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// TestHTTPGuardWired checks the node puts the guard in front of every
// route: headers on API answers, the per-client limit with a problem
// answer, and health checks and device ingest outside that budget.
func TestHTTPGuardWired(t *testing.T) {
	dir := t.TempDir()
	n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: node.Off, MLLPAddr: node.Off,
		BootstrapToken: testToken, HTTPGuard: httpguard.Config{API: httpguard.Limit{Rate: 0.001, Burst: 8}, LimitLoopback: true},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	c := api{t: t, base: "http://" + readListen(t, dir).HTTP, token: testToken}
	e := enrol(c, "guard") // 3 requests of the budget of 8
	resp, err := http.Get(c.base + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Content-Security-Policy"); got != "default-src 'none'; frame-ancestors 'none'" {
		t.Fatalf("API CSP %q", got)
	}
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS over plain HTTP")
	}
	limited := false
	for range 10 {
		code, body := c.do("GET", "/fhir/Patient?_count=1", "", nil)
		if code == http.StatusTooManyRequests {
			if !bytes.Contains(body, []byte(`"status":429`)) {
				t.Fatalf("429 body %s", body)
			}
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("no 429 after the burst")
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := c.do("GET", p, "", nil); code != 200 {
			t.Fatalf("%s while limited: %d", p, code)
		}
	}
	dev := api{t: t, base: c.base, token: e.secret}
	if code, body := dev.do("POST", "/api/v1/devices/"+e.device+"/obs", "application/senml+json",
		[]byte(fmt.Sprintf(`[{"bt":%.3f,"n":"hr","u":"/min","v":70}]`, float64(time.Now().UnixMilli())/1000))); code != 202 {
		t.Fatalf("device ingest while the API budget is spent: %d %s", code, body)
	}
}

// httpsAdmin returns a caller of the node's HTTPS API with the admin
// token, trusting the CA in caPEM; it fails the test unless the answer
// has status want, and returns the JSON object answered (nil otherwise).
func httpsAdmin(t *testing.T, caPEM []byte, addr string) func(method, path, ctype, body string, want int) map[string]any {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 30 * time.Second}
	return func(method, path, ctype, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		return m
	}
}
