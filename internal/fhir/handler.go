// Package fhir serves Tend's FHIR R4 REST endpoints: Patient and Device
// (create, read, update, instance history of the kept version; Patient
// search by identifier), read-only Organization, Practitioner, CareTeam and
// Consent views of the security model, read-only Location and DeviceMetric
// views, conditional create and (Device only) delete, Observation read and
// search over stored readings rendered per the R4 vital-signs profile,
// Observation create and batch/transaction Bundles as an ingest path (the
// same group commit as device ingest), $lastn and Patient $everything, and
// the CapabilityStatement. Authentication happens before these handlers.
//
// Ids are assigned by the server on POST; PUT updates an existing resource
// only (404 when absent), so clients cannot claim ids ahead of the server.
package fhir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/store"
)

const (
	contentTypeFHIR = "application/fhir+json"
	// maxBody bounds request bodies: a Patient or Device is a few kB.
	maxBody = 1 << 20
)

// Config wires the handler.
type Config struct {
	Store  store.Store
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
	// OnDeviceChanged, when set, is called after a Device is written so the
	// ingest path can drop its cached binding.
	OnDeviceChanged func(id string)
	// NewID returns a fresh resource id; default 16 random hex digits.
	NewID func() string
	// Commit makes Observations posted over FHIR durable; nil refuses
	// them with 501.
	Commit Committer
	// VisibleWait bounds how long a create waits for its durable readings
	// to become readable so the answer can carry their ids; default 5 s.
	VisibleWait time.Duration
	// Access, when set, scopes every request to its caller's patients and
	// organisation (scope.go); nil serves everything.
	Access *access.Policy
	// Export, when set, serves FHIR Bulk Data $export (export.go).
	Export *Exporter
	// Subscriptions, when set, serves Subscription and $status
	// (subscription_http.go).
	Subscriptions *Subscriptions
}

type handler struct {
	store    store.Store
	now      func() time.Time
	log      *slog.Logger
	onDevice func(string)
	newID    func() string
	mux      *http.ServeMux

	committer   Committer
	visibleWait time.Duration
	access      *access.Policy
}

// NewHandler returns the FHIR API, to be mounted at /fhir/.
func NewHandler(cfg Config) http.Handler {
	h := &handler{store: cfg.Store, now: cfg.Now, log: cfg.Logger, onDevice: cfg.OnDeviceChanged, newID: cfg.NewID, mux: http.NewServeMux(),
		committer: cfg.Commit, visibleWait: cfg.VisibleWait, access: cfg.Access}
	if h.visibleWait <= 0 {
		h.visibleWait = defaultVisibleWait
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.newID == nil {
		h.newID = store.NewID
	}
	// Patterns carry no method so that a wrong method gets a FHIR 405
	// with Allow rather than the mux's plain-text one.
	h.route("/fhir/metadata", map[string]handlerFunc{http.MethodGet: h.metadata})
	h.route("/fhir/Patient", map[string]handlerFunc{http.MethodGet: h.searchPatients, http.MethodPost: h.createPatient})
	h.route("/fhir/Patient/{id}", map[string]handlerFunc{http.MethodGet: h.readPatient, http.MethodPut: h.updatePatient})
	h.route("/fhir/Patient/{id}/_history/{vid}", map[string]handlerFunc{http.MethodGet: h.readPatient})
	h.route("/fhir/Patient/{id}/_history", map[string]handlerFunc{http.MethodGet: h.patientHistory})
	h.route("/fhir/Device", map[string]handlerFunc{http.MethodPost: h.createDevice})
	h.route("/fhir/Device/{id}", map[string]handlerFunc{http.MethodGet: h.readDevice, http.MethodPut: h.updateDevice, http.MethodDelete: h.deleteDevice})
	h.route("/fhir/Device/{id}/_history/{vid}", map[string]handlerFunc{http.MethodGet: h.readDevice})
	h.route("/fhir/Device/{id}/_history", map[string]handlerFunc{http.MethodGet: h.deviceHistory})
	h.route("/fhir/Observation", map[string]handlerFunc{http.MethodGet: h.searchObservations, http.MethodPost: h.createObservation})
	// The server base takes batch and transaction Bundles.
	h.route("/fhir", map[string]handlerFunc{http.MethodPost: h.postBundle})
	h.route("/fhir/{$}", map[string]handlerFunc{http.MethodPost: h.postBundle})
	h.route("/fhir/Observation/{id}", map[string]handlerFunc{http.MethodGet: h.readObservation})
	h.route("/fhir/Observation/$lastn", map[string]handlerFunc{http.MethodGet: h.lastn})
	h.route("/fhir/Patient/{id}/$everything", map[string]handlerFunc{http.MethodGet: h.everything})
	h.orgRoutes() // Organization, Practitioner, CareTeam, Consent (org_resources.go)
	h.locationRoutes()
	h.deviceMetricRoutes()
	if cfg.Export != nil {
		h.exportRoutes(cfg.Export)
	}
	if cfg.Subscriptions != nil {
		h.subscriptionRoutes(cfg.Subscriptions)
	}
	h.mux.HandleFunc("/fhir/", func(w http.ResponseWriter, r *http.Request) {
		h.writeError(w, r, errorf(http.StatusNotFound, "not-supported", "no such FHIR endpoint"))
	})
	return h.scoped(h.mux)
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (h *handler) route(pattern string, methods map[string]handlerFunc) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if _, ok := methods[m]; ok {
			allow = append(allow, m)
		}
	}
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		fn, ok := methods[method]
		if !ok {
			h.writeError(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: "not-supported",
				Msg: r.Method + " is not supported here", Err: allowError(strings.Join(allow, ", "))})
			return
		}
		if err := fn(w, r); err != nil {
			h.writeError(w, r, err)
		}
	})
}

