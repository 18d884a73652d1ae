package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
)

// alarmRoutes registers the alarm, rule, escalation, webhook, NEWS2 and
// live-stream endpoints whose dependencies are configured. Reads are open
// to admin and integration tokens; changing configuration is admin only.
func (h *Handler) alarmRoutes() {
	m, c := h.mux, h.cfg
	read := func(fn handlerFunc) http.Handler { return h.withRole(fn, store.RoleAdmin, store.RoleIntegration) }
	if c.Alarms != nil && c.AlarmStore != nil {
		m.Handle("GET /api/v1/alarms", h.withRole(h.listAlarms, patientReaders...))
		m.Handle("GET /api/v1/alarms/{id}", h.withRole(h.getAlarm, patientReaders...))
		m.Handle("POST /api/v1/alarms/{id}/ack", h.withRole(h.ackAlarm, alarmAckers...))
		m.Handle("POST /api/v1/alarms/{id}/resolve", h.withRole(h.resolveAlarm, alarmHandlers...))
		m.Handle("POST /api/v1/alarms/{id}/snooze", h.withRole(h.snoozeAlarm, alarmHandlers...))
		m.Handle("POST /api/v1/alarms/{id}/escalate", h.withRole(h.escalateAlarm, alarmHandlers...))
	}
	if c.Profiles != nil && c.AlarmStore != nil {
		for _, kind := range []string{alarm.DocRules, alarm.DocEscalation} {
			for _, owner := range []string{"settings/{setting}", "patients/{id}"} {
				path := "/api/v1/" + owner + "/" + kind
				// A patient's documents answer 404 outside the caller's scope.
				scoped, write := func(fn handlerFunc) handlerFunc { return fn }, operatorOnly // settings are installation-wide
				readers, writers := []store.Role{store.RoleAdmin, store.RoleIntegration}, []store.Role{store.RoleAdmin}
				if owner == "patients/{id}" {
					scoped, write = h.scopedPatient, h.scopedPatient
					if kind == alarm.DocRules {
						// A patient's thresholds are a clinical decision: their
						// clinicians change them, nurses read them (as on the dashboard).
						readers = append(readers, store.RoleClinician, store.RoleNurse)
						writers = append(writers, store.RoleClinician)
					}
				}
				m.Handle("GET "+path, h.withRole(scoped(h.getDoc(kind)), readers...))
				m.Handle("PUT "+path, h.withRole(write(h.putDoc(kind)), writers...))
				m.Handle("GET "+path+"/history", h.withRole(scoped(h.docHistory(kind)), readers...))
			}
		}
	}
	if c.Profiles != nil {
		m.Handle("GET /api/v1/patients/{id}/news2", h.withRole(h.scopedPatient(h.news2), patientReaders...))
	}
	if c.AlarmStore != nil {
		// Webhooks receive every organisation's alarms: the operator's (access.go).
		m.Handle("POST /api/v1/webhooks", h.admin(operatorOnly(h.postWebhook)))
		m.Handle("GET /api/v1/webhooks", read(operatorOnly(h.listWebhooks)))
		m.Handle("DELETE /api/v1/webhooks/{id}", h.admin(operatorOnly(h.deleteWebhook)))
	}
	if c.Live != nil {
		m.Handle("GET /api/v1/stream", h.withRole(h.stream, patientReaders...))
	}
}

const (
	maxAlarmLimit  = 1000
	maxReasonBytes = 1000
)

var stateList = strings.Join([]string{string(alarm.Active), string(alarm.Acknowledged), string(alarm.Resolved)}, ", ")

// listAlarms: ?patient=ID&state=active,acknowledged&limit=N, newest raised
// first.
func (h *Handler) listAlarms(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := alarm.Filter{Patient: q.Get("patient")}
	var err error
	if f.Limit, err = intParam(r, "limit", 100, 1, maxAlarmLimit); err != nil {
		return err
	}
	for _, list := range q["state"] {
		for s := range strings.SplitSeq(list, ",") {
			st, ok := alarm.ParseState(strings.TrimSpace(s))
			if !ok {
				return &Error{Status: http.StatusBadRequest, Detail: fmt.Sprintf("state %q: use one or more of %s, separated by commas", clipText(s), stateList)}
			}
			f.States = append(f.States, st)
		}
	}
	as, err := h.scopedAlarms(r.Context(), f) // only patients the caller may see (access.go)
	if err != nil {
		return fmt.Errorf("list alarms: %w", err)
	}
	if as == nil {
		as = []alarm.Alarm{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"alarms": as})
}

