// Package inbound handles HL7 v2 messages received over MLLP: IHE PCD-01
// observation reports become readings committed through the same group
// commit as every other ingest path, PCD-04 alarm reports become device
// alarms, and ADT messages keep the patient record and location current.
// Every message is answered: AA only once its readings are durable, AE when
// its content is wrong (the message is kept in the dead-letter store with
// the reason), AR when it cannot be processed at all.
package inbound

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/hl7/pcd"
	"github.com/tendhealth/tend/internal/ingest"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// Registry is what the handler needs of the store.
type Registry interface {
	Device(ctx context.Context, id string) (store.Device, error)
	DeviceByIdentifier(ctx context.Context, ident store.Identifier) (store.Device, error)
	CreateDevice(ctx context.Context, d *store.Device, at time.Time) error
	PatientAt(ctx context.Context, device string, t time.Time) (string, error)
	Patient(ctx context.Context, id string) (store.Patient, error)
	Patients(ctx context.Context, ident *store.Identifier, limit, offset int) ([]store.Patient, int, error)
	CreatePatient(ctx context.Context, p *store.Patient) error
	UpdatePatient(ctx context.Context, p *store.Patient) error
	MovePatient(ctx context.Context, patient, location string, at time.Time) error
}

// Committer makes readings durable; it returns once they are.
type Committer interface {
	Commit(ctx context.Context, rs []reading.Reading) error
}

// DeadLetters keeps refused messages with their reason (ingest.Pipeline).
type DeadLetters interface {
	Reject(ctx context.Context, req ingest.Request, rej *ingest.Rejection) error
}

// Alarms receives device alarm states (alarm.Service).
type Alarms interface {
	RaiseExternal(ctx context.Context, x alarm.External) error
}

// Source names the ingest path in readings, dead letters and alarms.
const Source = "hl7"

// ContentType is how HL7 v2 messages are labelled in the dead-letter store.
const ContentType = "application/hl7-v2+er7"

// EquipmentSystem is the identifier system of devices registered from an
// HL7 equipment identifier (OBX-18).
const EquipmentSystem = "urn:tend:hl7:equipment"

// Handler answers HL7 messages; it implements mllp.Handler. Set the fields,
// then use it; it starts nothing.
type Handler struct {
	Registry    Registry
	Commit      Committer
	DeadLetters DeadLetters
	Alarms      Alarms // nil: ORU^R40 is refused
	// AutoRegister creates a device for an unknown equipment identifier
	// instead of refusing the message.
	AutoRegister bool
	Limits       pcd.Limits
	Now          func() time.Time
	Logger       *slog.Logger
	Bind         *LocationBinder // nil: ADT leaves device bindings alone
	Metrics      *Metrics        // may be nil

	ackSeq  atomic.Uint64
	adtMu   sync.Mutex // ADT changes apply one at a time, in arrival order
	devices cache      // equipment id → device id
	people  cache      // identifier value (+ authority) → patient id
	seen    recent     // control ids answered AA
}

// Metrics count messages by type and acknowledgement code.
type Metrics struct {
	messages *prometheus.CounterVec
	readings prometheus.Counter
}

// NewMetrics registers the handler's metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tend_hl7_messages_total", Help: "HL7 v2 messages answered, by message type and acknowledgement code.",
		}, []string{"type", "ack"}),
		readings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tend_hl7_readings_total", Help: "Readings from HL7 v2 messages made durable.",
		}),
	}
	for _, c := range []prometheus.Collector{m.messages, m.readings} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register HL7 metrics: %w", err)
		}
	}
	return m, nil
}

// outcome is the answer to one message.
type outcome struct {
	code     string
	errs     []*hl7.Error
	readings int // made durable (ORU^R01)
}

func accepted(notes []*hl7.Error) outcome { return outcome{code: hl7.AA, errs: notes} }

func rejected(code int, format string, args ...any) outcome {
	return outcome{code: hl7.AR, errs: []*hl7.Error{{Code: code, Msg: fmt.Sprintf(format, args...)}}}
}

