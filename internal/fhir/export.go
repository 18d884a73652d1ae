package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// FHIR Bulk Data Access (v2) export: GET [base]/$export and
// [base]/Patient/$export with Prefer: respond-async start a job and answer
// 202 with a status URL; polling it answers 202 (X-Progress, Retry-After)
// until the manifest is ready (200), then the NDJSON files it names are
// downloaded; DELETE on the status URL cancels or removes the job. Jobs and
// files live in the store, so any node answers the status URL; the node
// that claims a job runs it (a bounded number at a time) and keeps its
// lease while it runs, so a job whose node stops is taken up by another.
// A job is visible only to the principal (subject and organisation) that
// started it, and exports only the patients that principal may see when
// the job runs; SMART scopes are checked on the kick-off request like any
// other (RequiredAccess). Group-level export is not offered: Tend has no
// Group resources.

// ExportTypes are the resource types an export can contain, in the order
// their files are listed.
var ExportTypes = []string{"Patient", "Device", "Observation"}

const (
	exportStatusPath  = "/fhir/$export-poll-status/"
	exportFilePath    = "/fhir/$export-file/"
	contentTypeNDJSON = "application/fhir+ndjson"
)

// ExportConfig wires the exporter.
type ExportConfig struct {
	Store  store.Store
	Access *access.Policy // required: every job is scoped to its principal
	Now    func() time.Time
	Logger *slog.Logger
	// Workers is how many jobs this node runs at once (default 1).
	Workers int
	// Expiry is how long after kick-off a job and its files are kept
	// (default 24 h).
	Expiry time.Duration
	// Lease is how long a claimed job stays this node's without renewal
	// (default 1 min; renewed as files are written).
	Lease time.Duration
	// Poll is how often idle workers look for queued jobs of other nodes
	// and sweep expired ones (default 5 s); a kick-off on this node wakes
	// a worker at once.
	Poll time.Duration
	// FileLines is the most resources one NDJSON file holds (default 10,000).
	FileLines int
	NewID     func() string
}

// Exporter runs Bulk Data export jobs and serves their HTTP endpoints
// (through NewHandler's Config.Export).
type Exporter struct {
	cfg  ExportConfig
	wake chan struct{}

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewExporter returns an exporter; it runs jobs only after Start.
func NewExporter(cfg ExportConfig) *Exporter {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = 24 * time.Hour
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.FileLines <= 0 {
		cfg.FileLines = 10_000
	}
	if cfg.NewID == nil {
		cfg.NewID = func() string { return store.NewID() + store.NewID() }
	}
	return &Exporter{cfg: cfg, wake: make(chan struct{}, 1)}
}

// Start runs the workers until ctx ends or Close.
func (e *Exporter) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancel != nil {
		return errors.New("fhir: exporter already started")
	}
	ctx, e.cancel = context.WithCancel(ctx)
	for i := range e.cfg.Workers {
		e.wg.Go(func() { e.work(ctx, i == 0) })
	}
	return nil
}

// Close stops the workers and waits for them; a job cut short is taken up
// again when its lease ends.
func (e *Exporter) Close() error {
	e.mu.Lock()
	cancel := e.cancel
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	e.wg.Wait()
	return nil
}

func (e *Exporter) work(ctx context.Context, sweeper bool) {
	t := time.NewTicker(e.cfg.Poll)
	defer t.Stop()
	for {
		for {
			ran, err := e.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				e.cfg.Logger.Error("bulk export", "err", err)
			}
			if !ran || err != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-t.C:
			if sweeper {
				if _, err := e.cfg.Store.DeleteExpiredExportJobs(ctx, e.cfg.Now()); err != nil && ctx.Err() == nil {
					e.cfg.Logger.Error("bulk export: delete expired jobs", "err", err)
				}
			}
		}
	}
}

// exportParams is what a job exports (ExportJob.Params).
type exportParams struct {
	Level string    `json:"level"` // "system" or "patient"
	Types []string  `json:"types"`
	Since time.Time `json:"since,omitzero"`
}

// RunOnce claims one job and runs it to the end; ran is false when there
// was none.
func (e *Exporter) RunOnce(ctx context.Context) (ran bool, err error) {
	j, ok, err := e.cfg.Store.ClaimExportJob(ctx, e.cfg.Now(), e.cfg.Lease)
	if err != nil || !ok {
		return false, err
	}
	runErr := e.run(ctx, &j)
	if errors.Is(runErr, store.ErrNotFound) {
		return true, nil // deleted by its owner while running
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return true, nil // stopping: another run takes it up after the lease
		}
		e.cfg.Logger.Error("bulk export failed", "job", j.ID, "err", runErr)
		j.State, j.Error = store.ExportFailed, "the export failed; start a new one"
	} else {
		j.State, j.Progress = store.ExportDone, "done"
	}
	j.LeaseUntil = time.Time{}
	if err := e.cfg.Store.UpdateExportJob(ctx, j); err != nil && !errors.Is(err, store.ErrNotFound) {
		return true, fmt.Errorf("fhir: finish export %s: %w", j.ID, err)
	}
	return true, nil
}

