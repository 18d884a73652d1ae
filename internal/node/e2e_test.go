package node_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// TestEndToEnd drives a node through its external contract only: HTTP API,
// FHIR, MQTT with the paho client and Debian's mosquitto_pub.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	_, addrs := startNode(t, dir)
	if addrs.HTTP == "" || addrs.MQTT == "" || addrs.MLLP == "" || strings.HasSuffix(addrs.HTTP, ":0") {
		t.Fatalf("listen.json incomplete: %+v", addrs)
	}
	anon := api{t: t, base: "http://" + addrs.HTTP}
	c := anon
	c.token = testToken

	t.Run("health", func(t *testing.T) {
		c, anon := c.with(t), anon.with(t)
		_, _ = c, anon
		anon.must(200, "GET", "/healthz", "", nil)
		anon.must(200, "GET", "/readyz", "", nil)
		if code, b := anon.do("GET", "/metrics", "", nil); code != 200 || !strings.Contains(string(b), "go_goroutines") {
			t.Fatalf("metrics: %d", code)
		}
	})
	t.Run("deny by default", func(t *testing.T) {
		c, anon := c.with(t), anon.with(t)
		_, _ = c, anon
		for _, path := range []string{"/fhir/Patient", "/api/v1/deadletters", "/fhir/Observation?patient=x"} {
			if code, _ := anon.do("GET", path, "", nil); code != 401 {
				t.Errorf("GET %s without token: %d, want 401", path, code)
			}
			wrong := anon
			wrong.token = "not-a-token"
			if code, _ := wrong.do("GET", path, "", nil); code != 401 {
				t.Errorf("GET %s with a wrong token: %d, want 401", path, code)
			}
		}
	})

	e := enrol(c, "e2e-1")
	t0 := time.Now().Add(time.Second).Truncate(time.Second) // readings after the binding began
	time.Sleep(time.Until(t0))

	t.Run("mqtt paho", func(t *testing.T) {
		c, anon := c.with(t), anon.with(t)
		_, _ = c, anon
		cl, err := mqttConnect(t, addrs.MQTT, e.device, e.secret)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer cl.Disconnect(100)
		tok := cl.Publish("tend/v1/devices/"+e.device+"/obs", 1, false, senmlHR(t0, 5, 70))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		bp := fmt.Sprintf(`[{"bn":"urn:dev:%s:","bt":%d,"n":"8480-6","u":"mm[Hg]","v":120},{"n":"8462-4","u":"mm[Hg]","v":80},{"n":"8478-0","u":"mm[Hg]","v":93}]`, e.device, t0.Unix())
		tok = cl.Publish("tend/v1/devices/"+e.device+"/obs", 1, false, []byte(bp))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish BP: %v", tok.Error())
		}
		if n := waitObs(c, e.patient, 6); n != 6 {
			t.Fatalf("stored %d observations, want 6", n)
		}
		b := c.must(200, "GET", "/fhir/Observation?patient="+e.patient+"&code=http://loinc.org|85354-9", "", nil)
		entry := b["entry"].([]any)
		if len(entry) != 1 {
			t.Fatalf("BP panels: %d, want 1", len(entry))
		}
		obs := entry[0].(map[string]any)["resource"].(map[string]any)
		comps := obs["component"].([]any)
		sys := comps[0].(map[string]any)["valueQuantity"].(map[string]any)
		if len(comps) != 3 || sys["value"].(float64) != 120 || sys["code"] != "mm[Hg]" {
			t.Fatalf("BP components wrong: %v", comps)
		}
		id := obs["id"].(string)
		got := c.must(200, "GET", "/fhir/Observation/"+id, "", nil)
		if got["id"] != id {
			t.Fatalf("read by id: %v", got)
		}
	})

	t.Run("mosquitto_pub", func(t *testing.T) {
		c, anon := c.with(t), anon.with(t)
		_, _ = c, anon
		if _, err := exec.LookPath("mosquitto_pub"); err != nil {
			t.Skip("mosquitto_pub not installed (Debian package mosquitto-clients); .ci/run installs it")
		}
		host, port, _ := strings.Cut(addrs.MQTT, ":")
		before := countObs(c, e.patient, "")
		payload := fmt.Sprintf(`[{"n":"spo2","u":"%%","v":97,"t":%d},{"n":"temp","u":"[degF]","v":98.6,"t":%d}]`, t0.Unix()+10, t0.Unix()+10)
		out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-u", e.device, "-P", e.secret, "-q", "1",
			"-i", "mp-"+e.device, "-t", "tend/v1/devices/"+e.device+"/obs", "-m", payload).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
		if n := waitObs(c, e.patient, before+2); n != before+2 {
			t.Fatalf("stored %d, want %d", n, before+2)
		}
		b := c.must(200, "GET", "/fhir/Observation?patient="+e.patient+"&code=http://loinc.org|8310-5", "", nil)
		q := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["valueQuantity"].(map[string]any)
		if v := q["value"].(float64); v < 36.99 || v > 37.01 || q["code"] != "Cel" {
			t.Fatalf("98.6 [degF] should be stored as 37 Cel, got %v", q)
		}
		out, err = exec.Command("mosquitto_pub", "-h", host, "-p", port, "-u", e.device, "-P", "wrong", "-q", "1",
			"-t", "tend/v1/devices/"+e.device+"/obs", "-m", payload).CombinedOutput()
		if err == nil {
			t.Fatalf("mosquitto_pub with a wrong secret succeeded: %s", out)
		}
	})

	t.Run("http json and cbor", func(t *testing.T) {
		c, anon := c.with(t), anon.with(t)
		_, _ = c, anon
		dev := api{t: t, base: c.base, token: e.secret}
		before := countObs(c, e.patient, "")
		dev.must(202, "POST", "/api/v1/devices/"+e.device+"/obs", "application/senml+json",
			[]byte(fmt.Sprintf(`[{"n":"9279-1","u":"/min","v":16,"t":%d}]`, t0.Unix()+20)))
		body, err := cbor.Marshal([]map[int]any{{0: "29463-7", 1: "kg", 2: 72.5, 6: t0.Unix() + 21}})
		if err != nil {
			t.Fatal(err)
		}
		dev.must(202, "POST", "/api/v1/devices/"+e.device+"/obs", "application/senml+cbor", body)
		// The same payload again is acknowledged but stored once.
		dev.must(202, "POST", "/api/v1/devices/"+e.device+"/obs", "application/senml+cbor", body)
		if n := waitObs(c, e.patient, before+2); n != before+2 {
			t.Fatalf("stored %d, want %d", n, before+2)
		}
		time.Sleep(200 * time.Millisecond)
		if n := countObs(c, e.patient, ""); n != before+2 {
			t.Fatalf("duplicate stored: %d, want %d", n, before+2)
		}
		l := c.must(200, "GET", "/api/v1/patients/"+e.patient+"/latest", "", nil)
		found := false
		for _, x := range l["latest"].([]any) {
			m := x.(map[string]any)
			if m["code"] == "29463-7" && m["value"].(float64) == 72.5 && m["unit"] == "kg" {
				found = true
			}
		}
		if !found {
			t.Fatalf("latest has no weight 72.5 kg: %v", l)
		}
	})

	t.Run("bad input is refused and dead-lettered", func(t *testing.T) {
		c, anon := c.with(t), anon.with(t)
		_, _ = c, anon
		dev := api{t: t, base: c.base, token: e.secret}
		obs := "/api/v1/devices/" + e.device + "/obs"
		now := time.Now().Unix()
		cases := []struct {
			name, ctype, body string
			status            int
			reason            string
		}{
			{"malformed json", "application/senml+json", `[{"n":"8867-4",`, 400, ""},
			{"unknown code", "application/senml+json", fmt.Sprintf(`[{"n":"hartrate","v":1,"t":%d}]`, now), 400, "hartrate"},
			{"unknown unit", "application/senml+json", fmt.Sprintf(`[{"n":"8867-4","u":"furlong","v":1,"t":%d}]`, now), 400, "furlong"},
			{"future", "application/senml+json", fmt.Sprintf(`[{"n":"8867-4","v":60,"t":%d}]`, now+86400), 400, "future"},
			{"malformed cbor", "application/senml+cbor", "\xff\xfe", 400, ""},
			{"content type", "text/plain", "hello", 415, "content type"},
		}
		for _, tc := range cases {
			code, b := dev.do("POST", obs, tc.ctype, []byte(tc.body))
			if code != tc.status || !strings.Contains(string(b), tc.reason) || !strings.Contains(string(b), "deadletter") {
				t.Errorf("%s: %d %s; want %d mentioning %q", tc.name, code, b, tc.status, tc.reason)
			}
		}
		if code, _ := dev.do("POST", obs, "application/senml+json", []byte(strings.Repeat(" ", 300<<10)+"[]")); code != 413 {
			t.Errorf("oversize: %d, want 413", code)
		}
		wrong := api{t: t, base: c.base, token: "wrong-secret"}
		if code, _ := wrong.do("POST", obs, "application/senml+json", []byte(`[]`)); code != 401 {
			t.Errorf("wrong secret: %d, want 401", code)
		}
		dl := c.must(200, "GET", "/api/v1/deadletters?limit=50", "", nil)
		if n := len(dl["deadletters"].([]any)); n < len(cases)+2 {
			t.Errorf("dead letters: %d, want at least %d", n, len(cases)+2)
		}
	})

	t.Run("unbound device, bind, replay", func(t *testing.T) {
		c, anon := c.with(t), anon.with(t)
		_, _ = c, anon
		d := c.must(201, "POST", "/fhir/Device", "application/fhir+json", []byte(`{"resourceType":"Device","manufacturer":"Acme"}`))
		did := d["id"].(string)
		secret := c.must(200, "POST", "/api/v1/devices/"+did+"/credentials", "", nil)["secret"].(string)
		dev := api{t: t, base: c.base, token: secret}
		ts := time.Now().Add(time.Second).Unix() // after the binding made below
		code, b := dev.do("POST", "/api/v1/devices/"+did+"/obs", "application/senml+json", []byte(fmt.Sprintf(`[{"n":"hr","v":88,"t":%d}]`, ts)))
		if code != 422 || !strings.Contains(string(b), "not bound") {
			t.Fatalf("unbound: %d %s", code, b)
		}
		var prob map[string]any
		mustJSON(t, b, &prob)
		dlID := int(prob["deadletter"].(float64))
		p := c.must(201, "POST", "/fhir/Patient", "application/fhir+json", []byte(`{"resourceType":"Patient"}`))
		pid := p["id"].(string)
		c.must(200, "PUT", "/fhir/Device/"+did, "application/fhir+json", []byte(fmt.Sprintf(`{"resourceType":"Device","id":"%s","manufacturer":"Acme","patient":{"reference":"Patient/%s"}}`, did, pid)))
		time.Sleep(time.Until(time.Unix(ts, 0)))
		r := c.must(200, "POST", fmt.Sprintf("/api/v1/deadletters/%d/replay", dlID), "", nil)
		if r["accepted"].(float64) != 1 {
			t.Fatalf("replay: %v", r)
		}
		if n := waitObs(c, pid, 1); n != 1 {
			t.Fatalf("after replay patient has %d observations", n)
		}
		c.must(409, "POST", fmt.Sprintf("/api/v1/deadletters/%d/replay", dlID), "", nil)
	})

	t.Run("topic of another device", func(t *testing.T) {
		c, anon := c.with(t), anon.with(t)
		_, _ = c, anon
		other := enrol(c, "e2e-2")
		cl, err := mqttConnect(t, addrs.MQTT, e.device, e.secret)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Disconnect(100)
		tok := cl.Publish("tend/v1/devices/"+other.device+"/obs", 1, false, senmlHR(time.Now(), 1, 60))
		tok.WaitTimeout(5 * time.Second)
		time.Sleep(300 * time.Millisecond)
		if n := countObs(c, other.patient, ""); n != 0 {
			t.Fatalf("device wrote into another device's topic: %d observations", n)
		}
		dl := c.must(200, "GET", "/api/v1/deadletters?limit=1", "", nil)["deadletters"].([]any)[0].(map[string]any)
		if !strings.Contains(dl["reason"].(string), "may only publish") || dl["device"] != e.device {
			t.Fatalf("newest dead letter: %v", dl)
		}
	})

	t.Run("credential rotation closes connections", func(t *testing.T) {
		c, anon := c.with(t), anon.with(t)
		_, _ = c, anon
		cl, err := mqttConnect(t, addrs.MQTT, e.device, e.secret)
		if err != nil {
			t.Fatal(err)
		}
		newSecret := c.must(200, "POST", "/api/v1/devices/"+e.device+"/credentials", "", nil)["secret"].(string)
		deadline := time.Now().Add(5 * time.Second)
		for cl.IsConnectionOpen() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if cl.IsConnectionOpen() {
			t.Fatal("connection with the old secret is still open")
		}
		if _, err := mqttConnect(t, addrs.MQTT, e.device, e.secret); err == nil {
			t.Fatal("old secret still accepted")
		}
		cl2, err := mqttConnect(t, addrs.MQTT, e.device, newSecret)
		if err != nil {
			t.Fatalf("new secret refused: %v", err)
		}
		cl2.Disconnect(100)
		if code, _ := (api{t: t, base: c.base, token: e.secret}).do("POST", "/api/v1/devices/"+e.device+"/obs", "application/senml+json", []byte("[]")); code != 401 {
			t.Fatalf("old secret over HTTP: %d, want 401", code)
		}
	})
}
