package node_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const gattType = "application/vnd.tend.gatt+json"

// TestGATTEndToEnd sends raw Bluetooth GATT characteristic values in the
// gateway envelope over HTTP, over MQTT 5 with a content type
// (mosquitto_pub) and over MQTT 3.1.1 without one (paho), and reads the
// readings back through FHIR; bad envelopes are refused and dead-lettered.
func TestGATTEndToEnd(t *testing.T) {
	dir := t.TempDir()
	_, addrs := startNode(t, dir)
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	e := enrol(c, "gatt-1")
	t0 := time.Now().Add(time.Second).Truncate(time.Second)
	time.Sleep(time.Until(t0))
	at := func(s int) int64 { return t0.Unix() + int64(s) }
	dev := api{t: t, base: c.base, token: e.secret}
	obs := "/api/v1/devices/" + e.device + "/obs"

	t.Run("http", func(t *testing.T) {
		c, dev := c.with(t), dev.with(t)
		body := fmt.Sprintf(`[
			{"uuid":"2A37","hex":"0648","t":%d},
			{"uuid":"2A35","hex":"04 7800 5000 5d00 4800","t":%d},
			{"uuid":"00002a9d-0000-1000-8000-00805f9b34fb","base64":"ALA2","t":%d}]`, at(1), at(2), at(3))
		r := dev.must(202, "POST", obs, gattType, []byte(body))
		if r["accepted"] != float64(5) { // HR, sensor-off, BP panel, BP pulse, weight
			t.Fatalf("accepted %v, want 5", r["accepted"])
		}
		if n := waitObs(c, e.patient, 5); n != 5 {
			t.Fatalf("stored %d observations, want 5", n)
		}
		b := c.must(200, "GET", "/fhir/Observation?patient="+e.patient+"&code=http://loinc.org|85354-9", "", nil)
		entry := b["entry"].([]any)
		comps := entry[0].(map[string]any)["resource"].(map[string]any)["component"].([]any)
		var got []string
		for _, comp := range comps {
			q := comp.(map[string]any)["valueQuantity"].(map[string]any)
			got = append(got, fmt.Sprint(q["value"], " ", q["code"]))
		}
		if strings.Join(got, ", ") != "120 mm[Hg], 80 mm[Hg], 93 mm[Hg]" {
			t.Fatalf("BP components %v", got)
		}
		if n := countObs(c, e.patient, "29463-7"); n != 1 {
			t.Fatalf("weight observations %d, want 1", n)
		}
	})

	t.Run("http refusals are dead-lettered", func(t *testing.T) {
		c, dev := c.with(t), dev.with(t)
		if code, b := dev.do("POST", obs, gattType, []byte(`{"uuid":"2A35","hex":"00"}`)); code != 400 || !strings.Contains(string(b), "value ends before systolic") {
			t.Fatalf("truncated value: %d %s", code, b)
		}
		if code, b := dev.do("POST", obs, gattType, []byte(fmt.Sprintf(`{"uuid":"2A1C","hex":"00ffff7f00","t":%d}`, at(6)))); code != 422 || !strings.Contains(string(b), "NaN") {
			t.Fatalf("NaN temperature: %d %s", code, b)
		}
		d := c.must(200, "GET", "/api/v1/deadletters", "", nil)
		var reasons []string
		for _, x := range d["deadletters"].([]any) {
			dl := x.(map[string]any)
			if dl["content_type"] == gattType {
				reasons = append(reasons, dl["reason"].(string))
			}
		}
		if len(reasons) != 2 {
			t.Fatalf("GATT dead letters %q, want 2", reasons)
		}
	})

	t.Run("mqtt 3.1.1 sniffed", func(t *testing.T) {
		c := c.with(t)
		before := countObs(c, e.patient, "")
		cl, err := mqttConnect(t, addrs.MQTT, e.device, e.secret)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer cl.Disconnect(100)
		tok := cl.Publish("tend/v1/devices/"+e.device+"/obs", 1, false, []byte(fmt.Sprintf(`{"uuid":"2A5E","base64":"AGEAQAA=","t":%d}`, at(4))))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		if n := waitObs(c, e.patient, before+2); n != before+2 {
			t.Fatalf("stored %d, want %d", n, before+2)
		}
		if n := countObs(c, e.patient, "59408-5"); n != 1 {
			t.Fatalf("SpO2 observations %d, want 1", n)
		}
	})

	t.Run("mosquitto_pub mqtt 5 content type", func(t *testing.T) {
		c := c.with(t)
		if _, err := exec.LookPath("mosquitto_pub"); err != nil {
			t.Skip("mosquitto_pub not installed (Debian package mosquitto-clients); .ci/run installs it")
		}
		host, port, _ := strings.Cut(addrs.MQTT, ":")
		before := countObs(c, e.patient, "")
		payload := fmt.Sprintf(`{"uuid":"2A1C","hex":"01 da0300ff","t":%d}`, at(5)) // 98.6 °F
		out, err := exec.Command("mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", port, "-u", e.device, "-P", e.secret, "-q", "1",
			"-i", "gatt-"+e.device, "-t", "tend/v1/devices/"+e.device+"/obs",
			"-D", "publish", "content-type", gattType, "-m", payload).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
		if n := waitObs(c, e.patient, before+1); n != before+1 {
			t.Fatalf("stored %d, want %d", n, before+1)
		}
		b := c.must(200, "GET", "/fhir/Observation?patient="+e.patient+"&code=http://loinc.org|8310-5", "", nil)
		q := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["valueQuantity"].(map[string]any)
		if q["value"] != float64(37) || q["code"] != "Cel" {
			t.Fatalf("98.6 °F should be stored as 37 Cel, got %v", q)
		}
		// The content type property, not sniffing, chose the decoder: the
		// dead letter of a bad value records it.
		out, err = exec.Command("mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", port, "-u", e.device, "-P", e.secret, "-q", "1",
			"-i", "gatt-"+e.device, "-t", "tend/v1/devices/"+e.device+"/obs",
			"-D", "publish", "content-type", gattType, "-m", `{"uuid":"2A1C","hex":"00"}`).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			d := c.must(200, "GET", "/api/v1/deadletters?limit=1", "", nil)
			if dl := d["deadletters"].([]any); len(dl) == 1 {
				x := dl[0].(map[string]any)
				if x["source"] == "mqtt" && x["content_type"] == gattType && strings.Contains(x["reason"].(string), "value ends before temperature") {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no MQTT dead letter with the GATT content type: %v", d)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