// ndjsonWriter collects one type's lines and stores a file every
// FileLines resources.
type ndjsonWriter struct {
	e     *Exporter
	job   *store.ExportJob
	typ   string
	buf   bytes.Buffer
	count int
	files int
}

func (w *ndjsonWriter) add(ctx context.Context, resource []byte) error {
	if err := json.Compact(&w.buf, resource); err != nil {
		return fmt.Errorf("compact %s: %w", w.typ, err)
	}
	w.buf.WriteByte('\n')
	w.count++
	if w.count >= w.e.cfg.FileLines {
		return w.flush(ctx)
	}
	return nil
}

func (w *ndjsonWriter) flush(ctx context.Context) error {
	if w.count == 0 {
		return nil
	}
	w.files++
	f := store.ExportFile{Job: w.job.ID, Name: fmt.Sprintf("%s-%04d.ndjson", w.typ, w.files), Type: w.typ, Count: w.count,
		Body: bytes.Clone(w.buf.Bytes())}
	if err := w.e.cfg.Store.PutExportFile(ctx, f); err != nil {
		return err
	}
	w.buf.Reset()
	w.count = 0
	return w.e.renew(ctx, w.job)
}

// renew extends the lease and records progress; a deleted job stops the
// run (store.ErrNotFound).
func (e *Exporter) renew(ctx context.Context, j *store.ExportJob) error {
	j.LeaseUntil = e.cfg.Now().Add(e.cfg.Lease)
	return e.cfg.Store.UpdateExportJob(ctx, *j)
}

