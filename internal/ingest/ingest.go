// Package ingest turns payloads from authenticated devices into canonical
// readings and commits them durably: decode, attribute each reading to the
// patient the device was bound to at the reading's time, commit to the
// stream. A payload it cannot take is kept in the dead-letter store with its
// reason before the sender is told, so nothing is silently dropped.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/gatt"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/senml"
	"github.com/tendhealth/tend/internal/store"
)

// Registry is what the pipeline needs of the store.
type Registry interface {
	Device(ctx context.Context, id string) (store.Device, error)
	Bindings(ctx context.Context, device string) ([]store.Binding, error)
	DeviceSecret(ctx context.Context, device string) ([]byte, error)
	AddDeadLetter(ctx context.Context, d *store.DeadLetter) error
}

// Committer makes readings durable; it returns once they are.
type Committer interface {
	Commit(ctx context.Context, rs []reading.Reading) error
}

// SourceUnauthenticated marks a dead letter whose sender failed
// authentication; such payloads are never replayed.
const SourceUnauthenticated = "unauthenticated"

// Request is one payload as received from a device.
type Request struct {
	Source      string // "mqtt", "http", "replay"
	Device      string
	ContentType string
	Payload     []byte
}

// Rejection is a payload refused for a reason the sender can act on. Reason
// is safe to show to the sender; the payload is already dead-lettered.
type Rejection struct {
	Status     int // HTTP status that fits the reason
	Reason     string
	DeadLetter int64 // id in the dead-letter store, 0 if not kept (replays)
}

func (r *Rejection) Error() string { return r.Reason }

// Pipeline is the ingest path shared by every device protocol.
type Pipeline struct {
	Registry Registry
	Commit   Committer
	Limits   senml.Limits
	Now      func() time.Time
	Logger   *slog.Logger
	// Replayers replay dead letters of content types that do not come
	// through this pipeline (HL7 v2 from MLLP), keyed by content type.
	Replayers map[string]func(context.Context, Request) (int, error)
	// Certs verifies device certificates (mutual TLS); nil takes none (certs.go).
	Certs CertVerifier

	mu       sync.RWMutex
	bindings map[string][]store.Binding // device → history, oldest first

	accepted *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

// NewPipeline returns a pipeline; reg may be nil.
func NewPipeline(r Registry, c Committer, now func() time.Time, log *slog.Logger, reg prometheus.Registerer) *Pipeline {
	p := &Pipeline{
		Registry: r, Commit: c, Limits: senml.DefaultLimits, Now: now, Logger: log,
		bindings: make(map[string][]store.Binding),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tend_ingest_readings_total", Help: "Readings accepted (durable) by source.",
		}, []string{"source"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tend_ingest_rejected_total", Help: "Payloads rejected and dead-lettered, by source and HTTP status class.",
		}, []string{"source", "status"}),
	}
	if reg != nil {
		reg.MustRegister(p.accepted, p.rejected)
	}
	return p
}

// InvalidateDevice drops cached binding history of a device; call it after
// the device or its binding changed.
func (p *Pipeline) InvalidateDevice(id string) {
	p.mu.Lock()
	delete(p.bindings, id)
	p.mu.Unlock()
}

// Authenticate checks a device's secret. Unknown devices and wrong secrets
// give the same error so a caller cannot probe which devices exist.
func (p *Pipeline) Authenticate(ctx context.Context, device, secret string) error {
	if !store.ValidDeviceID(device) {
		return ErrBadCredentials // no such device can exist; do not look it up
	}
	hash, err := p.Registry.DeviceSecret(ctx, device)
	if errors.Is(err, store.ErrNotFound) {
		return ErrBadCredentials
	}
	if err != nil {
		return fmt.Errorf("load device secret: %w", err)
	}
	if !auth.SecretMatches(secret, hash) {
		return ErrBadCredentials
	}
	return nil
}

// ErrBadCredentials means an unknown device or a wrong secret.
var ErrBadCredentials = errors.New("unknown device or wrong secret")

// Ingest decodes, attributes and commits one payload and returns how many
// readings it carried. A *Rejection error means the payload was refused and
// dead-lettered; any other error means Tend could not take it right now
// (nothing was acknowledged; the sender should retry).
func (p *Pipeline) Ingest(ctx context.Context, req Request) (int, error) {
	n, err := p.Replay(ctx, req)
	var rej *Rejection
	if errors.As(err, &rej) {
		return 0, p.Reject(ctx, req, rej)
	}
	return n, err
}

// Replay runs a payload through the pipeline without dead-lettering a
// refusal: it is how a kept dead letter is retried.
func (p *Pipeline) Replay(ctx context.Context, req Request) (int, error) {
	if replay := p.Replayers[req.ContentType]; replay != nil {
		return replay(ctx, req)
	}
	rs, rej, err := p.normalise(ctx, req)
	if err != nil {
		return 0, err
	}
	if rej != nil {
		return 0, rej
	}
	if err := p.Commit.Commit(ctx, rs); err != nil {
		return 0, fmt.Errorf("commit %d readings: %w", len(rs), err)
	}
	p.accepted.WithLabelValues(req.Source).Add(float64(len(rs)))
	return len(rs), nil
}

