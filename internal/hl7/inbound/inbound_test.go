package inbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/hl7/pcd"
	"github.com/tendhealth/tend/internal/ingest"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const sharedDir = "../../../../shared/testdata/hl7"

// appender commits straight into the store, like the stream and store
// writer do in a node, and counts commits.
type appender struct {
	s       store.Store
	mu      sync.Mutex
	commits int
	fail    error
}

func (a *appender) Commit(ctx context.Context, rs []reading.Reading) error {
	a.mu.Lock()
	a.commits++
	fail := a.fail
	a.mu.Unlock()
	if fail != nil {
		return fail
	}
	_, err := a.s.Append(ctx, rs)
	return err
}

type alarmSink struct{ got []alarm.External }

func (a *alarmSink) RaiseExternal(_ context.Context, x alarm.External) error {
	a.got = append(a.got, x)
	return nil
}

type fixture struct {
	h      *Handler
	store  store.Store
	commit *appender
	alarms *alarmSink
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := &appender{s: s}
	clock := func() time.Time { return now }
	p := ingest.NewPipeline(s, c, clock, log, nil)
	a := &alarmSink{}
	h := &Handler{Registry: s, Commit: c, DeadLetters: p, Alarms: a, Limits: pcd.DefaultLimits, Now: clock, Logger: log}
	return &fixture{h: h, store: s, commit: c, alarms: a}
}

func (f *fixture) patient(t testing.TB, id, mrn string) {
	t.Helper()
	p := &store.Patient{ID: id, Identifiers: []store.Identifier{{System: "urn:example:mrn", Value: mrn}},
		Resource: []byte(`{"resourceType":"Patient","id":"` + id + `"}`)}
	if err := f.store.CreatePatient(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) device(t testing.TB, id, equipment, boundTo string) {
	t.Helper()
	d := &store.Device{ID: id, Patient: boundTo, Identifiers: []store.Identifier{{System: "urn:ieee:eui64", Value: equipment}},
		Resource: []byte(`{"resourceType":"Device","id":"` + id + `"}`)}
	if err := f.store.CreateDevice(context.Background(), d, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) send(msg string) string {
	return string(f.h.HandleHL7(context.Background(), []byte(msg), false)())
}

func readShared(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sharedDir, name))
	if err != nil {
		t.Skipf("shared example %s not available: %v", name, err)
	}
	return string(b)
}

// msa returns MSA-1 and the ERR segments of an ACK.
func msa(t *testing.T, ack string) (string, []string) {
	t.Helper()
	m, err := hl7.Parse([]byte(ack))
	if err != nil {
		t.Fatalf("ACK does not parse: %v\n%q", err, ack)
	}
	var errs []string
	for _, e := range m.All("ERR") {
		if e.C(3, 1) == "" { // before v2.5: ERR-1 segment^seq^field^code&text
			errs = append(errs, e.Get(1, 1, 4, 1)+" "+m.First("MSA").C(3, 1))
			continue
		}
		errs = append(errs, e.C(3, 1)+" "+e.C(8, 1))
	}
	return m.First("MSA").C(1, 1), errs
}

