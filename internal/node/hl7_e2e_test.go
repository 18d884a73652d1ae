package node_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHL7ClientFromNPM sends the shared IHE PCD-01 examples and broken
// variants to a running node with simple-hl7, an MLLP client from npm, and
// checks every ACK and what was stored.
func TestHL7ClientFromNPM(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("skipped: node (Node.js) is not installed; CI installs it with the npm client (see .ci/run)")
	}
	clientDir, _ := filepath.Abs(filepath.Join("testdata", "hl7client"))
	if _, err := os.Stat(filepath.Join(clientDir, "node_modules", "simple-hl7")); err != nil {
		t.Skipf("skipped: simple-hl7 is not installed; run `npm ci` in %s (.ci/run does)", clientDir)
	}
	shared := filepath.Join("..", "..", "..", "shared", "testdata", "hl7")
	e11, err1 := os.ReadFile(filepath.Join(shared, "ihe-pcd01-E1.1-physiological-monitor.hl7"))
	e12, err2 := os.ReadFile(filepath.Join(shared, "ihe-pcd01-E1.2-episodic-nibp.hl7"))
	if err1 != nil || err2 != nil {
		t.Skipf("skipped: shared HL7 examples not found in %s", shared)
	}

	dir := t.TempDir()
	_, addrs := startNode(t, dir)
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	patient := func(mrn string) string {
		p := c.must(201, "POST", "/fhir/Patient", "application/fhir+json", []byte(fmt.Sprintf(
			`{"resourceType":"Patient","identifier":[{"system":"urn:example:mrn","value":%q}]}`, mrn)))
		return p["id"].(string)
	}
	device := func(equipment string) {
		c.must(201, "POST", "/fhir/Device", "application/fhir+json", []byte(fmt.Sprintf(
			`{"resourceType":"Device","identifier":[{"system":"urn:ieee:eui64","value":%q}],"manufacturer":"Example"}`, equipment)))
	}
	hon, beds := patient("HO2009001"), patient("12345")
	device("0600dc750001")
	device("080019FFFE3ED02D172.16.172.135")

	// E1.2 again with LF line ends and a broken value, a message type Tend
	// does not take, and a resend of E1.1 (acknowledged, stored once).
	broken := strings.Replace(strings.ReplaceAll(string(e12), "\r", "\n"), "|111|", "|1x1|", 1)
	broken = strings.Replace(broken, "0104ef190d604db188c3", "BROKEN-1", 1)
	unknown := "MSH|^~\\&|LAB|H|||20260101120000||ORM^O01|ORM-1|P|2.5\rPID|||X\r"
	// From equipment not registered yet: refused, kept, replayed below.
	late := strings.Replace(strings.Replace(string(e12), "080019FFFE3ED02D172.16.172.135", "LATE-DEV", -1), "0104ef190d604db188c3", "LATE-1", 1)
	admit := "MSH|^~\\&|ADT|H|||20260101120000||ADT^A01^ADT_A01|ADT-1|P|2.5.1\rEVN|A01|20260101120000\r" +
		"PID|||NEW-77^^^H^MR||Roe^Ann||19800102|F\rPV1||I|ICU^12^A\r"
	files := []string{}
	for i, m := range []string{string(e11), string(e12), broken, unknown, string(e11), admit, late} {
		p := filepath.Join(dir, fmt.Sprintf("m%d.hl7", i))
		if err := os.WriteFile(p, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	host, port, _ := strings.Cut(addrs.MLLP, ":")
	cmd := exec.Command(nodeBin, append([]string{"send.js", host, port}, files...)...)
	cmd.Dir = clientDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, stderr.String())
	}
	type ack struct {
		Code, Control string
		Err           []string
	}
	var acks []ack
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var a ack
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("client output %q: %v", sc.Text(), err)
		}
		acks = append(acks, a)
	}
	want := []struct{ code, control, err string }{
		{"AA", "HP0122182658686QQ000CND119C0WS61", "MDC_ECG_TIME_PD_QT_GL"}, // stored, with warnings for codes Tend does not keep
		{"AA", "0104ef190d604db188c3", ""},
		{"AE", "BROKEN-1", "not a number"},
		{"AR", "ORM-1", "not accepted"},
		{"AA", "HP0122182658686QQ000CND119C0WS61", ""},
		{"AA", "ADT-1", ""},
		{"AE", "LATE-1", "LATE-DEV"},
	}
	if len(acks) != len(want) {
		t.Fatalf("got %d ACKs, want %d: %s", len(acks), len(want), out)
	}
	for i, w := range want {
		a := acks[i]
		if a.Code != w.code || a.Control != w.control || (w.err != "" && !strings.Contains(strings.Join(a.Err, " "), w.err)) {
			t.Errorf("ACK %d = %+v, want %s for %s mentioning %q", i, a, w.code, w.control, w.err)
		}
	}
	// AA means durable in the stream; the store writer catches up shortly.
	count := func(patient string, want float64) float64 {
		var n float64
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			r := c.must(200, "GET", "/fhir/Observation?patient="+patient+"&_summary=count", "", nil)
			if n, _ = r["total"].(float64); n >= want {
				break
			}
		}
		return n
	}
	if n := count(hon, 4); n != 4 {
		t.Errorf("E1.1 patient has %v observations, want 4 (NIBP panel, HR, RR, SpO2)", n)
	}
	if n := count(beds, 2); n != 2 {
		t.Errorf("E1.2 patient has %v observations, want 2 (NIBP panel, pulse)", n)
	}
	// The A01 registered the patient, with the bed as an extension.
	ps := c.must(200, "GET", "/fhir/Patient?identifier=NEW-77", "", nil)
	if b, _ := json.Marshal(ps); !bytes.Contains(b, []byte("ICU/12/A")) || !bytes.Contains(b, []byte(`"family":"Roe"`)) {
		t.Errorf("patient admitted over HL7 not found as expected: %s", b)
	}
	// Register the late device and replay its message from the dead-letter store.
	device("LATE-DEV")
	var lateID float64
	for _, d := range c.must(200, "GET", "/api/v1/deadletters", "", nil)["deadletters"].([]any) {
		if dl := d.(map[string]any); strings.Contains(fmt.Sprint(dl["reason"]), "LATE-DEV") {
			lateID = dl["id"].(float64)
		}
	}
	if r := c.must(200, "POST", fmt.Sprintf("/api/v1/deadletters/%d/replay", int(lateID)), "", nil); r["accepted"] != 2.0 {
		t.Errorf("replay of the late device's message: %v", r)
	}
	dl := c.must(200, "GET", "/api/v1/deadletters", "", nil)
	if b, _ := json.Marshal(dl); !bytes.Contains(b, []byte("not a number")) {
		t.Errorf("the broken message is not in the dead-letter store: %s", b)
	}
}
