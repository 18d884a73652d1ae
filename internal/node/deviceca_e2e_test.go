package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tendhealth/tend/internal/certs"
	"github.com/tendhealth/tend/internal/deviceca"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/tlsconf"
)

// TestDeviceCertificates runs a node with TLS and a device CA per
// organisation, and authenticates devices by client certificate with real
// clients: mosquitto_pub and a paho client over MQTT-TLS, curl over
// HTTPS. Revocation through the API closes a connected client at once;
// revocation straight in the store (tend ca revoke) within the poll.
func TestDeviceCertificates(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	set, err := certs.Dev(certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Write(certDir, false); err != nil {
		t.Fatal(err)
	}
	serverCA := filepath.Join(certDir, certs.CAFile)
	key, err := deviceca.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	n := node.New(node.Config{DataDir: data, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MLLPAddr: node.Off,
		MQTTTLSAddr: "127.0.0.1:0", BootstrapToken: testToken, DeviceCAKey: &key, RevocationPoll: 100 * time.Millisecond,
		TLS:    tlsconf.Files{CertFile: filepath.Join(certDir, certs.ServerFile), KeyFile: filepath.Join(certDir, certs.ServerKeyFile)},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	addrs := readListen(t, data)
	ctx := context.Background()
	st := n.Store()

	// What tend ca init does, for this organisation and another one.
	authority := &deviceca.Authority{Store: st, Key: &key}
	if err := st.CreateOrg(ctx, store.Organisation{ID: "other", Name: "Other", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"", "other"} {
		if _, err := authority.Init(ctx, org); err != nil {
			t.Fatalf("init CA %q: %v", org, err)
		}
	}

	call := httpsAdmin(t, set.CA.Cert, addrs.HTTP)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(set.CA.Cert)
	p := call("POST", "/fhir/Patient", "application/fhir+json", `{"resourceType":"Patient","name":[{"family":"Mtls"}]}`, 201)
	pid := p["id"].(string)
	d := call("POST", "/fhir/Device", "application/fhir+json", `{"resourceType":"Device","manufacturer":"Acme","patient":{"reference":"Patient/`+pid+`"}}`, 201)
	did := d["id"].(string)
	count := func() int {
		return int(call("GET", "/fhir/Observation?patient="+pid+"&_summary=count", "", "", 200)["total"].(float64))
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
	reading := func(v int) string {
		return fmt.Sprintf(`[{"bt":%.3f,"n":"hr","u":"/min","v":%d}]`, float64(time.Now().UnixMilli())/1000, v)
	}

	// Issue through the API: the key is in the answer once.
	issue := func(name string) (certFile, keyFile, serial string) {
		t.Helper()
		is := call("POST", "/api/v1/devices/"+did+"/certificates", "application/json", `{"days":7}`, 201)
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		if err := os.WriteFile(certFile, []byte(is["certificate"].(string)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte(is["private_key"].(string)), 0o600); err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile, is["serial"].(string)
	}
	certFile, keyFile, serial := issue("device")
	call("POST", "/api/v1/devices/nope/certificates", "", "", 404)

	t.Run("mosquitto_pub with the device certificate", func(t *testing.T) {
		if _, err := exec.LookPath("mosquitto_pub"); err != nil {
			t.Skip("mosquitto_pub not installed (apt-get install mosquitto-clients)")
		}
		out, err := exec.Command("mosquitto_pub", "-h", "localhost", "-p", port(addrs.MQTTTLS), "--cafile", serverCA,
			"--cert", certFile, "--key", keyFile, "-q", "1", "-t", "tend/v1/devices/"+did+"/obs", "-m", reading(71)).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
		waitCount(1)
	})

	t.Run("curl with the device certificate", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("curl not installed")
		}
		post := func(device string) string {
			out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", serverCA,
				"--cert", certFile, "--key", keyFile, "-H", "Content-Type: application/senml+json", "-d", reading(72),
				"https://localhost:"+port(addrs.HTTP)+"/api/v1/devices/"+device+"/obs").CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			return string(out)
		}
		before := count()
		if code := post(did); code != "202" {
			t.Fatalf("curl --cert: HTTP %s, want 202", code)
		}
		waitCount(before + 1)
		// The certificate is this device's only.
		other := call("POST", "/fhir/Device", "application/fhir+json", `{"resourceType":"Device","manufacturer":"Acme"}`, 201)["id"].(string)
		if code := post(other); code != "401" {
			t.Fatalf("certificate of %s on %s: HTTP %s, want 401", did, other, code)
		}
	})

	dial := func(t *testing.T, user string, cert tls.Certificate, lost chan<- error) (paho.Client, error) {
		o := paho.NewClientOptions().AddBroker("ssl://" + addrs.MQTTTLS).SetClientID(fmt.Sprintf("mtls-%d", time.Now().UnixNano())).
			SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}}).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
			SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
		if user != "" {
			o.SetUsername(user)
		}
		c := paho.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return nil, fmt.Errorf("connect timed out")
		}
		return c, tok.Error()
	}
	loadPair := func(certFile, keyFile string) tls.Certificate {
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	waitLost := func(t *testing.T, lost <-chan error, within time.Duration) {
		t.Helper()
		select {
		case <-lost:
		case <-time.After(within):
			t.Fatalf("the connection is still open %v after the revocation", within)
		}
	}

	t.Run("user name of another device is refused", func(t *testing.T) {
		if c, err := dial(t, "someone-else", loadPair(certFile, keyFile), make(chan error, 1)); err == nil {
			c.Disconnect(0)
			t.Fatal("connected with a user name that is not the certificate's device")
		}
	})

	t.Run("another organisation's CA for this device", func(t *testing.T) {
		rec, err := st.DeviceCA(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		caCert, caKey, err := deviceca.OpenCA(rec, key)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, sn, err := deviceca.IssueCertificate(caCert, caKey, did, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		// Even recorded as if issued for the device, the signature is not its organisation's.
		if err := st.AddDeviceCert(ctx, store.DeviceCert{Serial: sn.Text(16), Device: did, Org: store.DefaultOrg, Issued: time.Now(), NotAfter: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := dial(t, "", kp, make(chan error, 1)); err == nil {
			c.Disconnect(0)
			t.Fatal("a certificate from another organisation's CA was accepted")
		}
	})

	t.Run("revoke through the API closes the connection at once", func(t *testing.T) {
		lost := make(chan error, 1)
		c, err := dial(t, "", loadPair(certFile, keyFile), lost)
		if err != nil {
			t.Fatalf("connect with the device certificate: %v", err)
		}
		defer c.Disconnect(0)
		before := count()
		if tok := c.Publish("tend/v1/devices/"+did+"/obs", 1, false, reading(73)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		waitCount(before + 1)
		res := call("POST", "/api/v1/devices/"+did+"/certificates/revoke", "application/json", `{"serial":"`+serial+`"}`, 200)
		if res["closed_connections"].(float64) < 1 {
			t.Fatalf("revoke answered %v", res)
		}
		waitLost(t, lost, 2*time.Second)
		if c2, err := dial(t, "", loadPair(certFile, keyFile), make(chan error, 1)); err == nil {
			c2.Disconnect(0)
			t.Fatal("reconnected with a revoked certificate")
		}
	})

	t.Run("revoke in the store closes the connection within the poll", func(t *testing.T) {
		cf, kf, _ := issue("device2")
		lost := make(chan error, 1)
		c, err := dial(t, did, loadPair(cf, kf), lost) // its own id as user name is fine
		if err != nil {
			t.Fatalf("connect with a new certificate: %v", err)
		}
		defer c.Disconnect(0)
		// What tend ca revoke --device does against the store, no node involved.
		revoked, err := (&deviceca.Authority{Store: st}).RevokeDevice(ctx, did)
		if err != nil || len(revoked) == 0 {
			t.Fatalf("revoke: %v %v", revoked, err)
		}
		waitLost(t, lost, 5*time.Second)
	})
}