func TestSharedExamplesAreStoredAndAcknowledged(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p-hon", "HO2009001")
	f.patient(t, "p-beds", "12345")
	f.device(t, "d-philips", "0600dc750001", "")
	f.device(t, "d-acme", "080019FFFE3ED02D172.16.172.135", "")
	files, _ := filepath.Glob(filepath.Join(sharedDir, "*.hl7"))
	if len(files) == 0 {
		t.Skipf("no shared HL7 examples at %s", sharedDir)
	}
	var acks bytes.Buffer
	for _, path := range files {
		raw := readShared(t, filepath.Base(path))
		ack := f.send(raw)
		if code, errs := msa(t, ack); code != hl7.AA {
			t.Fatalf("%s answered %s %v", filepath.Base(path), code, errs)
		}
		acks.WriteString(strings.ReplaceAll(ack, "\r", "\n") + "\n")
		// A resend is acknowledged again and stores nothing new.
		commits := f.commit.commits
		if code, _ := msa(t, f.send(raw)); code != hl7.AA || f.commit.commits != commits {
			t.Fatalf("resend of %s: %s, %d new commits", filepath.Base(path), code, f.commit.commits-commits)
		}
	}
	golden(t, "acks-shared.golden", acks.Bytes())
	for patient, want := range map[string]int{"p-hon": 4, "p-beds": 2} {
		n, err := f.store.CountSamples(context.Background(), store.Query{Patient: patient})
		if err != nil || n != want {
			t.Fatalf("%s has %d readings (%v), want %d", patient, n, err, want)
		}
	}
	ss, _ := f.store.Samples(context.Background(), store.Query{Patient: "p-beds", Oldest: true})
	if ss[0].Device != "d-acme" || ss[0].Source != Source || len(ss[0].Components) != 3 {
		t.Fatalf("stored BP %+v", ss[0].Reading)
	}
	// After the duplicate cache is gone a resend is stored once anyway.
	f.h.seen = recent{}
	raw := readShared(t, "ihe-pcd01-E1.2-episodic-nibp.hl7")
	if code, _ := msa(t, f.send(raw)); code != hl7.AA {
		t.Fatal("resend after restart not AA")
	}
	if n, _ := f.store.CountSamples(context.Background(), store.Query{Patient: "p-beds"}); n != 2 {
		t.Fatalf("resend stored twice: %d readings", n)
	}
}

const oru = "MSH|^~\\&|GW^0800^EUI-64|F|||20260101120000+0000||ORU^R01^ORU_R01|C1|P|2.6\r" +
	"PID|||P1^^^H^MR\rOBR|1|||X|||20260101115900+0000\r" +
	"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R|||||||DEV-1\r"

func TestRefusals(t *testing.T) {
	cases := []struct {
		name, msg, code, err string
		deadLetter           bool
	}{
		{"garbage", "hello", hl7.AR, "100", true},
		{"unsupported version", strings.Replace(oru, "|2.6", "|2.2", 1), hl7.AR, "203", false},
		{"unsupported type", strings.Replace(oru, "ORU^R01^ORU_R01", "ORM^O01", 1), hl7.AR, "200", false},
		{"unsupported ADT event", strings.Replace(oru, "ORU^R01^ORU_R01", "ADT^A40", 1), hl7.AR, "201", false},
		{"no control id", strings.Replace(oru, "|C1|", "||", 1), hl7.AR, "101", false},
		{"training message", strings.Replace(oru, "|C1|P|", "|C1|T|", 1), hl7.AR, "103", false},
		{"bad value", strings.Replace(oru, "|97|", "|9;7|", 1), hl7.AE, "102", true},
		{"out of range", strings.Replace(oru, "|97|", "|101|", 1), hl7.AE, "102", true},
		{"unknown device", strings.Replace(oru, "DEV-1", "DEV-X", 1), hl7.AE, "204", true},
		{"unknown patient, unbound device", strings.Replace(oru, "P1^", "P9^", 1), hl7.AE, "204", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.patient(t, "p1", "P1")
			f.device(t, "d1", "DEV-1", "")
			ack := f.send(c.msg)
			code, errs := msa(t, ack)
			if code != c.code || len(errs) == 0 || !strings.HasPrefix(errs[0], c.err+" ") {
				t.Fatalf("answered %s %v, want %s with ERR code %s\n%q", code, errs, c.code, c.err, ack)
			}
			dls, _ := f.store.DeadLetters(context.Background(), 10, 0)
			if (len(dls) > 0) != c.deadLetter {
				t.Fatalf("%d dead letters, want kept=%v", len(dls), c.deadLetter)
			}
			if c.deadLetter && (dls[0].Source != Source || dls[0].ContentType != ContentType || !strings.Contains(errs[0], "dead letter")) {
				t.Fatalf("dead letter %+v, ERR %q", dls[0], errs[0])
			}
			if n, _ := f.store.CountSamples(context.Background(), store.Query{Patient: "p1"}); n != 0 {
				t.Fatalf("refused message stored %d readings", n)
			}
		})
	}
}