// readBody enforces the media type and size limit and returns the body.
// XML (or anything else) is refused with 415: only JSON is implemented.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != contentTypeFHIR && mt != "application/json") {
		return nil, errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type must be application/fhir+json or application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "too-costly", "request body exceeds %d bytes", limit)
		}
		return nil, &Error{Status: http.StatusBadRequest, Code: "structure", Msg: "could not read request body", Err: err}
	}
	return body, nil
}

// strictHandling reports Prefer: handling=strict.
func strictHandling(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.EqualFold(k, "handling") && strings.EqualFold(strings.Trim(val, `"`), "strict") {
				return true
			}
		}
	}
	return false
}

// pathID validates a logical id from the URL; an id that cannot exist is
// simply not found.
func pathID(r *http.Request, resourceType string) (string, error) {
	id := r.PathValue("id")
	if !validID(id) {
		return "", errorf(http.StatusNotFound, "not-found", "%s not found", resourceType)
	}
	return id, nil
}

// checkVersion handles vread (/_history/{vid}): only the current version
// is kept, so any other is reported as not found.
func checkVersion(r *http.Request, resourceType string, version int) error {
	vid := r.PathValue("vid")
	if vid == "" {
		return nil
	}
	if vid != strconv.Itoa(version) {
		return errorf(http.StatusNotFound, "not-found", "%s version not found; only the current version is kept", resourceType)
	}
	return nil
}

// checkIfMatch compares If-Match (W/"n") against the current version. The
// check and the write are separate store calls, so two racing updates with
// the same If-Match can both succeed; the store has no conditional update.
func checkIfMatch(r *http.Request, version int) error {
	m := r.Header.Get("If-Match")
	if m == "" {
		return nil
	}
	if strings.Trim(strings.TrimPrefix(m, "W/"), `"`) != strconv.Itoa(version) {
		return errorf(http.StatusPreconditionFailed, "conflict", "If-Match does not match the current version")
	}
	return nil
}

// writeResource writes a versioned resource with its ETag; Prefer:
// return=minimal leaves the body out.
func writeResource(w http.ResponseWriter, r *http.Request, status int, resourceType, id string, version int, updated time.Time, body []byte) {
	w.Header().Set("Content-Type", contentTypeFHIR)
	w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, version))
	w.Header().Set("Last-Modified", updated.UTC().Format(http.TimeFormat))
	if status == http.StatusCreated {
		w.Header().Set("Location", fmt.Sprintf("/fhir/%s/%s/_history/%d", resourceType, id, version))
	}
	w.WriteHeader(status)
	if preferReturn(r) != "minimal" {
		w.Write(append(body, '\n'))
	}
}

// --- Patient ---

func (h *handler) createPatient(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, maxBody)
	if err != nil {
		return err
	}
	obj, err := decodeResource(body, "Patient")
	if err != nil {
		return err
	}
	ids, err := obj.identifiers()
	if err != nil {
		return err
	}
	if ident, err := parseIfNoneExist(r); err != nil {
		return err
	} else if ident != nil { // conditional create (conditional.go)
		if cur, err := h.existingPatient(r.Context(), ident); err != nil || cur != nil {
			if err != nil {
				return err
			}
			return h.respondPatient(w, matchRequest(w, r, "Patient", cur.ID, cur.Version), http.StatusOK, *cur)
		}
	}
	id := h.newID()
	p := store.Patient{ID: id, Org: callerOrg(r.Context()), Identifiers: ids, Resource: obj.stamp("Patient", id, 0, time.Time{})}
	if err := h.store.CreatePatient(r.Context(), &p); err != nil {
		return fmt.Errorf("create patient: %w", err)
	}
	return h.respondPatient(w, r, http.StatusCreated, p)
}

func (h *handler) updatePatient(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "Patient")
	if err != nil {
		return err
	}
	body, err := readBody(w, r, maxBody)
	if err != nil {
		return err
	}
	obj, err := decodeResource(body, "Patient")
	if err != nil {
		return err
	}
	if err := checkBodyID(obj, id); err != nil {
		return err
	}
	ids, err := obj.identifiers()
	if err != nil {
		return err
	}
	cur, err := visiblePatient(r.Context(), h.store, id)
	if err != nil {
		return fmt.Errorf("update patient: %w", err)
	}
	if err := checkIfMatch(r, cur.Version); err != nil {
		return err
	}
	p := store.Patient{ID: id, Identifiers: ids, Resource: obj.stamp("Patient", id, 0, time.Time{})}
	if err := h.store.UpdatePatient(r.Context(), &p); err != nil {
		return fmt.Errorf("update patient: %w", err)
	}
	return h.respondPatient(w, r, http.StatusOK, p)
}

