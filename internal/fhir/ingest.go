package fhir

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// Committer makes readings durable and returns once they are. It is the
// same group committer device ingest uses, so an Observation posted over
// FHIR gets the durability and deduplication of one sent over MQTT.
type Committer interface {
	Commit(ctx context.Context, rs []reading.Reading) error
}

// defaultVisibleWait bounds how long a create waits, after the readings are
// durable, for the store writer to make them readable so that the answer
// can carry their ids.
const defaultVisibleWait = 5 * time.Second

// sourceFHIR marks readings and dead letters that arrived over FHIR.
const sourceFHIR = "fhir"

// created is one Observation of a create: the stored sample and whether
// this request stored it (false when it was already there).
type created struct {
	sample store.Sample
	isNew  bool
}

func (h *handler) createObservation(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, maxBody)
	if err != nil {
		return err
	}
	res, err := h.ingestObservation(r, body)
	if err != nil {
		return h.keepRejected(r, body, err)
	}
	status := http.StatusOK
	if res.isNew {
		status = http.StatusCreated
	}
	if res.sample.ID == "" {
		return h.acceptedNotVisible(w)
	}
	location := "/fhir/Observation/" + res.sample.ID
	w.Header().Set("Location", location)
	h.writeReturn(w, r, status, RenderObservation(res.sample), "created")
	return nil
}

// ingestObservation validates, deduplicates and commits one Observation.
func (h *handler) ingestObservation(r *http.Request, body []byte) (created, error) {
	ctx := r.Context()
	in, err := parseObservation(body, "Observation", h.now())
	if err != nil {
		return created{}, err
	}
	refs := refChecker{store: h.store}
	if err := refs.check(ctx, in); err != nil {
		return created{}, err
	}
	if cond := r.Header.Get("If-None-Exist"); cond != "" {
		s, found, err := h.conditionalMatch(ctx, cond, in.reading.Patient, "If-None-Exist")
		if err != nil || found {
			return created{sample: s}, err
		}
	}
	if s, found, err := h.findStored(ctx, in.reading); err != nil || found {
		return created{sample: s}, err
	}
	if err := h.commit(ctx, []reading.Reading{in.reading}); err != nil {
		return created{}, err
	}
	samples := h.awaitStored(ctx, []reading.Reading{in.reading})
	return created{sample: samples[0], isNew: true}, nil
}

func (h *handler) commit(ctx context.Context, rs []reading.Reading) error {
	if h.committer == nil {
		return errorf(http.StatusNotImplemented, "not-supported", "this server does not accept observations over FHIR")
	}
	if err := h.committer.Commit(ctx, rs); err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "transient",
			Msg: "observations could not be made durable; nothing was stored, retry later", Err: err}
	}
	return nil
}

// acceptedNotVisible answers a create whose readings are durable but not yet
// readable: 202 says the data is safe without promising an id.
func (h *handler) acceptedNotVisible(w http.ResponseWriter) error {
	writeJSON(w, http.StatusAccepted, outcome("information", "informational",
		"accepted and durable; not yet readable, search for it shortly"))
	return nil
}

// writeReturn honours Prefer: return=minimal (no body) and
// return=OperationOutcome; the default is the resource.
func (h *handler) writeReturn(w http.ResponseWriter, r *http.Request, status int, v any, what string) {
	switch preferReturn(r) {
	case "minimal":
		w.WriteHeader(status)
	case "OperationOutcome":
		writeJSON(w, status, outcome("information", "informational", what))
	default:
		writeJSON(w, status, v)
	}
}

// preferReturn reads Prefer: return=...; "" when absent.
func preferReturn(r *http.Request) string {
	for _, v := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.EqualFold(strings.TrimSpace(k), "return") {
				return strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
	}
	return ""
}

