package outbound

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/hl7/inbound"
	"github.com/tendhealth/tend/internal/hl7/pcd"
	"github.com/tendhealth/tend/internal/mllp"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// memStream hands its messages to the consumer in order and counts what
// was acknowledged, like a durable consumer.
type memStream struct {
	mu    sync.Mutex
	msgs  [][]byte
	acked int
	more  chan struct{}
}

func newMemStream() *memStream { return &memStream{more: make(chan struct{}, 1)} }

func (s *memStream) add(rs ...reading.Reading) {
	s.mu.Lock()
	s.msgs = append(s.msgs, reading.EncodeBatch(rs))
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
}

func (s *memStream) Consume(ctx context.Context, _ string, maxBatch int, handle func(context.Context, [][]byte) error) error {
	for {
		s.mu.Lock()
		batch := s.msgs[s.acked:min(len(s.msgs), s.acked+maxBatch)]
		s.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-s.more:
				continue
			}
		}
		if err := handle(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		s.mu.Lock()
		s.acked += len(batch)
		s.mu.Unlock()
	}
}

func (s *memStream) ackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

type memRegistry struct {
	mu   sync.Mutex
	dead []store.DeadLetter
}

func (r *memRegistry) Patient(_ context.Context, id string) (store.Patient, error) {
	return store.Patient{ID: id, Identifiers: []store.Identifier{{System: "urn:tend:hl7:authority:HOSP", Value: "MRN-" + id}},
		Resource: []byte(`{"resourceType":"Patient","name":[{"family":"Doe","given":["Jane"]}]}`)}, nil
}

func (r *memRegistry) Device(_ context.Context, id string) (store.Device, error) {
	return store.Device{ID: id, Identifiers: []store.Identifier{{System: EquipmentSystem, Value: "00112233445566" + id[len(id)-2:]}}}, nil
}

func (r *memRegistry) Locations(context.Context, string) ([]store.LocationStay, error) {
	return []store.LocationStay{{Location: "ICU/1/A", From: t0.Add(-time.Hour)}}, nil
}

func (r *memRegistry) AddDeadLetter(_ context.Context, d *store.DeadLetter) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	d.ID = int64(len(r.dead) + 1)
	r.dead = append(r.dead, *d)
	return nil
}

// ehr is a test EHR on a real MLLP listener: it answers every ORU^R01 as
// answer says and records the readings of those it accepted.
type ehr struct {
	mu       sync.Mutex
	answer   func(n int, m *hl7.Message) (code string, text string, delay time.Duration)
	received int                  // messages seen, answered or not
	accepted map[string][]float64 // patient MRN → values accepted, in order
	controls map[string]int       // control id → times accepted
}

func (e *ehr) HandleHL7(_ context.Context, raw []byte, _ bool) func() []byte {
	m, err := hl7.Parse(raw)
	if err != nil {
		ack := hl7.AckUnparsed(raw, hl7.AR, []*hl7.Error{{Msg: err.Error()}}, "EHR", time.Now())
		return func() []byte { return ack }
	}
	e.mu.Lock()
	e.received++
	code, text, delay := hl7.AA, "", time.Duration(0)
	if e.answer != nil {
		code, text, delay = e.answer(e.received, m)
	}
	if code == hl7.AA {
		rep, errs := pcd.ParseORU(m, time.Now().Add(24*time.Hour), pcd.Limits{})
		if len(errs) > 0 {
			panic(fmt.Sprint(errs))
		}
		mrn := rep.Patients[0].IDs[0].Value
		for _, r := range rep.Readings {
			e.accepted[mrn] = append(e.accepted[mrn], r.Value)
		}
		e.controls[m.Header().ControlID]++
	}
	e.mu.Unlock()
	var errs []*hl7.Error
	if text != "" {
		errs = append(errs, &hl7.Error{Segment: "PID", Sequence: 2, Field: 3, Code: hl7.ErrUnknownKey, Msg: text})
	}
	ack := hl7.Ack(m, code, errs, "EHR-ACK", time.Now())
	return func() []byte {
		time.Sleep(delay)
		return ack
	}
}

