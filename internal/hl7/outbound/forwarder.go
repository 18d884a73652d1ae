package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// DefaultDurable is the forwarder's consumer on the readings stream.
const DefaultDurable = "tend-hl7-forwarder"

// DeadLetterSource marks messages the EHR refused (AE) in the dead-letter
// store.
const DeadLetterSource = "hl7-forward"

// DeadLetterContentType labels them: an HL7 v2 message Tend sent, which a
// replay must not read as one it received.
const DeadLetterContentType = "application/hl7-v2+er7; direction=outbound"

// EquipmentSystem is the identifier system of HL7 equipment ids (the same
// as inbound's), sent back in OBX-18.
const EquipmentSystem = "urn:tend:hl7:equipment"

const (
	defaultMaxBatch   = 64
	defaultMaxOBX     = 100
	defaultMaxBackoff = 30 * time.Second
	lagTimeout        = time.Second
)

// Consumer is the stream side; *stream.Stream satisfies it.
type Consumer interface {
	Consume(ctx context.Context, durable string, maxBatch int, handle func(ctx context.Context, msgs [][]byte) error) error
}

// Registry is what the forwarder reads about patients and devices and
// where it keeps refused messages; store.Store satisfies it.
type Registry interface {
	Patient(ctx context.Context, id string) (store.Patient, error)
	Device(ctx context.Context, id string) (store.Device, error)
	Locations(ctx context.Context, patient string) ([]store.LocationStay, error)
	AddDeadLetter(ctx context.Context, d *store.DeadLetter) error
}

// Sender sends one message and returns the receiver's answer;
// *mllp.Client satisfies it.
type Sender interface {
	Send(ctx context.Context, msg []byte) ([]byte, error)
	Close() error
}

// Forwarder moves readings from the stream to the EHR, strictly one
// message at a time: a message waits until the one before it was
// accepted or refused, so readings of a patient arrive in the order they
// became durable. Set the fields, then call Start.
type Forwarder struct {
	Stream   Consumer
	Registry Registry
	Sender   Sender
	Header   Header
	Durable  string // "" means DefaultDurable
	MaxBatch int    // stream messages per fetch; 0 means 64
	MaxOBX   int    // readings per ORU; 0 means 100
	// MaxBackoff caps the wait between retries (default 30 s); the first
	// retry waits 100 ms.
	MaxBackoff time.Duration
	Now        func() time.Time
	// Sleep waits d or until ctx ends; nil uses a timer (tests make it
	// instant).
	Sleep   func(ctx context.Context, d time.Duration) error
	Logger  *slog.Logger
	Metrics *Metrics

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	started bool
	// answered holds the control ids of recent messages the EHR answered,
	// so stream messages redelivered while a send was being retried
	// (after the stream's ack wait) are not sent a second time.
	answered map[string]struct{}
	ring     []string
	next     int
}

const answeredMemory = 4096

func (f *Forwarder) remember(ctrl string) {
	if f.answered == nil {
		f.answered = make(map[string]struct{}, answeredMemory)
		f.ring = make([]string, answeredMemory)
	}
	if old := f.ring[f.next]; old != "" {
		delete(f.answered, old)
	}
	f.ring[f.next] = ctrl
	f.next = (f.next + 1) % answeredMemory
	f.answered[ctrl] = struct{}{}
}