// run writes the job's files.
func (e *Exporter) run(ctx context.Context, j *store.ExportJob) error {
	var (
		p  auth.Principal
		ps exportParams
	)
	if err := json.Unmarshal(j.Principal, &p); err != nil {
		return fmt.Errorf("job principal: %w", err)
	}
	if err := json.Unmarshal(j.Params, &ps); err != nil {
		return fmt.Errorf("job parameters: %w", err)
	}
	if e.cfg.Access == nil {
		return errors.New("no access policy")
	}
	// The scope as of now: access withdrawn since the kick-off is honoured.
	sc, err := e.cfg.Access.Scope(ctx, p)
	if err != nil {
		return err
	}
	j.TransactionTime = e.cfg.Now()
	j.Progress = "reading patients"
	if err := e.renew(ctx, j); err != nil {
		return err
	}
	patients, err := e.patients(ctx, sc)
	if err != nil {
		return err
	}
	writers := map[string]*ndjsonWriter{}
	for _, t := range ps.Types {
		writers[t] = &ndjsonWriter{e: e, job: j, typ: t}
	}
	after := func(t time.Time) bool { return ps.Since.IsZero() || t.After(ps.Since) }
	if w := writers["Patient"]; w != nil {
		for _, pt := range patients {
			if !after(pt.Updated) {
				continue
			}
			raw, err := renderStored("Patient", pt.ID, pt.Resource, pt.Version, pt.Updated)
			if err != nil {
				return err
			}
			if err := w.add(ctx, raw); err != nil {
				return err
			}
		}
	}
	if w := writers["Device"]; w != nil {
		f := sc.DeviceFilter()
		if ps.Level == "patient" || !sc.All {
			// Patient-level: only devices bound to the exported patients.
			f.Restrict, f.IDs = true, patientIDs(patients)
		}
		devices, _, err := e.cfg.Store.SearchDevices(ctx, f)
		if err != nil {
			return fmt.Errorf("devices: %w", err)
		}
		for _, d := range devices {
			if access.CheckDeviceRecord(sc, d) != nil || !after(d.Updated) {
				continue
			}
			raw, err := renderStored("Device", d.ID, d.Resource, d.Version, d.Updated)
			if err != nil {
				return err
			}
			if err := w.add(ctx, raw); err != nil {
				return err
			}
		}
	}
	if w := writers["Observation"]; w != nil {
		for i, pt := range patients {
			if err := e.observations(ctx, w, pt.ID, after); err != nil {
				return err
			}
			if i%100 == 99 {
				j.Progress = fmt.Sprintf("observations of %d of %d patients", i+1, len(patients))
				if err := e.renew(ctx, j); err != nil {
					return err
				}
			}
		}
	}
	for _, t := range ps.Types {
		if err := writers[t].flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

const exportSamplePage = 5000

// observations writes a patient's readings, oldest first, paging by id.
func (e *Exporter) observations(ctx context.Context, w *ndjsonWriter, patient string, after func(time.Time) bool) error {
	q := store.Query{Patient: patient, Limit: exportSamplePage, Oldest: true}
	for {
		ss, err := e.cfg.Store.Samples(ctx, q)
		if err != nil {
			return fmt.Errorf("observations: %w", err)
		}
		for _, s := range ss {
			// A reading's lastUpdated is when Tend received it.
			updated := s.Received
			if updated.IsZero() {
				updated = s.Time
			}
			if !after(updated) {
				continue
			}
			raw, err := json.Marshal(RenderObservation(s))
			if err != nil {
				return fmt.Errorf("render observation: %w", err)
			}
			if err := w.add(ctx, raw); err != nil {
				return err
			}
		}
		if len(ss) < exportSamplePage {
			return nil
		}
		q.After = ss[len(ss)-1].ID
	}
}

// patients are the patients of the scope, ordered by id.
func (e *Exporter) patients(ctx context.Context, sc access.Scope) ([]store.Patient, error) {
	if sc.Empty() {
		return nil, nil
	}
	pts, _, err := e.cfg.Store.SearchPatients(ctx, sc.PatientFilter())
	if err != nil {
		return nil, fmt.Errorf("patients: %w", err)
	}
	out := pts[:0]
	for _, p := range pts {
		if sc.Has(p.Org, p.ID) { // the organisation wall, checked on the record
			out = append(out, p)
		}
	}
	return out, nil
}

func patientIDs(ps []store.Patient) []string {
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	return ids
}

// exportRoutes registers the Bulk Data endpoints on h.
func (h *handler) exportRoutes(e *Exporter) {
	h.route("/fhir/$export", map[string]handlerFunc{http.MethodGet: func(w http.ResponseWriter, r *http.Request) error { return e.kickOff(w, r, "system") }})
	h.route("/fhir/Patient/$export", map[string]handlerFunc{http.MethodGet: func(w http.ResponseWriter, r *http.Request) error { return e.kickOff(w, r, "patient") }})
	h.route(exportStatusPath+"{job}", map[string]handlerFunc{http.MethodGet: e.status, http.MethodDelete: e.cancelJob})
	h.route(exportFilePath+"{job}/{file}", map[string]handlerFunc{http.MethodGet: e.download})
}

// parseExportRequest checks a kick-off request's headers and parameters
// and returns what to export.
func parseExportRequest(r *http.Request, level string) (exportParams, error) {
	ps := exportParams{Level: level}
	if !respondAsync(r) {
		return ps, errorf(http.StatusBadRequest, "invalid", "$export runs asynchronously: send the header Prefer: respond-async")
	}
	q := r.URL.Query()
	for name, vs := range q {
		switch name {
		case "_outputFormat":
			for _, v := range vs {
				if v != contentTypeNDJSON && v != "application/ndjson" && v != "ndjson" {
					return ps, errorf(http.StatusBadRequest, "not-supported", "_outputFormat %q is not supported; use %s", clip(v), contentTypeNDJSON)
				}
			}
		case "_type":
			for _, v := range vs {
				for _, t := range strings.Split(v, ",") {
					t = strings.TrimSpace(t)
					if !slices.Contains(ExportTypes, t) {
						return ps, errorf(http.StatusBadRequest, "not-supported", "_type %q cannot be exported; use any of %s", clip(t), strings.Join(ExportTypes, ", "))
					}
					if !slices.Contains(ps.Types, t) {
						ps.Types = append(ps.Types, t)
					}
				}
			}
		case "_since":
			if len(vs) != 1 {
				return ps, errorf(http.StatusBadRequest, "invalid", "_since may be given once")
			}
			t, err := time.Parse(time.RFC3339Nano, vs[0])
			if err != nil {
				return ps, errorf(http.StatusBadRequest, "invalid", "_since must be a FHIR instant with a time zone, e.g. 2026-01-02T03:04:05Z")
			}
			ps.Since = t.UTC()
		default:
			// _typeFilter, _elements, patient, includeAssociatedData, …:
			// refused, so that an export is never wider than was asked.
			return ps, errorf(http.StatusBadRequest, "not-supported", "parameter %q is not supported by $export here", clip(name))
		}
	}
	if ps.Types == nil {
		ps.Types = slices.Clone(ExportTypes)
	}
	slices.SortFunc(ps.Types, func(a, b string) int { return slices.Index(ExportTypes, a) - slices.Index(ExportTypes, b) })
	return ps, nil
}

// respondAsync reports Prefer: respond-async.
func respondAsync(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "respond-async") {
				return true
			}
		}
	}
	return false
}