func TestTooLargeIsRefusedAndKept(t *testing.T) {
	f := newFixture(t)
	ack := string(f.h.HandleHL7(context.Background(), []byte(oru[:60]), true)())
	if code, errs := msa(t, ack); code != hl7.AR || !strings.Contains(errs[0], "larger") {
		t.Fatalf("answered %s %v", code, errs)
	}
}

func TestBoundDeviceWithoutPID(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "P1")
	f.device(t, "d1", "DEV-1", "p1")
	msg := strings.Replace(oru, "PID|||P1^^^H^MR\r", "", 1)
	if code, errs := msa(t, f.send(msg)); code != hl7.AA {
		t.Fatalf("answered %s %v", code, errs)
	}
	if n, _ := f.store.CountSamples(context.Background(), store.Query{Patient: "p1"}); n != 1 {
		t.Fatalf("%d readings for the bound patient", n)
	}
}

func TestAutoRegister(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "P1")
	f.h.AutoRegister = true
	if code, errs := msa(t, f.send(oru)); code != hl7.AA {
		t.Fatalf("answered %s %v", code, errs)
	}
	d, err := f.store.DeviceByIdentifier(context.Background(), store.Identifier{System: EquipmentSystem, Value: "DEV-1"})
	if err != nil || !strings.HasPrefix(d.ID, "hl7-") {
		t.Fatalf("device not registered: %+v %v", d, err)
	}
	// A second handler (another node, or after a restart) meets the same device.
	f.h.devices = cache{}
	if code, _ := msa(t, f.send(strings.Replace(oru, "|C1|", "|C2|", 1))); code != hl7.AA {
		t.Fatal("second message refused")
	}
}

func TestCommitFailureIsNotAcknowledged(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "P1")
	f.device(t, "d1", "DEV-1", "")
	f.commit.fail = errors.New("stream down")
	if code, errs := msa(t, f.send(oru)); code != hl7.AR || !strings.HasPrefix(errs[0], "207 ") {
		t.Fatalf("answered %s %v", code, errs)
	}
	// The failure is not remembered as a success: the resend is stored.
	f.commit.fail = nil
	if code, _ := msa(t, f.send(oru)); code != hl7.AA {
		t.Fatal("resend after recovery refused")
	}
	if n, _ := f.store.CountSamples(context.Background(), store.Query{Patient: "p1"}); n != 1 {
		t.Fatalf("%d readings after resend", n)
	}
}

