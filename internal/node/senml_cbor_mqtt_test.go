package node_test

import (
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// TestSenMLCBOROverMQTT publishes a SenML CBOR pack (RFC 8428 §6 integer
// labels: -2 base name, -3 base time, 0 name, 1 unit, 2 value, 6 time) over
// MQTT 3.1.1, which carries no content type, and reads it back over FHIR.
func TestSenMLCBOROverMQTT(t *testing.T) {
	dir := t.TempDir()
	_, addrs := startNode(t, dir)
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	e := enrol(c, "cbor-mqtt")
	t0 := time.Now().Add(time.Second).Truncate(time.Second)
	time.Sleep(time.Until(t0))

	pack, err := cbor.Marshal([]map[int]any{
		{-2: "urn:dev:" + e.device + ":", -3: t0.Unix(), 0: "8867-4", 1: "/min", 2: 64},
		{0: "59408-5", 1: "%", 2: 0.97 * 100, 6: 1},
		{0: "temp", 1: "[degF]", 2: 98.6, 6: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := mqttConnect(t, addrs.MQTT, e.device, e.secret)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cl.Disconnect(100)
	tok := cl.Publish("tend/v1/devices/"+e.device+"/obs", 1, false, pack)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if n := waitObs(c, e.patient, 3); n != 3 {
		t.Fatalf("stored %d observations, want 3", n)
	}
	b := c.must(200, "GET", "/fhir/Observation?patient="+e.patient+"&code=http://loinc.org|8310-5", "", nil)
	res := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	q := res["valueQuantity"].(map[string]any)
	if q["value"] != float64(37) || q["code"] != "Cel" {
		t.Fatalf("98.6 [degF] should be stored as 37 Cel, got %v", q)
	}
	if want := t0.Add(2 * time.Second).UTC().Format(time.RFC3339); res["effectiveDateTime"] != want {
		t.Fatalf("effective %v, want %s (base time + relative time)", res["effectiveDateTime"], want)
	}
}
