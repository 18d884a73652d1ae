package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/tendhealth/tend/internal/store"
)

// Error is a failure with a status and a message that is safe to show to the
// client. Err carries internal detail that only goes to the log.
type Error struct {
	Status int    // HTTP status
	Code   string // FHIR issue type (invalid, not-found, not-supported, ...)
	Msg    string // user-facing; never contains secrets or PHI
	Err    error  // internal cause; may be nil
	// Expression points at the offending element (FHIRPath), e.g.
	// Bundle.entry[2].resource.code; empty when the error is not about one.
	Expression string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Msg, e.Err)
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, "invalid", format, args...)
}

// OperationOutcome is the FHIR resource that reports errors and warnings.
type OperationOutcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []Issue `json:"issue"`
}

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

func outcome(severity, code, msg string) OperationOutcome {
	return OperationOutcome{ResourceType: "OperationOutcome", Issue: []Issue{{Severity: severity, Code: code, Diagnostics: msg}}}
}

// outcomeFor maps an error returned by a handler to a status and outcome.
// Anything not recognised is a 500 with a generic message: its detail may
// contain internal paths, SQL or patient data, so it goes only to the log.
func outcomeFor(err error) (int, OperationOutcome, bool) {
	var fe *Error
	switch {
	case errors.As(err, &fe):
		sev := "error"
		if fe.Status >= 500 {
			sev = "fatal"
		}
		oo := outcome(sev, fe.Code, fe.Msg)
		if fe.Expression != "" {
			oo.Issue[0].Expression = []string{fe.Expression}
		}
		return fe.Status, oo, fe.Status >= 500
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, outcome("error", "not-found", "resource not found"), false
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, outcome("error", "conflict", "resource already exists"), false
	default:
		return http.StatusInternalServerError, outcome("fatal", "exception", "internal server error"), true
	}
}

// writeError is the one adapter from a handler error to an HTTP response.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, oo, internal := outcomeFor(err)
	if internal {
		h.log.ErrorContext(r.Context(), "fhir request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		h.log.DebugContext(r.Context(), "fhir request rejected", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if status == http.StatusMethodNotAllowed {
		var fe *Error
		if errors.As(err, &fe) {
			if a, ok := fe.Err.(allowError); ok {
				w.Header().Set("Allow", string(a))
			}
		}
	}
	writeJSON(w, status, oo)
}

// allowError carries the Allow header value of a 405.
type allowError string

func (a allowError) Error() string { return "allowed: " + string(a) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // query strings in links keep their '&'
	enc.SetIndent("", "  ")
	err := enc.Encode(v)
	b := bytes.TrimSpace(buf.Bytes())
	if err != nil {
		// Every value written here is built from typed structs; failing to
		// encode one is a programming error, still answered in FHIR form.
		status = http.StatusInternalServerError
		b = []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception","diagnostics":"internal server error"}]}`)
	}
	w.Header().Set("Content-Type", contentTypeFHIR)
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