// HandleHL7 answers one message (see mllp.Handler).
func (h *Handler) HandleHL7(ctx context.Context, raw []byte, tooLarge bool) func() []byte {
	now := h.Now().UTC()
	// The ACK's own control id: time and a counter, unique across restarts.
	ackID := "T" + strconv.FormatInt(now.UnixMilli(), 36) + "-" + strconv.FormatUint(h.ackSeq.Add(1), 10)
	if tooLarge {
		o := rejected(hl7.ErrInternal, "message is larger than this server accepts; split it into smaller messages")
		o = h.deadLetter(ctx, raw, "", o)
		return h.done(hl7.AckUnparsed(raw, o.code, o.errs, ackID, now), "?", o.code)
	}
	m, err := hl7.Parse(raw)
	if err != nil {
		var pe *hl7.Error
		if !errors.As(err, &pe) {
			pe = &hl7.Error{Code: hl7.ErrSegmentSequence, Msg: err.Error()}
		}
		o := h.deadLetter(ctx, raw, "", outcome{code: hl7.AR, errs: []*hl7.Error{pe}})
		return h.done(hl7.AckUnparsed(raw, o.code, o.errs, ackID, now), "?", o.code)
	}
	hdr := m.Header()
	typ := hdr.Type + "^" + hdr.Event
	answer := func(o outcome) []byte { return hl7.Ack(m, o.code, o.errs, ackID, now) }
	if hdr.ControlID == "" {
		o := outcome{code: hl7.AR, errs: []*hl7.Error{{Segment: "MSH", Sequence: 1, Field: 10, Code: hl7.ErrRequiredMissing, Msg: "MSH-10 message control id is empty"}}}
		return h.done(answer(o), typ, o.code)
	}
	if !hl7.SupportedVersion(hdr.Version) {
		o := outcome{code: hl7.AR, errs: []*hl7.Error{{Segment: "MSH", Sequence: 1, Field: 12, Code: hl7.ErrUnsupportedVer,
			Msg: fmt.Sprintf("HL7 version %q is not supported; send 2.3 to 2.8", clip(hdr.Version))}}}
		return h.done(answer(o), typ, o.code)
	}
	if hdr.ProcessingID != "" && hdr.ProcessingID != "P" {
		// Training (T) and debugging (D) messages must not reach patient
		// records; refuse them rather than store or silently drop them.
		o := outcome{code: hl7.AR, errs: []*hl7.Error{{Segment: "MSH", Sequence: 1, Field: 11, Code: hl7.ErrTableValue,
			Msg: fmt.Sprintf("processing id %q is not accepted; this server takes production (P) messages only", clip(hdr.ProcessingID))}}}
		return h.done(answer(o), typ, o.code)
	}
	key := dupKey(hdr, raw)
	if h.seen.has(key) {
		// A resend of a message already acknowledged: its readings are
		// durable, so it is acknowledged again without storing anything.
		return h.done(answer(accepted(nil)), typ, hl7.AA)
	}
	finish := func(o outcome) []byte {
		if o.code == hl7.AA {
			h.seen.add(key)
		}
		return answer(o)
	}
	switch {
	case hdr.Type == "ORU" && hdr.Event == "R01":
		wait := h.observations(ctx, m, raw, now)
		return func() []byte {
			o := wait()
			b := finish(o)
			h.count(typ, o.code)
			return b
		}
	case hdr.Type == "ORU" && hdr.Event == "R40":
		return h.done(finish(h.alarms(ctx, m, raw, now)), typ, "")
	case hdr.Type == "ADT":
		return h.done(finish(h.adt(ctx, m, raw, hdr.Event, now)), typ, "")
	}
	o := outcome{code: hl7.AR, errs: []*hl7.Error{{Segment: "MSH", Sequence: 1, Field: 9, Code: hl7.ErrUnsupportedType,
		Msg: fmt.Sprintf("message type %s is not accepted; Tend takes ORU^R01 (IHE PCD-01), ORU^R40 (PCD-04) and ADT A01/A02/A03/A04/A08/A11/A13", clip(typ))}}}
	return h.done(answer(o), typ, o.code)
}

// done wraps a ready ACK. code "" means: read it from the ACK.
func (h *Handler) done(ack []byte, typ, code string) func() []byte {
	if code == "" {
		code = ackCode(ack)
	}
	h.count(typ, code)
	return func() []byte { return ack }
}