// Reject keeps req in the dead-letter store and returns rej with the dead
// letter's id, or an internal error if the payload could not be kept (the
// sender must then not be acknowledged).
func (p *Pipeline) Reject(ctx context.Context, req Request, rej *Rejection) error {
	payload := req.Payload
	reason := rej.Reason
	if max := p.Limits.MaxBytes + 1; len(payload) > max {
		payload = payload[:max]
		reason += " (payload truncated in the dead-letter store)"
	}
	dl := &store.DeadLetter{
		Received: p.Now().UTC(), Source: req.Source, Device: req.Device,
		ContentType: req.ContentType, Payload: payload, Reason: reason,
	}
	if err := p.Registry.AddDeadLetter(ctx, dl); err != nil {
		return fmt.Errorf("keep rejected payload: %w", err)
	}
	rej.DeadLetter = dl.ID
	p.rejected.WithLabelValues(req.Source, fmt.Sprintf("%dxx", rej.Status/100)).Inc()
	p.Logger.Info("payload rejected", "source", req.Source, "device", req.Device, "deadletter", dl.ID, "status", rej.Status)
	return rej
}

func (p *Pipeline) normalise(ctx context.Context, req Request) ([]reading.Reading, *Rejection, error) {
	if len(req.Payload) > p.Limits.MaxBytes {
		return nil, &Rejection{Status: http.StatusRequestEntityTooLarge,
			Reason: fmt.Sprintf("payload is %d bytes; the limit is %d", len(req.Payload), p.Limits.MaxBytes)}, nil
	}
	ct, err := canonicalContentType(req.ContentType)
	if err != nil {
		return nil, &Rejection{Status: http.StatusUnsupportedMediaType, Reason: err.Error()}, nil
	}
	if ct == "" {
		ct = sniffContentType(req.Payload)
	}
	hist, err := p.history(ctx, req.Device)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Rejection{Status: http.StatusNotFound, Reason: fmt.Sprintf("unknown device %q", req.Device)}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	now := p.Now().UTC()
	ms, rej := p.decode(ct, req, now)
	if rej != nil {
		return nil, rej, nil
	}
	rs := make([]reading.Reading, 0, len(ms))
	for _, m := range ms {
		patient := patientAt(hist, m.Time)
		if patient == "" {
			return nil, &Rejection{Status: http.StatusUnprocessableEntity, Reason: fmt.Sprintf(
				"device %q is not bound to a patient at %s; bind it with Device.patient, then replay",
				req.Device, m.Time.UTC().Format(time.RFC3339Nano))}, nil
		}
		rs = append(rs, reading.Reading{
			Patient: patient, Device: req.Device, Code: m.Code, MDC: m.MDC,
			Value: m.Value, HasValue: m.HasValue, Components: m.Components, Unit: m.Unit,
			Time: m.Time.UTC(), Received: now, Source: req.Source,
		})
	}
	return rs, nil, nil
}

func (p *Pipeline) history(ctx context.Context, device string) ([]store.Binding, error) {
	p.mu.RLock()
	h, ok := p.bindings[device]
	p.mu.RUnlock()
	if ok {
		return h, nil
	}
	if _, err := p.Registry.Device(ctx, device); err != nil {
		return nil, err
	}
	h, err := p.Registry.Bindings(ctx, device)
	if err != nil {
		return nil, fmt.Errorf("load bindings of device: %w", err)
	}
	sort.Slice(h, func(i, j int) bool { return h[i].From.Before(h[j].From) })
	if h == nil {
		h = []store.Binding{}
	}
	p.mu.Lock()
	p.bindings[device] = h
	p.mu.Unlock()
	return h, nil
}

// patientAt returns the patient bound during [From, To) containing t.
func patientAt(hist []store.Binding, t time.Time) string {
	for i := len(hist) - 1; i >= 0; i-- {
		b := hist[i]
		if !t.Before(b.From) && (b.To.IsZero() || t.Before(b.To)) {
			return b.Patient
		}
	}
	return ""
}

// Content types accepted for SenML; "" means sniff (MQTT 3.1.1 carries none).
func canonicalContentType(ct string) (string, error) {
	if ct == "" {
		return "", nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", fmt.Errorf("content type %q is not valid", ct)
	}
	switch mt {
	case "application/senml+json", "application/json":
		return "application/senml+json", nil
	case "application/senml+cbor", "application/cbor":
		return "application/senml+cbor", nil
	case gatt.ContentType:
		return gatt.ContentType, nil
	}
	return "", fmt.Errorf("content type %q is not supported; send application/senml+json, application/senml+cbor or %s", mt, gatt.ContentType)
}

// sniffContentType tells SenML JSON (an array or object, maybe after
// whitespace) from SenML CBOR (a CBOR array: major type 4), and a GATT
// gateway envelope (JSON with "uuid") from SenML JSON.
func sniffContentType(b []byte) string {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '[', '{':
			if gatt.Sniff(b) {
				return gatt.ContentType
			}
			return "application/senml+json"
		}
		break
	}
	return "application/senml+cbor"
}