func TestADT(t *testing.T) {
	f := newFixture(t)
	// Step i happens at 12:0i; the EVN time is what the location history uses.
	adt := func(event, ctrl, pid, pv1 string) string {
		at := "2026010112" + fmt.Sprintf("%02d", int(ctrl[1]-'0')) + "00"
		return "MSH|^~\\&|ADT|HOSP|||20260101130000||ADT^" + event + "^ADT_A01|" + ctrl + "|P|2.5.1\r" +
			"EVN|" + event + "|" + at + "\r" + pid + "\r" + pv1 + "\r"
	}
	steps := []struct {
		event, pid, pv1, code string
	}{
		{"A11", "PID|||M77^^^HOSP^MR||Roe^Ann", "PV1||I", hl7.AE}, // nothing to cancel yet
		{"A01", "PID|||M77^^^HOSP^MR||Roe^Ann^B||19800102|F", "PV1||I|ICU^12^A^WEST", hl7.AA},
		{"A08", "PID|||M77^^^HOSP^MR~N55^^^NHS^NH||Roe-Smith^Ann||19800102|F", "PV1||I|ICU^12^A^WEST", hl7.AA},
		{"A02", "PID|||M77^^^HOSP^MR", "PV1||I|WARD3^4^B^WEST", hl7.AA},
		{"A03", "PID|||M77^^^HOSP^MR", "PV1||I", hl7.AA},
	}
	for i, s := range steps {
		if code, errs := msa(t, f.send(adt(s.event, "A"+string(rune('0'+i)), s.pid, s.pv1))); code != s.code {
			t.Fatalf("%s answered %s %v, want %s", s.event, code, errs, s.code)
		}
	}
	ps, n, err := f.store.Patients(context.Background(), &store.Identifier{Value: "N55"}, 10, 0)
	if err != nil || n != 1 {
		t.Fatalf("patient by new identifier: %d %v", n, err)
	}
	var res map[string]any
	if err := json.Unmarshal(ps[0].Resource, &res); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	golden(t, "adt-patient.golden.json", append(b, '\n'))
	stays, err := f.store.Locations(context.Background(), ps[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.MarshalIndent(stays, "", "  ")
	golden(t, "adt-locations.golden.json", append(b, '\n'))
	if ps[0].Version != 4 {
		t.Fatalf("patient version %d, want 4 (created, then 3 updates)", ps[0].Version)
	}
}

func TestDeviceAlarms(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "P1")
	f.device(t, "d1", "DEV-1", "")
	r40 := "MSH|^~\\&|GW^0800^EUI-64|F|||20260101120000+0000||ORU^R40^ORU_R40|R1|P|2.6\r" +
		"PID|||P1^^^H^MR\rOBR|1|||196616^MDC_EVT_ALARM^MDC|||20260101115900+0000\r" +
		"OBX|1|ST|196674^MDC_EVT_LO_VAL_LT_LIM^MDC|1.1.1.150456.1|^SpO2 low|||PH~SP|||F|||||||DEV-1\r" +
		"OBX|2|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.1.1.150456.3|start||||||F\r" +
		"OBR|2|||196616^MDC_EVT_ALARM^MDC|||20260101115930+0000\r" +
		"OBX|1|ST|196652^MDC_EVT_LEAD_OFF^MDC|1.1.1.0.1|^Leads off|||PM~ST|||F|||||||DEV-1\r" +
		"OBX|2|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.1.1.0.3|end||||||F\r"
	if code, errs := msa(t, f.send(r40)); code != hl7.AA {
		t.Fatalf("answered %s %v", code, errs)
	}
	b, _ := json.MarshalIndent(f.alarms.got, "", "  ")
	golden(t, "alarms.golden.json", append(b, '\n'))
	bad := strings.Replace(r40, "PH~SP", "SP", 1)
	if code, _ := msa(t, f.send(strings.Replace(bad, "|R1|", "|R2|", 1))); code != hl7.AE {
		t.Fatalf("alarm without priority answered %s", code)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n got: %s\nwant: %s", path, got, want)
	}
}

func TestReplayDeadLetter(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "P1")
	if code, _ := msa(t, f.send(oru)); code != hl7.AE {
		t.Fatalf("unknown device answered %s", code)
	}
	dls, _ := f.store.DeadLetters(context.Background(), 10, 0)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters", len(dls))
	}
	req := ingest.Request{Source: dls[0].Source, Device: dls[0].Device, ContentType: dls[0].ContentType, Payload: dls[0].Payload}
	// Still refused, with the reason, and not kept a second time.
	_, err := f.h.Replay(context.Background(), req)
	var rej *ingest.Rejection
	if !errors.As(err, &rej) || !strings.Contains(rej.Reason, "not a registered device") {
		t.Fatalf("replay before the fix: %v", err)
	}
	if dls, _ := f.store.DeadLetters(context.Background(), 10, 0); len(dls) != 1 {
		t.Fatalf("replay kept another dead letter: %d", len(dls))
	}
	f.device(t, "d1", "DEV-1", "")
	n, err := f.h.Replay(context.Background(), req)
	if err != nil || n != 1 {
		t.Fatalf("replay after registering the device: %d, %v", n, err)
	}
	if n, _ := f.store.CountSamples(context.Background(), store.Query{Patient: "p1"}); n != 1 {
		t.Fatalf("%d readings after replay", n)
	}
}