func (h *handler) readPatient(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "Patient")
	if err != nil {
		return err
	}
	p, err := visiblePatient(r.Context(), h.store, id)
	if err != nil {
		return fmt.Errorf("read patient: %w", err)
	}
	if err := checkVersion(r, "Patient", p.Version); err != nil {
		return err
	}
	return h.respondPatient(w, r, http.StatusOK, p)
}

func (h *handler) respondPatient(w http.ResponseWriter, r *http.Request, status int, p store.Patient) error {
	body, err := renderStored("Patient", p.ID, p.Resource, p.Version, p.Updated)
	if err != nil {
		return err
	}
	writeResource(w, r, status, "Patient", p.ID, p.Version, p.Updated, body)
	return nil
}

func checkBodyID(obj object, id string) error {
	var bodyID string
	if err := obj.decodeField("id", &bodyID); err != nil {
		return err
	}
	if bodyID != "" && bodyID != id {
		return invalid("resource id does not match the URL")
	}
	return nil
}

// --- Device ---

func (h *handler) createDevice(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, maxBody)
	if err != nil {
		return err
	}
	obj, d, err := h.parseDevice(r.Context(), body)
	if err != nil {
		return err
	}
	if ident, err := parseIfNoneExist(r); err != nil {
		return err
	} else if ident != nil { // conditional create (conditional.go)
		if cur, err := h.existingDevice(r.Context(), ident); err != nil || cur != nil {
			if err != nil {
				return err
			}
			return h.respondDevice(w, matchRequest(w, r, "Device", cur.ID, cur.Version), http.StatusOK, *cur)
		}
	}
	d.ID = h.newID()
	d.Org = callerOrg(r.Context())
	d.Resource = obj.stamp("Device", d.ID, 0, time.Time{})
	if err := h.store.CreateDevice(r.Context(), &d, h.now()); err != nil {
		return fmt.Errorf("create device: %w", err)
	}
	h.deviceChanged(d.ID)
	return h.respondDevice(w, r, http.StatusCreated, d)
}

func (h *handler) updateDevice(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "Device")
	if err != nil {
		return err
	}
	body, err := readBody(w, r, maxBody)
	if err != nil {
		return err
	}
	obj, d, err := h.parseDevice(r.Context(), body)
	if err != nil {
		return err
	}
	if err := checkBodyID(obj, id); err != nil {
		return err
	}
	cur, err := h.store.Device(r.Context(), id)
	if err == nil {
		err = checkDevice(r.Context(), cur)
	}
	if err != nil {
		return fmt.Errorf("update device: %w", err)
	}
	if err := checkIfMatch(r, cur.Version); err != nil {
		return err
	}
	d.ID = id
	d.Resource = obj.stamp("Device", id, 0, time.Time{})
	if err := h.store.UpdateDevice(r.Context(), &d, h.now()); err != nil {
		return fmt.Errorf("update device: %w", err)
	}
	h.deviceChanged(id)
	return h.respondDevice(w, r, http.StatusOK, d)
}

func (h *handler) deviceChanged(id string) {
	if h.onDevice != nil {
		h.onDevice(id)
	}
}

// parseDevice validates a Device body, including that its patient exists.
func (h *handler) parseDevice(ctx context.Context, body []byte) (object, store.Device, error) {
	obj, err := decodeResource(body, "Device")
	if err != nil {
		return nil, store.Device{}, err
	}
	ids, err := obj.identifiers()
	if err != nil {
		return nil, store.Device{}, err
	}
	patient, err := devicePatient(obj)
	if err != nil {
		return nil, store.Device{}, err
	}
	if patient != "" {
		if _, err := visiblePatient(ctx, h.store, patient); errors.Is(err, store.ErrNotFound) {
			return nil, store.Device{}, errorf(http.StatusUnprocessableEntity, "processing", "Device.patient references a patient that does not exist")
		} else if err != nil {
			return nil, store.Device{}, fmt.Errorf("check device patient: %w", err)
		}
	}
	return obj, store.Device{Identifiers: ids, Patient: patient}, nil
}

func (h *handler) readDevice(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "Device")
	if err != nil {
		return err
	}
	d, err := h.store.Device(r.Context(), id)
	if err == nil {
		err = checkDevice(r.Context(), d)
	}
	if err != nil {
		return fmt.Errorf("read device: %w", err)
	}
	if err := checkVersion(r, "Device", d.Version); err != nil {
		return err
	}
	return h.respondDevice(w, r, http.StatusOK, d)
}

func (h *handler) respondDevice(w http.ResponseWriter, r *http.Request, status int, d store.Device) error {
	body, err := renderStored("Device", d.ID, d.Resource, d.Version, d.Updated)
	if err != nil {
		return err
	}
	writeResource(w, r, status, "Device", d.ID, d.Version, d.Updated, body)
	return nil
}