func (h *Handler) count(typ, code string) {
	if h.Metrics != nil {
		h.Metrics.messages.WithLabelValues(metricType(typ), code).Inc()
	}
}

// metricType keeps the label set small: unknown types share one label.
func metricType(typ string) string {
	switch typ {
	case "ORU^R01", "ORU^R40", "ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ADT^A08", "ADT^A11", "ADT^A13":
		return typ
	}
	return "other"
}

func ackCode(ack []byte) string {
	m, err := hl7.Parse(ack)
	if err != nil {
		return "?"
	}
	if msa := m.First("MSA"); msa != nil {
		return msa.C(1, 1)
	}
	return "?"
}

// deadLetter keeps a refused message with the reason and says so in the
// first error; if it cannot be kept the sender is told to resend.
func (h *Handler) deadLetter(ctx context.Context, raw []byte, device string, o outcome) outcome {
	if ctx.Value(replayingKey{}) != nil {
		return o // it is a dead letter already
	}
	reason := ""
	for i, e := range o.errs {
		if e.Severity == 'W' {
			continue
		}
		if i > 0 && reason != "" {
			reason += "; "
		}
		reason += e.Error()
	}
	rej := &ingest.Rejection{Status: http.StatusUnprocessableEntity, Reason: reason}
	err := h.DeadLetters.Reject(ctx, ingest.Request{Source: Source, Device: device, ContentType: ContentType, Payload: raw}, rej)
	if !errors.As(err, &rej) {
		h.Logger.Error("keep refused HL7 message", "err", err)
		return rejected(hl7.ErrInternal, "Tend could not keep the refused message; resend it later")
	}
	if len(o.errs) > 0 {
		first := *o.errs[0]
		first.Msg += fmt.Sprintf(" (kept as dead letter %d)", rej.DeadLetter)
		o.errs = append([]*hl7.Error{&first}, o.errs[1:]...)
	}
	return o
}

// dupKey identifies a message by sender and control id, and by content, so
// a different message that reuses a control id is not mistaken for a resend.
func dupKey(hdr hl7.Header, raw []byte) [32]byte {
	s := sha256.New()
	s.Write([]byte(hdr.SendingApp + "\x00" + hdr.SendingFacility + "\x00" + hdr.ControlID + "\x00"))
	s.Write(raw)
	var k [32]byte
	copy(k[:], s.Sum(nil))
	return k
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// replayingKey marks the context of a replay: a refusal is not kept again.
type replayingKey struct{}

// Replay runs a kept dead letter through the handler again (after the
// operator registered the device or patient it lacked). It returns the
// number of readings made durable, or an *ingest.Rejection that says why
// the message is still refused. Register it as the pipeline's replayer
// for ContentType.
func (h *Handler) Replay(ctx context.Context, req ingest.Request) (int, error) {
	ctx = context.WithValue(ctx, replayingKey{}, true)
	m, err := hl7.Parse(req.Payload)
	if err != nil {
		return 0, &ingest.Rejection{Status: http.StatusUnprocessableEntity, Reason: err.Error()}
	}
	now := h.Now().UTC()
	hdr := m.Header()
	var o outcome
	switch {
	case hdr.Type == "ORU" && hdr.Event == "R01":
		o = h.observations(ctx, m, req.Payload, now)()
	case hdr.Type == "ORU" && hdr.Event == "R40":
		o = h.alarms(ctx, m, req.Payload, now)
	case hdr.Type == "ADT":
		o = h.adt(ctx, m, req.Payload, hdr.Event, now)
	default:
		return 0, &ingest.Rejection{Status: http.StatusUnprocessableEntity, Reason: "message type " + clip(hdr.Type+"^"+hdr.Event) + " is not accepted"}
	}
	if o.code == hl7.AA {
		return o.readings, nil
	}
	var reasons []string
	internal := false
	for _, e := range o.errs {
		if e.Severity != 'W' {
			reasons = append(reasons, e.Error())
			internal = internal || e.Code == hl7.ErrInternal
		}
	}
	if internal {
		return 0, errors.New(strings.Join(reasons, "; "))
	}
	return 0, &ingest.Rejection{Status: http.StatusUnprocessableEntity, Reason: strings.Join(reasons, "; ")}
}
