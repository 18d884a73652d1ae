package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/tendhealth/tend/internal/auth"
)

// Class says how a request is recorded.
type Class struct {
	Action   Action
	Subtype  string   // the interaction attempted: a FHIR interaction, "login", …
	Entity   string   // the resource ("Patient/p1") or the endpoint path
	Patients []string // patients the request names
	Stream   bool     // an event stream: recorded when it starts
	Alarm    string   // an alarm the request acts on; its patient is looked up
}

// Classifier decides whether a request is audited and how; false means it
// involves no PHI (health checks, assets, device ingest).
type Classifier func(r *http.Request) (Class, bool)

// Middleware records every request its classifier selects, exactly once,
// and fails closed.
type Middleware struct {
	Log      *Log
	Classify Classifier
	// AlarmPatient finds the patient of an alarm when the answer does not
	// name it (a refused or HTML answer); nil leaves it out.
	AlarmPatient func(ctx context.Context, id string) (string, error)
	// Purpose names the purpose of use of a request by agent touching
	// patients when it is not ordinary care (BreakGlassPurpose); nil
	// records none. An error withholds the answer like a failed append.
	Purpose func(ctx context.Context, agent auth.Principal, patients []string) (string, error)
	Logger  *slog.Logger
}

// Wrap records the requests classify selects (see Middleware).
func Wrap(log *Log, classify Classifier, next http.Handler) http.Handler {
	return (&Middleware{Log: log, Classify: classify}).Wrap(next)
}

// note collects what handlers learn about a request while serving it.
type note struct {
	mu       sync.Mutex
	agent    auth.Principal
	patients []string
}

type noteKey struct{}

// SetAgent tells the audit trail who is making the request. Authentication
// code calls it as soon as it knows the caller, also when it then refuses
// them, and sign-in handlers with the name that tried to sign in. Outside an
// audited request it does nothing.
func SetAgent(ctx context.Context, p auth.Principal) {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.mu.Lock()
		n.agent = p
		n.mu.Unlock()
	}
}

// AddPatients adds patients whose data the request involves, for handlers
// that learn them while serving (the alarm acted on, search results).
func AddPatients(ctx context.Context, ids ...string) {
	if n, ok := ctx.Value(noteKey{}).(*note); ok {
		n.mu.Lock()
		n.patients = append(n.patients, ids...)
		n.mu.Unlock()
	}
}

// Wrap returns next with auditing.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	logger := m.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class, ok := m.Classify(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		n := &note{}
		ctx := context.WithValue(r.Context(), noteKey{}, n)
		bw := &bufferedWriter{w: w, header: make(http.Header), req: r}
		// The record of a stream is appended when it starts; of anything
		// else once its answer is complete.
		record := func(status int, body []byte, contentType string) error {
			rec := m.record(ctx, r, class, n, status, body, contentType)
			var err error
			if m.Purpose != nil {
				rec.Purpose, err = m.Purpose(context.WithoutCancel(ctx), auth.Principal{Subject: rec.Subject, Role: rec.Role, Org: rec.Org}, rec.Patients)
			}
			if err == nil {
				_, err = m.Log.Append(context.WithoutCancel(ctx), rec)
			}
			if err != nil {
				// No path: it may name a patient.
				logger.Error("audit record could not be stored; the answer was withheld", "method", r.Method, "action", string(class.Action), "err", err)
				return err
			}
			return nil
		}
		bw.commitStream = func(status int) error { return record(status, nil, "") }
		next.ServeHTTP(bw, r.WithContext(ctx))
		if bw.streaming || bw.failed {
			return
		}
		if bw.status == 0 {
			bw.status = http.StatusOK
		}
		status := bw.status
		if status >= 300 && status < 400 && strings.HasPrefix(bw.header.Get("Location"), "/signin") && class.Action != Logout && class.Action != Login {
			// The dashboard sends a caller without a session to sign in:
			// a denial, though the answer is a redirect.
			status = http.StatusUnauthorized
		}
		if err := record(status, bw.buf.Bytes(), bw.header.Get("Content-Type")); err != nil {
			writeAuditFailure(w, r)
			return
		}
		bw.release()
	})
}