// keepRejected keeps a refused ingest payload in the dead-letter store, as
// device ingest does, and passes the refusal on. Errors that are not about
// the payload (the store or stream failing) are passed on untouched: the
// client retries those.
func (h *handler) keepRejected(r *http.Request, body []byte, err error) error {
	var fe *Error
	if !errors.As(err, &fe) || fe.Status >= 500 || fe.Status == http.StatusPreconditionFailed {
		return err
	}
	reason := fe.Msg
	if fe.Expression != "" {
		reason = fe.Expression + ": " + reason
	}
	if kerr := h.deadLetter(r, body, reason, fe.Status); kerr != nil {
		return kerr
	}
	return err
}

// deadLetter keeps a refused payload with its reason.
func (h *handler) deadLetter(r *http.Request, body []byte, reason string, status int) error {
	dl := &store.DeadLetter{Received: h.now().UTC(), Source: sourceFHIR, ContentType: r.Header.Get("Content-Type"),
		Payload: body, Reason: reason}
	if err := h.store.AddDeadLetter(r.Context(), dl); err != nil {
		return fmt.Errorf("keep rejected FHIR payload: %w", err)
	}
	h.log.InfoContext(r.Context(), "fhir payload rejected", "deadletter", dl.ID, "status", status)
	return nil
}

// refChecker resolves subject and device references against the store,
// remembering answers so a Bundle of one patient's readings asks once.
type refChecker struct {
	store    store.Store
	seen     map[string]error
	bindings map[string][]store.Binding
}

func (c *refChecker) check(ctx context.Context, in obsInput) error {
	if c.seen == nil {
		c.seen = map[string]error{}
	}
	look := func(kind, id, expr string, get func() error) error {
		key := kind + "/" + id
		err, ok := c.seen[key]
		if !ok {
			err = get()
			c.seen[key] = err
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrNotFound):
			return unprocessable(expr, "%s %s does not exist", kind, id)
		default:
			return fmt.Errorf("check %s reference: %w", kind, err)
		}
	}
	rd := in.reading
	if err := look("Patient", rd.Patient, in.path+".subject", func() error {
		_, err := visiblePatient(ctx, c.store, rd.Patient) // another organisation's patient does not exist here
		return err
	}); err != nil {
		return err
	}
	if rd.Device == "" {
		return nil
	}
	if err := look("Device", rd.Device, in.path+".device", func() error {
		d, err := c.store.Device(ctx, rd.Device)
		if err == nil {
			err = checkDevice(ctx, d)
		}
		return err
	}); err != nil {
		return err
	}
	// A device bound to another patient at the reading's time means the
	// subject or the device is wrong: storing it would misattribute it.
	if c.bindings == nil {
		c.bindings = map[string][]store.Binding{}
	}
	hist, ok := c.bindings[rd.Device]
	if !ok {
		var err error
		if hist, err = c.store.Bindings(ctx, rd.Device); err != nil {
			return fmt.Errorf("check device binding: %w", err)
		}
		c.bindings[rd.Device] = hist
	}
	for _, b := range hist {
		if !rd.Time.Before(b.From) && (b.To.IsZero() || rd.Time.Before(b.To)) && b.Patient != rd.Patient {
			return unprocessable(in.path+".device", "the device was bound to another patient at the effective time")
		}
	}
	return nil
}

// conditionalMatch runs an If-None-Exist search, limited to the posted
// Observation's patient when it names none. One match is returned; more
// than one is 412, as the spec requires.
func (h *handler) conditionalMatch(ctx context.Context, cond, patient, what string) (store.Sample, bool, error) {
	values, err := url.ParseQuery(strings.TrimPrefix(cond, "Observation?"))
	if err != nil {
		return store.Sample{}, false, invalid("%s is not a query string", what)
	}
	if values.Get("patient") == "" && values.Get("subject") == "" {
		values.Set("patient", patient)
	}
	// Unknown criteria must not be dropped: that would widen the match.
	s, err := ParseObservationSearch(values, true, h.now())
	if err != nil {
		return store.Sample{}, false, err
	}
	s.Count, s.CountOnly, s.Offset, s.Cursor = 1, false, 0, ""
	page, err := h.findObservations(ctx, s)
	if err != nil {
		return store.Sample{}, false, fmt.Errorf("conditional create: %w", err)
	}
	switch {
	case page.total == 0:
		return store.Sample{}, false, nil
	case page.total == 1 && len(page.samples) == 1:
		return page.samples[0], true, nil
	default:
		return store.Sample{}, false, errorf(http.StatusPreconditionFailed, "multiple-matches", "%s matches more than one Observation", what)
	}
}

