package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/hl7/pcd"
	"github.com/tendhealth/tend/internal/mllp"
	"github.com/tendhealth/tend/internal/node"
)

// testEHR is an EHR on a real MLLP listener: it reads each ORU^R01 with
// Tend's PCD-01 reader, records the readings of the messages it accepts
// per patient identifier (PID-3 with authority TEND) in arrival order,
// and answers AE to messages carrying the value refuseValue.
type testEHR struct {
	srv         *mllp.Server
	refuseValue string

	mu       sync.Mutex
	times    map[string][]time.Time // patient → reading times accepted, in order
	values   map[string][]float64
	controls map[string]int      // MSH-10 → times accepted
	where    map[string]string   // patient → PV1-3 of the last message
	ids      map[string][]string // patient → PID-3 identifiers of the last message
}

func startTestEHR(t *testing.T, addr string) *testEHR {
	t.Helper()
	e := &testEHR{times: map[string][]time.Time{}, values: map[string][]float64{}, controls: map[string]int{},
		where: map[string]string{}, ids: map[string][]string{}}
	e.listen(t, addr)
	return e
}

func (e *testEHR) listen(t *testing.T, addr string) {
	t.Helper()
	e.srv = &mllp.Server{Addr: addr, Handler: e}
	var err error
	for i := 0; i < 50; i++ { // the port of a just-closed listener may linger briefly
		if err = e.srv.Start(context.Background()); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := e.srv
	t.Cleanup(func() { srv.Close() })
}

func (e *testEHR) addr() string { return e.srv.ListenAddr().String() }

func (e *testEHR) HandleHL7(_ context.Context, raw []byte, _ bool) func() []byte {
	m, err := hl7.Parse(raw)
	if err != nil {
		ack := hl7.AckUnparsed(raw, hl7.AR, []*hl7.Error{{Msg: err.Error()}}, "EHR", time.Now())
		return func() []byte { return ack }
	}
	rep, errs := pcd.ParseORU(m, time.Now().Add(time.Hour), pcd.Limits{})
	code := hl7.AA
	if len(errs) > 0 || len(rep.Patients) != 1 {
		code = hl7.AR
		errs = append(errs, &hl7.Error{Msg: "test EHR could not read the message"})
	}
	if code == hl7.AA && e.refuseValue != "" {
		for _, obx := range m.All("OBX") {
			if obx.C(5, 1) == e.refuseValue {
				code = hl7.AE
				errs = []*hl7.Error{{Segment: "OBX", Sequence: 5, Field: 5, Code: hl7.ErrDataType, Msg: "test EHR refuses value " + e.refuseValue}}
			}
		}
	}
	if code == hl7.AA {
		patient := ""
		for _, id := range rep.Patients[0].IDs {
			if id.Authority == "TEND" {
				patient = id.Value
			}
		}
		e.mu.Lock()
		for _, r := range rep.Readings {
			e.times[patient] = append(e.times[patient], r.Time)
			e.values[patient] = append(e.values[patient], r.Value)
		}
		e.controls[m.Header().ControlID]++
		e.where[patient] = rep.Patients[0].Location.String()
		e.ids[patient] = nil
		for _, id := range rep.Patients[0].IDs {
			e.ids[patient] = append(e.ids[patient], id.Authority+":"+id.Value)
		}
		e.mu.Unlock()
	}
	ack := hl7.Ack(m, code, errs, "EHR-ACK", time.Now())
	return func() []byte { return ack }
}

func (e *testEHR) received(patient string) ([]time.Time, []float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]time.Time(nil), e.times[patient]...), append([]float64(nil), e.values[patient]...)
}

func freeTCPAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestHL7ForwardToEHR ingests readings over HTTP and MQTT and checks that
// the EHR receives each patient's readings in order, that nothing is lost
// while the EHR is down, and that a message the EHR refuses (AE) becomes a
// dead letter with its reason while the rest goes on.
func TestHL7ForwardToEHR(t *testing.T) {
	ehrAddr := freeTCPAddr(t)
	ehr := startTestEHR(t, ehrAddr)
	ehr.refuseValue = "199"
	dir := t.TempDir()
	n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MLLPAddr: "off",
		BootstrapToken: testToken, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard,
		HL7Forward: node.HL7Forward{Addr: ehrAddr, SendingFacility: "WEST", ReceivingApp: "EHR"}})
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	addrs := readListen(t, dir)
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	a, b := enrol(c, "fwd-a"), enrol(c, "fwd-b")
	base := time.Now().Add(time.Second).Truncate(time.Second) // after the bindings began
	post := func(e enrolled, i int, value float64) {
		ts := base.Add(time.Duration(i) * 100 * time.Millisecond)
		body := fmt.Sprintf(`[{"n":"8867-4","u":"/min","v":%g,"t":%d.%03d}]`, value, ts.Unix(), ts.Nanosecond()/1e6)
		sec := api{t: t, base: c.base, token: e.secret}
		sec.must(202, "POST", "/api/v1/devices/"+e.device+"/obs", "application/senml+json", []byte(body))
	}
	// Phase 1: EHR up; patient a over HTTP, patient b over MQTT.
	cl, err := mqttConnect(t, addrs.MQTT, b.device, b.secret)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect(0)
	for i := 0; i < 10; i++ {
		post(a, i, float64(60+i))
		tok := cl.Publish("tend/v1/devices/"+b.device+"/obs", 1, false, senmlHR(base.Add(time.Duration(i)*100*time.Millisecond), 1, float64(80+i)))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	// Phase 2: EHR down while readings keep coming, one of them refused later.
	waitForwarded(t, ehr, a.patient, 10)
	ehr.srv.Close()
	for i := 10; i < 20; i++ {
		v := float64(60 + i)
		if i == 15 {
			v = 199
		}
		post(a, i, v)
	}
	time.Sleep(500 * time.Millisecond) // a few failed attempts while it is down
	ehr.listen(t, ehrAddr)
	times, values := waitForwarded(t, ehr, a.patient, 19)
	for i := range times {
		want := i
		if i >= 15 {
			want = i + 1 // the refused reading is skipped, nothing else
		}
		if !times[i].Equal(base.Add(time.Duration(want)*100*time.Millisecond)) || values[i] != float64(60+want) {
			t.Fatalf("patient a: reading %d is %v %v, want reading %d (order or gap): %v", i, times[i], values[i], want, values)
		}
	}
	if bt, _ := ehr.received(b.patient); len(bt) != 10 || !sort.SliceIsSorted(bt, func(i, j int) bool { return bt[i].Before(bt[j]) }) {
		t.Errorf("patient b: %d readings, in order: %v", len(bt), bt)
	}
	var refused map[string]any
	for _, x := range c.must(200, "GET", "/api/v1/deadletters", "", nil)["deadletters"].([]any) {
		if dl := x.(map[string]any); dl["source"] == "hl7-forward" {
			refused = dl
		}
	}
	if refused == nil || !strings.Contains(fmt.Sprint(refused["reason"]), "test EHR refuses value 199") {
		t.Errorf("no hl7-forward dead letter with the EHR's reason: %v", refused)
	}
	_, metrics := c.do("GET", "/metrics", "", nil)
	for _, want := range []string{`tend_hl7_forward_messages_total{ack="AA"}`, `tend_hl7_forward_messages_total{ack="AE"} 1`,
		"tend_hl7_forwarded_readings_total", "tend_hl7_forward_retries_total", "tend_hl7_forward_queue_lag"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	m := c.must(200, "GET", "/api/v1/patients/"+a.patient+"/locations", "", nil)
	if locs, ok := m["locations"].([]any); !ok || len(locs) != 0 {
		t.Errorf("locations of a patient never admitted: %v", m)
	}
}

func waitForwarded(t *testing.T, e *testEHR, patient string, want int) ([]time.Time, []float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		times, values := e.received(patient)
		if len(times) >= want {
			return times, values
		}
		if time.Now().After(deadline) {
			t.Fatalf("EHR received %d readings of %s, want %d", len(times), patient, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHL7ForwardSurvivesKill9 kills `tend serve` with SIGKILL while
// readings arrive and are forwarded, and checks after a restart that every
// reading ingest acknowledged reached the EHR (duplicates allowed).
func TestHL7ForwardSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a server; skipped with -short")
	}
	ehr := startTestEHR(t, "127.0.0.1:0")
	dir := t.TempDir()
	var e enrolled
	var base time.Time
	var seq atomic.Int64
	var mu sync.Mutex
	acked := map[int64]bool{}
	for round := 0; round < 3; round++ {
		cmd, addrs := serveChild(t, dir, "--hl7-forward", ehr.addr())
		c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
		if round == 0 {
			e = enrol(c, "fwd-crash")
			base = time.Now().Add(time.Second).Truncate(time.Second) // after the binding began
		}
		cl, err := mqttConnect(t, addrs.MQTT, e.device, e.secret)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && cl.IsConnectionOpen() {
				i := seq.Add(1) - 1
				ts := base.Add(time.Duration(i) * time.Millisecond)
				tok := cl.Publish("tend/v1/devices/"+e.device+"/obs", 1, false,
					[]byte(fmt.Sprintf(`[{"n":"8867-4","u":"/min","v":%d,"t":%d.%03d}]`, 60+i%50, ts.Unix(), ts.Nanosecond()/1e6)))
				if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
					mu.Lock()
					acked[i] = true
					mu.Unlock()
				}
			}
		}()
		time.Sleep(time.Duration(400+200*round) * time.Millisecond)
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
		cancel()
		wg.Wait()
		cl.Disconnect(0)
	}
	mu.Lock()
	nAcked := len(acked)
	mu.Unlock()
	if nAcked == 0 {
		t.Fatal("no reading was acknowledged; the test proves nothing")
	}
	cmd, _ := serveChild(t, dir, "--hl7-forward", ehr.addr())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var missing, dups int
	deadline := time.Now().Add(90 * time.Second)
	for {
		times, _ := ehr.received(e.patient)
		got := map[int64]int{}
		for _, ts := range times {
			got[int64(ts.Sub(base)/time.Millisecond)]++
		}
		missing, dups = 0, 0
		for i := range acked {
			if got[i] == 0 {
				missing++
			}
		}
		for _, n := range got {
			if n > 1 {
				dups++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d readings acknowledged by ingest; %d reached the EHR more than once (allowed: at least once)", nAcked, dups)
	if missing > 0 {
		t.Errorf("%d acknowledged readings never reached the EHR after kill -9", missing)
	}
}

// TestHL7ADTBindAndForward admits a patient over MLLP to a bed whose
// monitor is registered there: the monitor is bound to the patient, its
// readings reach the EHR with the patient's hospital identifier and bed,
// the location history shows the stay, and a discharge unbinds it.
func TestHL7ADTBindAndForward(t *testing.T) {
	ehr := startTestEHR(t, "127.0.0.1:0")
	dir := t.TempDir()
	n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "off", MLLPAddr: "127.0.0.1:0",
		BootstrapToken: testToken, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard,
		HL7ADTBind: true, HL7Forward: node.HL7Forward{Addr: ehr.addr()}})
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	addrs := readListen(t, dir)
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	d := c.must(201, "POST", "/fhir/Device", "application/fhir+json", []byte(
		`{"resourceType":"Device","identifier":[{"system":"urn:tend:location","value":"WEST/ICU/12/A"}],"manufacturer":"Acme"}`))
	dev := d["id"].(string)
	secret := c.must(200, "POST", "/api/v1/devices/"+dev+"/credentials", "", nil)["secret"].(string)

	hl7c := &mllp.Client{Addr: addrs.MLLP}
	defer hl7c.Close()
	admitted := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	send := func(event, ctrl, pv1 string, at time.Time) {
		msg := "MSH|^~\\&|ADT|HOSP|||" + at.Format("20060102150405") + "+0000||ADT^" + event + "^ADT_A01|" + ctrl + "|P|2.5.1\r" +
			"EVN|" + event + "|" + at.Format("20060102150405") + "+0000\rPID|||M77^^^HOSP^MR||Roe^Ann\r" + pv1 + "\r"
		ack, err := hl7c.Send(context.Background(), []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if a, err := hl7.Parse(ack); err != nil || a.First("MSA").C(1, 1) != hl7.AA {
			t.Fatalf("%s answered %q", event, ack)
		}
	}
	send("A01", "ADT-1", "PV1||I|ICU^12^A^WEST", admitted)
	dev1 := c.must(200, "GET", "/fhir/Device/"+dev, "", nil)
	ref, _ := dev1["patient"].(map[string]any)
	patient := strings.TrimPrefix(fmt.Sprint(ref["reference"]), "Patient/")
	if patient == "" || patient == "<nil>" {
		t.Fatalf("device not bound by the admission: %v", dev1)
	}
	ts := time.Now().Add(-time.Minute)
	sec := api{t: t, base: c.base, token: secret}
	sec.must(202, "POST", "/api/v1/devices/"+dev+"/obs", "application/senml+json",
		[]byte(fmt.Sprintf(`[{"n":"spo2","u":"%%","v":95,"t":%d}]`, ts.Unix())))
	waitForwarded(t, ehr, patient, 1)
	ehr.mu.Lock()
	where, ids := ehr.where[patient], strings.Join(ehr.ids[patient], ",")
	ehr.mu.Unlock()
	if where != "WEST/ICU/12/A" || !strings.Contains(ids, "HOSP:M77") {
		t.Errorf("EHR got location %q and identifiers %s, want WEST/ICU/12/A and HOSP:M77", where, ids)
	}
	locs := c.must(200, "GET", "/api/v1/patients/"+patient+"/locations", "", nil)["locations"].([]any)
	if len(locs) != 1 || locs[0].(map[string]any)["location"] != "WEST/ICU/12/A" || locs[0].(map[string]any)["from"] != admitted.Format(time.RFC3339) {
		t.Errorf("locations %v", locs)
	}
	send("A03", "ADT-2", "PV1||I", time.Now().UTC().Truncate(time.Second))
	if d := c.must(200, "GET", "/fhir/Device/"+dev, "", nil); d["patient"] != nil {
		t.Errorf("device still bound after discharge: %v", d["patient"])
	}
}