// Start consumes in the background until ctx ends or Close.
func (f *Forwarder) Start(ctx context.Context) error {
	if f.Stream == nil || f.Registry == nil || f.Sender == nil {
		return errors.New("hl7 forwarder: Stream, Registry and Sender are required")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started {
		return errors.New("hl7 forwarder: already started")
	}
	f.started = true
	f.defaults()
	ctx, f.cancel = context.WithCancel(ctx)
	f.done = make(chan struct{})
	go f.run(ctx)
	return nil
}

func (f *Forwarder) defaults() {
	if f.Durable == "" {
		f.Durable = DefaultDurable
	}
	if f.MaxBatch <= 0 {
		f.MaxBatch = defaultMaxBatch
	}
	if f.MaxOBX <= 0 {
		f.MaxOBX = defaultMaxOBX
	}
	if f.MaxBackoff <= 0 {
		f.MaxBackoff = defaultMaxBackoff
	}
	if f.Now == nil {
		f.Now = time.Now
	}
	if f.Sleep == nil {
		f.Sleep = sleep
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	f.Logger = f.Logger.With("component", "hl7-forwarder")
}

// Close stops forwarding and waits for the message in hand: it is either
// answered or abandoned unacknowledged, and then sent again on the next
// start.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	cancel, done := f.cancel, f.done
	f.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	return f.Sender.Close()
}

func (f *Forwarder) run(ctx context.Context) {
	defer close(f.done)
	for failures := 1; ctx.Err() == nil; failures++ {
		err := f.Stream.Consume(ctx, f.Durable, f.MaxBatch, f.Handle)
		if ctx.Err() != nil {
			return
		}
		delay := backoff(failures, f.MaxBackoff)
		f.Logger.Error("stream consumer stopped; restarting", "retry_in", delay, "err", err)
		if f.Sleep(ctx, delay) != nil {
			return
		}
	}
}

// Handle forwards the readings of a set of stream messages, in order. It
// returns only when every message was answered with AA or kept as a dead
// letter after AE (nil), or when ctx ended (its error): the stream then
// delivers the set again.
func (f *Forwarder) Handle(ctx context.Context, msgs [][]byte) error {
	for _, m := range msgs {
		rs, err := reading.DecodeBatch(m)
		if err != nil {
			// The store writer keeps undecodable messages as dead letters;
			// here they carry nothing to forward. Size only: no PHI in logs.
			f.Logger.Warn("undecodable stream message not forwarded", "bytes", len(m), "err", err)
			continue
		}
		for _, group := range byPatient(rs, f.MaxOBX) {
			if err := f.forward(ctx, group); err != nil {
				return err
			}
		}
	}
	return nil
}

// byPatient splits readings into per-patient messages of at most max
// readings, keeping their order; readings without a patient or with a
// code an EHR cannot know are left out.
func byPatient(rs []reading.Reading, max int) [][]reading.Reading {
	var order []string
	groups := map[string][]reading.Reading{}
	for i := range rs {
		r := &rs[i]
		if r.Patient == "" || !Forwardable(r) {
			continue
		}
		if _, ok := groups[r.Patient]; !ok {
			order = append(order, r.Patient)
		}
		groups[r.Patient] = append(groups[r.Patient], *r)
	}
	var out [][]reading.Reading
	for _, p := range order {
		g := groups[p]
		for len(g) > max {
			out = append(out, g[:max])
			g = g[max:]
		}
		out = append(out, g)
	}
	return out
}

// forward sends one patient's readings until the EHR answers AA or AE.
func (f *Forwarder) forward(ctx context.Context, rs []reading.Reading) error {
	for failures := 1; ; failures++ {
		msg, ctrl, err := f.build(ctx, rs)
		if _, done := f.answered[ctrl]; done && err == nil {
			return nil
		}
		if err == nil {
			var outcome string
			outcome, err = f.send(ctx, msg, ctrl, rs)
			if err == nil {
				f.remember(ctrl)
				if f.Metrics != nil {
					f.Metrics.messages.WithLabelValues(outcome).Inc()
					if outcome == hl7.AA {
						f.Metrics.readings.Add(float64(len(rs)))
					}
				}
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if f.Metrics != nil {
			f.Metrics.retries.Inc()
		}
		delay := backoff(failures, f.MaxBackoff)
		f.Logger.Warn("HL7 message not accepted; retrying", "control_id", ctrl, "attempt", failures, "retry_in", delay, "err", err)
		if err := f.Sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// send sends msg once. It returns the outcome (AA, or AE once the message
// is kept as a dead letter) or an error when the message must be sent
// again.
func (f *Forwarder) send(ctx context.Context, msg []byte, ctrl string, rs []reading.Reading) (string, error) {
	answer, err := f.Sender.Send(ctx, msg)
	if err != nil {
		return "", err
	}
	ack, err := ParseAck(answer)
	if err == nil && ack.ControlID != ctrl {
		err = fmt.Errorf("answer is for control id %q, not %q", clip(ack.ControlID, 40), ctrl)
	}
	if err != nil {
		// An answer out of step: start a fresh connection.
		f.Sender.Close()
		return "", fmt.Errorf("unusable answer from the EHR: %w", err)
	}
	switch ack.Code {
	case hl7.AA:
		return hl7.AA, nil
	case hl7.AE:
		reason := "EHR refused the message (AE)"
		if ack.Text != "" {
			reason += ": " + ack.Text
		}
		dl := &store.DeadLetter{Received: f.Now().UTC(), Source: DeadLetterSource, Device: rs[0].Device,
			ContentType: DeadLetterContentType, Payload: msg, Reason: reason}
		if err := f.Registry.AddDeadLetter(ctx, dl); err != nil {
			return "", fmt.Errorf("keep the refused message as a dead letter: %w", err)
		}
		f.Logger.Warn("EHR refused an HL7 message; kept as a dead letter", "control_id", ctrl, "deadletter", dl.ID)
		return hl7.AE, nil
	}
	return "", fmt.Errorf("EHR rejected the message (AR), to be sent again: %s", ack.Text)
}

// build encodes the message for one patient's readings from what the
// registry says now about the patient, their location at the first
// reading's time and the devices.
func (f *Forwarder) build(ctx context.Context, rs []reading.Reading) ([]byte, string, error) {
	obs := make([]Observation, len(rs))
	devices := map[string]store.Device{}
	for i := range rs {
		obs[i].Reading = rs[i]
		d, ok := devices[rs[i].Device]
		if !ok {
			var err error
			d, err = f.Registry.Device(ctx, rs[i].Device)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, "", fmt.Errorf("read device: %w", err)
			}
			devices[rs[i].Device] = d
		}
		for _, id := range d.Identifiers {
			if id.System == EquipmentSystem && id.Value != "" {
				obs[i].Equipment = id.Value
				if isEUI64(id.Value) {
					obs[i].EquipmentType = "EUI-64"
				}
				break
			}
		}
	}
	ctrl := ControlID(obs)
	p, err := f.patient(ctx, rs[0].Patient, rs[0].Time)
	if err != nil {
		return nil, ctrl, err
	}
	return BuildORU(f.Header, ctrl, f.Now(), p, obs), ctrl, nil
}

func (f *Forwarder) patient(ctx context.Context, id string, at time.Time) (Patient, error) {
	p := Patient{ID: id}
	sp, err := f.Registry.Patient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return p, nil // the readings still carry Tend's id
	}
	if err != nil {
		return p, fmt.Errorf("read patient: %w", err)
	}
	for _, ident := range sp.Identifiers {
		p.Identifiers = append(p.Identifiers, identifier(ident))
	}
	var res struct {
		Name []struct {
			Family string   `json:"family"`
			Given  []string `json:"given"`
		} `json:"name"`
		BirthDate string `json:"birthDate"`
		Gender    string `json:"gender"`
	}
	if json.Unmarshal(sp.Resource, &res) == nil {
		if len(res.Name) > 0 {
			p.Family, p.Given = res.Name[0].Family, res.Name[0].Given
		}
		p.BirthDate, p.Gender = res.BirthDate, res.Gender
	}
	stays, err := f.Registry.Locations(ctx, id)
	if err != nil {
		return p, fmt.Errorf("read patient location: %w", err)
	}
	for _, s := range stays {
		if !at.Before(s.From) && (s.To.IsZero() || at.Before(s.To)) {
			p.Location = s.Location
		}
	}
	return p, nil
}

// identifier turns a registry identifier back into CX parts: the systems
// HL7 ingest gives namespaces ("urn:tend:hl7:authority:HOSP") become the
// namespace again; other URIs are sent as a universal id.
func identifier(id store.Identifier) Identifier {
	out := Identifier{Value: id.Value}
	switch {
	case id.System == "" || id.System == "urn:tend:hl7:pid":
	case strings.HasPrefix(id.System, "urn:tend:hl7:authority:"):
		out.Authority = strings.TrimPrefix(id.System, "urn:tend:hl7:authority:")
	default:
		out.AuthorityURI = id.System
	}
	if out.Authority != "" || out.AuthorityURI != "" {
		out.Type = "MR"
	}
	return out
}

func isEUI64(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// backoff is 100 ms doubling per consecutive failure, capped at max.
func backoff(failures int, max time.Duration) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Metrics are the forwarder's metrics.
type Metrics struct {
	messages *prometheus.CounterVec
	readings prometheus.Counter
	retries  prometheus.Counter
}

// NewMetrics registers the forwarder's metrics with reg. pending, when not
// nil, reports how many stream messages the forwarder has not yet
// acknowledged; it is asked at each scrape for the queue-lag gauge.
func NewMetrics(reg prometheus.Registerer, pending func(ctx context.Context) (uint64, error)) (*Metrics, error) {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tend_hl7_forward_messages_total",
			Help: "ORU^R01 messages the EHR answered, by outcome: AA accepted, AE refused and dead-lettered.",
		}, []string{"ack"}),
		readings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tend_hl7_forwarded_readings_total",
			Help: "Readings the EHR accepted (a resend after a crash counts again).",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tend_hl7_forward_retries_total",
			Help: "Sends repeated after AR, no answer or a refused connection.",
		}),
	}
	cs := []prometheus.Collector{m.messages, m.readings, m.retries}
	if pending != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tend_hl7_forward_queue_lag",
			Help: "Stream messages not yet forwarded to the EHR (-1 when the stream cannot say).",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
			defer cancel()
			n, err := pending(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("hl7 forwarder: register metrics: %w", err)
		}
	}
	return m, nil
}
