package node_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestMQTTAttacks attacks the MQTT listener with a real client (paho, and
// mosquitto_pub where installed): no or wrong credentials, wildcard and
// separator characters in the user name, another device's topics, a
// rotated secret and an oversize packet. Each is refused, nothing of it is
// stored, and the listener keeps serving honest devices.
func TestMQTTAttacks(t *testing.T) {
	_, addrs := startNode(t, t.TempDir())
	admin := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	a, b := enrol(admin, "mqtt-sec-a"), enrol(admin, "mqtt-sec-b")
	topic := func(dev, leaf string) string { return "tend/v1/devices/" + dev + "/" + leaf }
	reading := func(v int) []byte {
		return []byte(fmt.Sprintf(`[{"bt":%.3f,"n":"hr","u":"/min","v":%d}]`, float64(time.Now().UnixMilli())/1000, v))
	}
	// publishOwn proves the listener still serves a device: a reading on
	// its own topic is acknowledged and stored.
	stored := map[string]int{}
	publishOwn := func(t *testing.T, e enrolled, v int) {
		t.Helper()
		c, err := mqttConnect(t, addrs.MQTT, e.device, e.secret)
		if err != nil {
			t.Fatalf("honest device cannot connect: %v", err)
		}
		defer c.Disconnect(0)
		if tok := c.Publish(topic(e.device, "obs"), 1, false, reading(v)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("honest publish: %v", tok.Error())
		}
		stored[e.patient]++
		if got := waitObs(admin.with(t), e.patient, stored[e.patient]); got != stored[e.patient] {
			t.Fatalf("patient has %d readings, want %d", got, stored[e.patient])
		}
	}
	publishOwn(t, a, 70)
	publishOwn(t, b, 71)

	t.Run("connect without credentials or with a wrong secret", func(t *testing.T) {
		for _, c := range []struct{ user, pass string }{{"", ""}, {a.device, ""}, {a.device, "wrong"}, {a.device, b.secret}, {"no-such-device", a.secret}} {
			if cl, err := mqttConnect(t, addrs.MQTT, c.user, c.pass); err == nil {
				cl.Disconnect(0)
				t.Errorf("CONNECT as %q with password %q was accepted", c.user, c.pass)
			} else {
				t.Logf("CONNECT as %q refused: %v", c.user, err)
			}
		}
	})

	t.Run("wildcards and separators in the user name", func(t *testing.T) {
		for _, u := range []string{"+", "#", a.device + "/+", a.device + "/#", "a/b", "a.b", a.device + ".x", "*", ">", a.device + " "} {
			if cl, err := mqttConnect(t, addrs.MQTT, u, a.secret); err == nil {
				cl.Disconnect(0)
				t.Errorf("CONNECT as %q was accepted", u)
			}
		}
		// Such ids can never be registered either.
		for _, id := range []string{"a+b", "a#b", "a/b", "a.b"} {
			code, body := admin.with(t).do("POST", "/fhir/Device", "application/fhir+json", []byte(`{"resourceType":"Device","id":"`+id+`"}`))
			if code == 201 && strings.Contains(string(body), `"id":"`+id+`"`) {
				t.Errorf("a device with id %q was registered", id)
			}
		}
	})

	t.Run("publish to another device's topic", func(t *testing.T) {
		c, err := mqttConnect(t, addrs.MQTT, a.device, a.secret)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect(0)
		// MQTT 3.1.1 has no refusal in PUBACK: the payload is kept in the
		// dead-letter store and acknowledged.
		for _, tp := range []string{topic(b.device, "obs"), topic(b.device, "cmd"), "tend/v1/devices/+/obs", "tend/v1/other"} {
			tok := c.Publish(tp, 1, false, reading(99))
			if !tok.WaitTimeout(10 * time.Second) {
				t.Fatalf("no PUBACK for %s", tp)
			}
		}
		publishOwn(t, a, 72) // in order behind the refused ones
		if got := countObs(admin.with(t), b.patient, ""); got != stored[b.patient] {
			t.Errorf("the other device's patient has %d readings, want %d: a foreign publish was stored", got, stored[b.patient])
		}
		var dl struct {
			Deadletters []struct{ Device, Reason, Payload string }
		}
		_, body := admin.with(t).do("GET", "/api/v1/deadletters?limit=50", "", nil)
		mustJSON(t, body, &dl)
		kept := 0
		for _, d := range dl.Deadletters {
			if d.Device == a.device && strings.Contains(d.Reason, "may only publish under") {
				kept++
			}
		}
		if kept < 2 {
			t.Errorf("%d dead letters for the foreign publishes, want at least 2: %s", kept, body)
		}
	})

	t.Run("subscribe to another device's downlink or a wildcard", func(t *testing.T) {
		c, err := mqttConnect(t, addrs.MQTT, a.device, a.secret)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect(0)
		for _, f := range []string{topic(b.device, "cmd"), "#", "+/#", "tend/v1/devices/+/cmd", "tend/v1/devices/#", topic(a.device, "#"), topic(b.device, "obs"), "$SYS/#"} {
			tok := c.Subscribe(f, 1, func(paho.Client, paho.Message) {})
			if !tok.WaitTimeout(10 * time.Second) {
				t.Fatalf("no SUBACK for %s", f)
			}
			if tok.Error() == nil {
				if q := tok.(*paho.SubscribeToken).Result()[f]; q != 0x80 {
					t.Errorf("SUBSCRIBE %s was granted (QoS %d)", f, q)
				}
			}
		}
		// Its own downlink is allowed.
		tok := c.Subscribe(topic(a.device, "cmd"), 1, func(paho.Client, paho.Message) {})
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil || tok.(*paho.SubscribeToken).Result()[topic(a.device, "cmd")] == 0x80 {
			t.Errorf("the device could not subscribe to its own downlink: %v", tok.Error())
		}
	})

	t.Run("rotated secret", func(t *testing.T) {
		lost := make(chan error, 1)
		o := paho.NewClientOptions().AddBroker("tcp://" + addrs.MQTT).SetClientID("rot-" + a.device).SetUsername(a.device).
			SetPassword(a.secret).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
			SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		defer c.Disconnect(0)
		old := a.secret
		a.secret = admin.with(t).must(200, "POST", "/api/v1/devices/"+a.device+"/credentials", "", nil)["secret"].(string)
		select {
		case <-lost:
		case <-time.After(5 * time.Second):
			t.Error("the connection under the revoked secret stayed open")
		}
		if cl, err := mqttConnect(t, addrs.MQTT, a.device, old); err == nil {
			cl.Disconnect(0)
			t.Error("the revoked secret still connects")
		}
		publishOwn(t, a, 73) // the new one works
	})

	t.Run("oversize packet", func(t *testing.T) {
		lost := make(chan error, 1)
		o := paho.NewClientOptions().AddBroker("tcp://" + addrs.MQTT).SetClientID("big-" + a.device).SetUsername(a.device).
			SetPassword(a.secret).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
			SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		defer c.Disconnect(0)
		// 600 KiB of valid SenML: over the 512 KiB packet limit.
		var sb strings.Builder
		sb.WriteString(fmt.Sprintf(`[{"bt":%.3f,"n":"hr","u":"/min","v":80}`, float64(time.Now().UnixMilli())/1000))
		for sb.Len() < 600<<10 {
			sb.WriteString(`,{"n":"hr","u":"/min","v":80}`)
		}
		sb.WriteString("]")
		tok := c.Publish(topic(a.device, "obs"), 1, false, []byte(sb.String()))
		acked := tok.WaitTimeout(5*time.Second) && tok.Error() == nil
		select {
		case <-lost:
		case <-time.After(5 * time.Second):
			t.Error("the connection stayed open after an oversize packet")
		}
		if acked {
			t.Error("the oversize packet was acknowledged")
		}
		publishOwn(t, b, 74) // others are still served, and it is the only new reading
		if got := countObs(admin.with(t), a.patient, ""); got != stored[a.patient] {
			t.Errorf("patient has %d readings after the oversize packet, want %d", got, stored[a.patient])
		}
	})

	t.Run("mosquitto_pub", func(t *testing.T) {
		if _, err := exec.LookPath("mosquitto_pub"); err != nil {
			t.Skip("skipped: mosquitto_pub is not installed (apt-get install mosquitto-clients)")
		}
		host, p := strings.Split(addrs.MQTT, ":")[0], port(addrs.MQTT)
		for i, args := range [][]string{
			{},                             // no credentials
			{"-u", a.device, "-P", "nope"}, // wrong secret
			{"-u", "#", "-P", a.secret},    // wildcard user name
			{"-u", "a/b", "-P", a.secret},  // separator in the user name
		} {
			full := append([]string{"-h", host, "-p", p, "-q", "1", "-t", topic(a.device, "obs"), "-m", string(reading(60))}, args...)
			if out, err := exec.Command("mosquitto_pub", full...).CombinedOutput(); err == nil {
				t.Errorf("mosquitto_pub case %d was accepted: %s", i, out)
			} else {
				t.Logf("mosquitto_pub case %d refused: %s", i, strings.TrimSpace(string(out)))
			}
		}
		// MQTT 5 says why in the PUBACK: not authorised.
		out, _ := exec.Command("mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", p, "-q", "1", "-u", a.device, "-P", a.secret,
			"-t", topic(b.device, "obs"), "-m", string(reading(61))).CombinedOutput()
		if !strings.Contains(strings.ToLower(string(out)), "not authorized") {
			t.Errorf("MQTT 5 publish to another device's topic: %q, want a not-authorised PUBACK", out)
		}
		publishOwn(t, a, 75)
		for _, e := range []enrolled{a, b} {
			if got := countObs(admin.with(t), e.patient, ""); got != stored[e.patient] {
				t.Errorf("patient has %d readings, want %d", got, stored[e.patient])
			}
		}
	})
}