// getAlarm returns an episode with its history and notification outbox.
func (h *Handler) getAlarm(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	a, err := h.cfg.AlarmStore.Alarm(r.Context(), id)
	if err != nil {
		return alarmError(err, "load alarm")
	}
	if err := h.checkAlarm(r, a, false); err != nil {
		return err
	}
	hist, err := h.cfg.AlarmStore.History(r.Context(), id)
	if err != nil {
		return fmt.Errorf("alarm history: %w", err)
	}
	dels, err := h.cfg.AlarmStore.Deliveries(r.Context(), id)
	if err != nil {
		return fmt.Errorf("alarm deliveries: %w", err)
	}
	if hist == nil {
		hist = []alarm.Change{}
	}
	if dels == nil {
		dels = []alarm.Delivery{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"alarm": a, "history": hist, "deliveries": dels})
}

type alarmActionJSON struct {
	Reason string          `json:"reason"`
	For    *rules.Duration `json:"for"`
}

func (h *Handler) ackAlarm(w http.ResponseWriter, r *http.Request) error {
	return h.alarmAction(w, r, false, h.cfg.Alarms.Acknowledge)
}

func (h *Handler) resolveAlarm(w http.ResponseWriter, r *http.Request) error {
	return h.alarmAction(w, r, false, h.cfg.Alarms.Resolve)
}

func (h *Handler) snoozeAlarm(w http.ResponseWriter, r *http.Request) error {
	return h.alarmAction(w, r, true, h.cfg.Alarms.Snooze)
}

// escalateAlarm tells the next escalation tier now; {"reason"} is
// required and kept in the alarm's history.
func (h *Handler) escalateAlarm(w http.ResponseWriter, r *http.Request) error {
	return h.alarmAction(w, r, false, func(ctx context.Context, id string, act alarm.Action) (alarm.Alarm, error) {
		if strings.TrimSpace(act.Reason) == "" {
			return alarm.Alarm{}, &Error{Status: http.StatusBadRequest, Detail: `an escalation needs {"reason": "…"}`}
		}
		return h.cfg.Alarms.EscalateNow(ctx, id, act)
	})
}

// alarmAction applies a person's action; the body ({"reason":…}, plus
// "for" on a snooze) is optional elsewhere.
func (h *Handler) alarmAction(w http.ResponseWriter, r *http.Request, snooze bool, do func(ctx context.Context, id string, act alarm.Action) (alarm.Alarm, error)) error {
	var body alarmActionJSON
	if err := decodeBody(w, r, &body, 64<<10, !snooze); err != nil {
		return err
	}
	if snooze && body.For == nil {
		return &Error{Status: http.StatusBadRequest, Detail: `a snooze needs "for" (e.g. "10m") and "reason"`}
	}
	if len(body.Reason) > maxReasonBytes {
		return &Error{Status: http.StatusBadRequest, Detail: fmt.Sprintf("reason is longer than %d bytes", maxReasonBytes)}
	}
	cur, err := h.cfg.AlarmStore.Alarm(r.Context(), r.PathValue("id"))
	if err != nil {
		return alarmError(err, "load alarm")
	}
	if err := h.checkAlarm(r, cur, true); err != nil {
		return err
	}
	act := alarm.Action{By: subject(r), Reason: body.Reason}
	if body.For != nil {
		act.For = time.Duration(*body.For)
	}
	a, err := do(r.Context(), r.PathValue("id"), act)
	if err != nil {
		return alarmError(err, "change alarm")
	}
	return writeJSON(w, http.StatusOK, map[string]any{"alarm": a})
}

// alarmError maps the alarm package's errors to responses.
func alarmError(err error, what string) error {
	switch {
	case errors.Is(err, alarm.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Detail: "no such alarm"}
	case errors.Is(err, alarm.ErrState):
		return &Error{Status: http.StatusConflict, Detail: err.Error()}
	case errors.Is(err, alarm.ErrConflict):
		return &Error{Status: http.StatusConflict, Detail: "the alarm changed at the same time; reload it and try again"}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// subject is the authenticated caller, recorded as who acted.
func subject(r *http.Request) string {
	p, _ := auth.PrincipalFrom(r.Context())
	return p.Subject
}

// decodeBody reads a JSON body of at most limit bytes into v, refusing
// unknown members (a misspelt field in a clinical configuration must not
// be silently ignored). An empty body is accepted when optional.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, limit int64, optional bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return &Error{Status: http.StatusBadRequest, Detail: "could not read the request body"}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return &Error{Status: http.StatusBadRequest, Detail: "a JSON request body is required"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Error{Status: http.StatusBadRequest, Detail: "request body is not valid JSON: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Error{Status: http.StatusBadRequest, Detail: "request body has data after the JSON document"}
	}
	return nil
}

func clipText(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