// findStored returns the stored sample with the reading's identity
// (patient, device, code, time): the store keeps the first delivery only,
// so a repeat is answered with what is stored.
func (h *handler) findStored(ctx context.Context, rd reading.Reading) (store.Sample, bool, error) {
	found, err := h.store.Samples(ctx, store.Query{Patient: rd.Patient, Codes: []string{rd.Code},
		From: rd.Time, To: rd.Time.Add(1), Oldest: true})
	if err != nil {
		return store.Sample{}, false, fmt.Errorf("look up observation: %w", err)
	}
	for _, s := range found {
		if s.Device == rd.Device {
			return s, true, nil
		}
	}
	return store.Sample{}, false, nil
}

// findStoredAll looks up many readings at once: one query per patient
// over the readings' time span, falling back to one query per reading when
// that span holds much more than the readings themselves (a backlog upload
// spread over months). out[i] is zero when rs[i] is not stored.
func (h *handler) findStoredAll(ctx context.Context, rs []reading.Reading) ([]store.Sample, error) {
	out := make([]store.Sample, len(rs))
	type identity struct {
		patient, device, code string
		unixNano              int64
	}
	byPatient := map[string][]int{}
	var patients []string
	for i, rd := range rs {
		if _, ok := byPatient[rd.Patient]; !ok {
			patients = append(patients, rd.Patient)
		}
		byPatient[rd.Patient] = append(byPatient[rd.Patient], i)
	}
	for _, patient := range patients {
		idx := byPatient[patient]
		q := store.Query{Patient: patient, From: rs[idx[0]].Time, To: rs[idx[0]].Time, Oldest: true}
		var codes []string
		for _, i := range idx {
			rd := rs[i]
			if rd.Time.Before(q.From) {
				q.From = rd.Time
			}
			if rd.Time.After(q.To) {
				q.To = rd.Time
			}
			if !contains(codes, rd.Code) {
				codes = append(codes, rd.Code)
			}
		}
		q.To = q.To.Add(1)
		q.Codes = codes
		q.Limit = 4*len(idx) + 16
		found, err := h.store.Samples(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("look up observations: %w", err)
		}
		if len(found) == q.Limit {
			for _, i := range idx {
				if s, ok, err := h.findStored(ctx, rs[i]); err != nil {
					return nil, err
				} else if ok {
					out[i] = s
				}
			}
			continue
		}
		stored := make(map[identity]store.Sample, len(found))
		for _, s := range found {
			stored[identity{s.Patient, s.Device, s.Code, s.Time.UnixNano()}] = s
		}
		for _, i := range idx {
			rd := rs[i]
			out[i] = stored[identity{rd.Patient, rd.Device, rd.Code, rd.Time.UnixNano()}]
		}
	}
	return out, nil
}

// awaitStored waits, bounded by visibleWait, until every reading is
// readable and returns their samples in order; a zero sample is one not yet
// visible. The readings are already durable, so giving up early loses
// nothing.
func (h *handler) awaitStored(ctx context.Context, rs []reading.Reading) []store.Sample {
	deadline := time.Now().Add(h.visibleWait)
	pause := 500 * time.Microsecond
	for {
		out, err := h.findStoredAll(ctx, rs)
		missing := err != nil
		for i := range out {
			if out[i].ID == "" {
				missing = true
			}
		}
		if !missing || time.Now().Add(pause).After(deadline) {
			if out == nil {
				out = make([]store.Sample, len(rs))
			}
			return out
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return out
		case <-t.C:
		}
		pause = min(2*pause, 5*time.Millisecond)
	}
}