// record builds the entry for a request answered with status.
func (m *Middleware) record(ctx context.Context, r *http.Request, c Class, n *note, status int, body []byte, contentType string) Record {
	n.mu.Lock()
	agent := n.agent
	patients := append(append([]string(nil), c.Patients...), n.patients...)
	n.mu.Unlock()
	if status < 400 && len(body) > 0 && strings.Contains(contentType, "json") {
		patients = append(patients, PatientsInJSON(body)...)
	}
	if c.Alarm != "" && m.AlarmPatient != nil && len(patients) == 0 {
		if p, err := m.AlarmPatient(ctx, c.Alarm); err == nil {
			patients = append(patients, p)
		}
	}
	rec := Record{Action: string(c.Action), Subtype: c.Subtype, Status: status, Subject: agent.Subject, Role: agent.Role,
		Org: agent.Org, Source: remoteHost(r), Patients: patients, Entity: c.Entity, Query: r.URL.RawQuery}
	if rec.Subtype == "" {
		rec.Subtype = rec.Action
	}
	switch {
	case status >= 500:
		rec.Outcome = SeriousFailure
	case status >= 400:
		rec.Outcome = MinorFailure
	}
	// A refused or failed sign-in is still a sign-in; anything else that
	// was refused or failed says so in its action (Subtype keeps what was
	// attempted).
	if c.Action != Login && c.Action != Logout {
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			rec.Action = string(Denial)
		case status >= 400:
			rec.Action = string(Failure)
		}
	}
	return rec
}

// remoteHost is the address of the peer: the immediate client, never a
// forwarded-for header a client could forge.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// writeAuditFailure answers in the request's own dialect, saying nothing
// of what the handler produced.
func writeAuditFailure(w http.ResponseWriter, r *http.Request) {
	const msg = "Tend could not record this access in its audit trail, so it was not carried out or shown; try again shortly"
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case r.URL.Path == "/fhir" || strings.HasPrefix(r.URL.Path, "/fhir/"):
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome",
			"issue": []map[string]any{{"severity": "error", "code": "exception", "diagnostics": msg}}})
	case strings.HasPrefix(r.URL.Path, "/api/"):
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": "Internal Server Error", "status": 500, "detail": msg})
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(msg + ".\n"))
	}
}

// errWithheld is what a handler's writes return once its answer has been
// refused for want of an audit record.
var errWithheld = errors.New("audit: answer withheld: the audit record could not be stored")

// bufferedWriter holds an answer back until its audit record is stored.
// An event stream (Content-Type text/event-stream) is let through once its
// record is stored at WriteHeader.
type bufferedWriter struct {
	w            http.ResponseWriter
	header       http.Header
	status       int
	buf          bytes.Buffer
	streaming    bool
	failed       bool
	commitStream func(status int) error
	req          *http.Request // for the dialect of a refusal
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status != 0 || code < 200 {
		return
	}
	b.status = code
	if !strings.HasPrefix(b.header.Get("Content-Type"), "text/event-stream") {
		return
	}
	if err := b.commitStream(code); err != nil {
		b.failed = true
		writeAuditFailure(b.w, b.req)
		return
	}
	b.streaming = true
	b.release()
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.WriteHeader(http.StatusOK)
	}
	switch {
	case b.failed:
		return 0, errWithheld
	case b.streaming:
		return b.w.Write(p)
	}
	return b.buf.Write(p)
}

// FlushError lets a started stream through; a held-back answer stays held.
func (b *bufferedWriter) FlushError() error {
	switch {
	case b.failed:
		return errWithheld
	case b.streaming:
		return http.NewResponseController(b.w).Flush()
	}
	return nil
}

// Unwrap gives http.ResponseController the connection (write deadlines).
func (b *bufferedWriter) Unwrap() http.ResponseWriter { return b.w }

// release sends the headers and whatever is held.
func (b *bufferedWriter) release() {
	dst := b.w.Header()
	for k, v := range b.header {
		dst[k] = v
	}
	b.w.WriteHeader(b.status)
	if b.buf.Len() > 0 {
		b.w.Write(b.buf.Bytes())
		b.buf.Reset()
	}
}