func startEHR(t *testing.T, e *ehr, addr string) *mllp.Server {
	t.Helper()
	e.accepted, e.controls = map[string][]float64{}, map[string]int{}
	s := &mllp.Server{Addr: addr, Handler: e}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func hr(patient string, i int) reading.Reading {
	return reading.Reading{Patient: patient, Device: "dev-" + patient, Code: codes.HeartRate, Value: float64(40 + i), HasValue: true,
		Unit: "/min", Time: t0.Add(time.Duration(i) * time.Second)}
}

func newForwarder(st *memStream, reg *memRegistry, addr string, sleep func(context.Context, time.Duration) error) *Forwarder {
	return &Forwarder{Stream: st, Registry: reg, Sender: &mllp.Client{Addr: addr, AckTimeout: 200 * time.Millisecond, DialTimeout: time.Second},
		Header: Header{ReceivingApp: "EHR"}, MaxBatch: 3, Now: func() time.Time { return t0 }, Sleep: sleep}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The EHR is down when forwarding starts and rejects some messages (AR)
// once up: every reading still arrives, each patient's in order, none
// twice, and the stream is acknowledged only as far as the EHR accepted.
func TestForwarderOutageAndRejectionsKeepOrder(t *testing.T) {
	addr := freeAddr(t)
	e := &ehr{answer: func(n int, _ *hl7.Message) (string, string, time.Duration) {
		if n%3 == 0 {
			return hl7.AR, "busy", 0
		}
		return hl7.AA, "", 0
	}}
	st, reg := newMemStream(), &memRegistry{}
	const perPatient = 20
	for i := 0; i < perPatient; i++ {
		st.add(hr("a", i), hr("b", i))
	}
	var mu sync.Mutex
	var waits []time.Duration
	up := false
	f := newForwarder(st, reg, addr, func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		if len(waits) == 6 && !up {
			up = true
			if st.ackedCount() != 0 {
				t.Errorf("stream acknowledged %d messages while the EHR was down", st.ackedCount())
			}
			startEHR(t, e, addr)
		}
		return ctx.Err()
	})
	promReg := prometheus.NewRegistry()
	m, err := NewMetrics(promReg, func(context.Context) (uint64, error) { return uint64(perPatient - st.ackedCount()), nil })
	if err != nil {
		t.Fatal(err)
	}
	f.Metrics = m
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitFor(t, "every message acknowledged", func() bool { return st.ackedCount() == perPatient })
	f.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range []string{"a", "b"} {
		got := e.accepted["MRN-"+p]
		if len(got) != perPatient {
			t.Fatalf("patient %s: %d readings accepted, want %d: %v", p, len(got), perPatient, got)
		}
		for i, v := range got {
			if v != float64(40+i) {
				t.Fatalf("patient %s: reading %d is %v, want %v (order or gap): %v", p, i, v, 40+i, got)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	got := gather(t, promReg)
	for name, want := range map[string]float64{
		`tend_hl7_forward_messages_total{ack="AA"}`: 2 * perPatient,
		"tend_hl7_forwarded_readings_total":         2 * perPatient,
		"tend_hl7_forward_retries_total":            float64(len(waits)),
		"tend_hl7_forward_queue_lag":                0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("metric %s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	if waits[0] != 100*time.Millisecond || waits[1] != 200*time.Millisecond || waits[5] != 3200*time.Millisecond {
		t.Errorf("backoff %v, want 100ms doubling", waits[:6])
	}
}

// AE: the message is kept as a dead letter with the EHR's reason, and the
// readings after it are forwarded.
func TestForwarderDeadLettersAE(t *testing.T) {
	addr := freeAddr(t)
	e := &ehr{answer: func(_ int, m *hl7.Message) (string, string, time.Duration) {
		if m.First("OBX").C(5, 1) == "42" {
			return hl7.AE, "patient MRN-a is not known here", 0
		}
		return hl7.AA, "", 0
	}}
	startEHR(t, e, addr)
	st, reg := newMemStream(), &memRegistry{}
	for i := 0; i < 5; i++ {
		st.add(hr("a", i))
	}
	f := newForwarder(st, reg, addr, nil)
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitFor(t, "every message acknowledged", func() bool { return st.ackedCount() == 5 })
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(reg.dead))
	}
	dl := reg.dead[0]
	if dl.Source != DeadLetterSource || dl.ContentType != DeadLetterContentType || dl.Device != "dev-a" ||
		!strings.Contains(dl.Reason, "AE") || !strings.Contains(dl.Reason, "patient MRN-a is not known here") {
		t.Errorf("dead letter %+v", dl)
	}
	if m, err := hl7.Parse(dl.Payload); err != nil || m.First("OBX").C(5, 1) != "42" {
		t.Errorf("dead letter payload is not the refused message: %v", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if got := e.accepted["MRN-a"]; len(got) != 4 || got[2] != 43 {
		t.Errorf("accepted %v, want 40 41 43 44", got)
	}
}

// No answer in time: the message is sent again under the same control id
// (the EHR may drop the duplicate), and only then does the next follow.
func TestForwarderResendsUnansweredUnderSameControlID(t *testing.T) {
	addr := freeAddr(t)
	e := &ehr{answer: func(n int, _ *hl7.Message) (string, string, time.Duration) {
		if n == 2 {
			return hl7.AA, "", 500 * time.Millisecond // beyond the client's 200 ms
		}
		return hl7.AA, "", 0
	}}
	startEHR(t, e, addr)
	st, reg := newMemStream(), &memRegistry{}
	for i := 0; i < 3; i++ {
		st.add(hr("a", i))
	}
	retries := 0
	f := newForwarder(st, reg, addr, func(ctx context.Context, d time.Duration) error { retries++; return ctx.Err() })
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitFor(t, "every message acknowledged", func() bool { return st.ackedCount() == 3 })
	f.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	if got := e.accepted["MRN-a"]; fmt.Sprint(got) != "[40 41 41 42]" {
		t.Errorf("accepted %v, want the second reading twice, in order", got)
	}
	dups := 0
	for _, n := range e.controls {
		if n > 1 {
			dups++
		}
	}
	if dups != 1 || len(e.controls) != 3 || retries != 1 {
		t.Errorf("control ids %v, retries %d: want one id accepted twice after one retry", e.controls, retries)
	}
}

// A batch whose messages are redelivered (the stream's ack wait ran out
// while a send was being retried) is not sent to the EHR again.
func TestForwarderSkipsRedeliveredAnswered(t *testing.T) {
	addr := freeAddr(t)
	e := &ehr{}
	startEHR(t, e, addr)
	reg := &memRegistry{}
	f := newForwarder(newMemStream(), reg, addr, nil)
	f.defaults()
	msgs := [][]byte{reading.EncodeBatch([]reading.Reading{hr("a", 0), hr("b", 0)}), reading.EncodeBatch([]reading.Reading{hr("a", 1)})}
	for i := 0; i < 2; i++ {
		if err := f.Handle(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.received != 3 {
		t.Errorf("EHR received %d messages, want 3", e.received)
	}
}

func TestByPatient(t *testing.T) {
	rs := []reading.Reading{hr("a", 0), hr("b", 0), {Patient: "a", Code: codes.Battery, Value: 50, HasValue: true}, hr("a", 1), hr("a", 2), {Code: codes.HeartRate}}
	got := byPatient(rs, 2)
	var shape []string
	for _, g := range got {
		var s []string
		for _, r := range g {
			s = append(s, fmt.Sprintf("%s%v", r.Patient, r.Value))
		}
		shape = append(shape, strings.Join(s, ","))
	}
	if want := "a40,a41|a42|b40"; strings.Join(shape, "|") != want {
		t.Errorf("groups %v, want %s", shape, want)
	}
}

func TestBackoffIsCapped(t *testing.T) {
	for failures, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 8: 12800 * time.Millisecond, 9: 25600 * time.Millisecond, 10: 30 * time.Second, 1000: 30 * time.Second} {
		if got := backoff(failures, 30*time.Second); got != want {
			t.Errorf("backoff(%d) = %v, want %v", failures, got, want)
		}
	}
}

// gather reads every metric of reg as name{label="value"} → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if lp := m.GetLabel(); len(lp) > 0 {
				name += "{" + lp[0].GetName() + "=\"" + lp[0].GetValue() + "\"}"
			}
			switch {
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// OBX-18 goes out as the equipment id HL7 ingest registered the device by.
func TestEquipmentSystemMatchesInbound(t *testing.T) {
	if EquipmentSystem != inbound.EquipmentSystem {
		t.Errorf("EquipmentSystem %q, inbound uses %q", EquipmentSystem, inbound.EquipmentSystem)
	}
}