func (e *Exporter) kickOff(w http.ResponseWriter, r *http.Request, level string) error {
	ps, err := parseExportRequest(r, level)
	if err != nil {
		return err
	}
	p, ok := auth.PrincipalFrom(r.Context())
	if !ok {
		return errorf(http.StatusUnauthorized, "login", "authentication is required")
	}
	p.Org = store.OrgOrDefault(p.Org)
	p.Source = "" // not needed to scope the run
	principal, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("export principal: %w", err)
	}
	params, err := json.Marshal(ps)
	if err != nil {
		return fmt.Errorf("export parameters: %w", err)
	}
	now := e.cfg.Now()
	j := store.ExportJob{ID: e.cfg.NewID(), Owner: p.Subject, Org: p.Org, Principal: principal, Request: baseURL(r) + r.URL.RequestURI(),
		Params: params, State: store.ExportQueued, Progress: "queued", Created: now, Expires: now.Add(e.cfg.Expiry)}
	if err := e.cfg.Store.CreateExportJob(r.Context(), j); err != nil {
		return fmt.Errorf("create export job: %w", err)
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
	w.Header().Set("Content-Location", baseURL(r)+exportStatusPath+j.ID)
	writeJSON(w, http.StatusAccepted, outcome("information", "informational", "the export has started; poll the Content-Location URL"))
	return nil
}

// ownJob loads a job the caller started; anyone else's, and an expired
// one, is not found.
func (e *Exporter) ownJob(r *http.Request) (store.ExportJob, error) {
	notFound := errorf(http.StatusNotFound, "not-found", "no such export")
	p, ok := auth.PrincipalFrom(r.Context())
	if !ok {
		return store.ExportJob{}, errorf(http.StatusUnauthorized, "login", "authentication is required")
	}
	id := r.PathValue("job")
	if !validID(id) {
		return store.ExportJob{}, notFound
	}
	j, err := e.cfg.Store.ExportJob(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return store.ExportJob{}, notFound
	}
	if err != nil {
		return store.ExportJob{}, fmt.Errorf("load export job: %w", err)
	}
	if j.Owner != p.Subject || j.Org != store.OrgOrDefault(p.Org) || !e.cfg.Now().Before(j.Expires) {
		return store.ExportJob{}, notFound
	}
	return j, nil
}

// Manifest is the completed export's description (Bulk Data v2).
type Manifest struct {
	TransactionTime     string           `json:"transactionTime"`
	Request             string           `json:"request"`
	RequiresAccessToken bool             `json:"requiresAccessToken"`
	Output              []ManifestOutput `json:"output"`
	Error               []ManifestOutput `json:"error"`
}

// ManifestOutput is one file of a manifest.
type ManifestOutput struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

func (e *Exporter) status(w http.ResponseWriter, r *http.Request) error {
	j, err := e.ownJob(r)
	if err != nil {
		return err
	}
	switch j.State {
	case store.ExportQueued, store.ExportRunning:
		w.Header().Set("X-Progress", j.Progress)
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusAccepted)
		return nil
	case store.ExportFailed:
		return errorf(http.StatusInternalServerError, "exception", "%s", j.Error)
	}
	files, err := e.cfg.Store.ExportFiles(r.Context(), j.ID)
	if err != nil {
		return fmt.Errorf("list export files: %w", err)
	}
	m := Manifest{TransactionTime: formatInstant(j.TransactionTime), Request: j.Request, RequiresAccessToken: true,
		Output: []ManifestOutput{}, Error: []ManifestOutput{}}
	slices.SortStableFunc(files, func(a, b store.ExportFile) int {
		return slices.Index(ExportTypes, a.Type) - slices.Index(ExportTypes, b.Type)
	})
	for _, f := range files {
		m.Output = append(m.Output, ManifestOutput{Type: f.Type, URL: baseURL(r) + exportFilePath + j.ID + "/" + f.Name, Count: f.Count})
	}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Expires", j.Expires.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	w.Write(append(body, '\n'))
	return nil
}

func (e *Exporter) cancelJob(w http.ResponseWriter, r *http.Request) error {
	j, err := e.ownJob(r)
	if err != nil {
		return err
	}
	if err := e.cfg.Store.DeleteExportJob(r.Context(), j.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete export job: %w", err)
	}
	writeJSON(w, http.StatusAccepted, outcome("information", "informational", "the export and its files are deleted"))
	return nil
}

func (e *Exporter) download(w http.ResponseWriter, r *http.Request) error {
	j, err := e.ownJob(r)
	if err != nil {
		return err
	}
	f, err := e.cfg.Store.ExportFile(r.Context(), j.ID, r.PathValue("file"))
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "not-found", "no such export file")
	}
	if err != nil {
		return fmt.Errorf("load export file: %w", err)
	}
	w.Header().Set("Content-Type", contentTypeNDJSON)
	w.WriteHeader(http.StatusOK)
	w.Write(f.Body)
	return nil
}
