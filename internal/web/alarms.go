package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/sse"
	"github.com/tendhealth/tend/internal/store"
)

// newHighWindow is how long after it was raised an active high-priority
// alarm flashes the inbox.
const newHighWindow = 2 * time.Minute

func isNewHigh(now time.Time, a alarm.Alarm) bool {
	return a.Priority == rules.PriorityHigh && a.State == alarm.Active && now.Sub(a.Raised) < newHighWindow
}

type inboxRow struct {
	alarm.Alarm
	PatientName string
}

// TierNumber is the escalation tier last told, counted from 1 as the
// escalation documents and history do.
func (r inboxRow) TierNumber() int { return r.Tier + 1 }

// inboxData is what the "inbox-list" partial renders.
type inboxData struct {
	Open     []inboxRow
	Resolved []inboxRow
	Now      time.Time
	CSRF     string
	CanAct   bool
	// CanHandle: resolving, snoozing and escalating, which caregivers
	// may not do (they acknowledge only; access.go).
	CanHandle bool
	Snoozes   []string
}

var snoozeChoices = []string{"5m", "10m", "30m", "1h", "2h"}

// loadInbox lists open alarms, most urgent and oldest first, and the
// recently resolved ones with who resolved them.
func (h *Handler) loadInbox(ctx context.Context, sess session) (inboxData, error) {
	d := inboxData{Now: h.cfg.Now(), CSRF: sess.CSRF, CanAct: sess.CanActOnAlarms(), Snoozes: snoozeChoices}
	d.CanHandle = d.CanAct && sess.Role != store.RoleCaregiver
	if h.cfg.AlarmStore == nil {
		return d, nil
	}
	scoped, err := h.inboxScope(ctx)
	if err != nil {
		return d, err
	}
	f := scoped
	f.States, f.Limit = []alarm.State{alarm.Active, alarm.Acknowledged}, 5000
	open, err := h.cfg.AlarmStore.Alarms(ctx, f)
	if err != nil {
		return d, fmt.Errorf("list open alarms: %w", err)
	}
	if open, err = h.visibleAlarms(ctx, open); err != nil { // access.go
		return d, err
	}
	sortAlarms(open)
	f = scoped
	f.States, f.Limit = []alarm.State{alarm.Resolved}, 20
	resolved, err := h.cfg.AlarmStore.Alarms(ctx, f)
	if err != nil {
		return d, fmt.Errorf("list resolved alarms: %w", err)
	}
	if resolved, err = h.visibleAlarms(ctx, resolved); err != nil {
		return d, err
	}
	names := map[string]string{}
	name := func(id string) string {
		if id == "" {
			return "(system)"
		}
		if n, ok := names[id]; ok {
			return n
		}
		n := "Patient " + id
		if p, err := h.cfg.Store.Patient(ctx, id); err == nil {
			n = patientName(p)
		}
		names[id] = n
		return n
	}
	for _, a := range open {
		d.Open = append(d.Open, inboxRow{a, name(a.Patient)})
	}
	for _, a := range resolved {
		d.Resolved = append(d.Resolved, inboxRow{a, name(a.Patient)})
	}
	return d, nil
}

// inboxScope is a filter restricted to the signed-in user's patients,
// applied by the alarm store so that other organisations' alarms never
// take a place in a page. visibleAlarms still checks every row.
func (h *Handler) inboxScope(ctx context.Context) (alarm.Filter, error) {
	sc, err := h.scope(ctx)
	if err != nil {
		return alarm.Filter{}, err
	}
	f := alarm.Filter{Restrict: true}
	if !sc.All {
		// Care teams and grants name patient ids; the organisation wall
		// is checked on each patient, so no page slot goes to another's.
		for _, id := range sc.Patients {
			p, err := h.cfg.Store.Patient(ctx, id)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return alarm.Filter{}, fmt.Errorf("load patient: %w", err)
			}
			if err == nil && sc.Has(p.Org, p.ID) {
				f.Patients = append(f.Patients, p.ID)
			}
		}
	} else {
		pts, _, err := h.cfg.Store.SearchPatients(ctx, store.PatientFilter{Org: sc.Org})
		if err != nil {
			return alarm.Filter{}, fmt.Errorf("list organisation patients: %w", err)
		}
		f.Patients = make([]string, 0, len(pts)+1)
		for _, p := range pts {
			f.Patients = append(f.Patients, p.ID)
		}
	}
	sess := sessionFrom(ctx)
	staff := sess.Role == store.RoleAdmin || sess.Role == store.RoleIntegration
	if sc.Org == store.DefaultOrg && staff {
		f.Patients = append(slices.Clip(f.Patients), "") // installation-wide technical alarms
	}
	f.NoNotices = !staff // notices go to named people, not to clinical staff (access.go)
	return f, nil
}

func (h *Handler) inbox(w http.ResponseWriter, r *http.Request) error {
	sess := sessionFrom(r.Context())
	d, err := h.loadInbox(r.Context(), sess)
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "alarms", page{Title: "Alarms", Nav: "alarms", Session: sess, Now: d.Now,
		Data: struct {
			Inbox inboxData
			Live  bool
		}{d, h.cfg.Live != nil}})
	return nil
}

// inboxEvents sends the re-rendered inbox list after alarm changes.
func (h *Handler) inboxEvents(w http.ResponseWriter, r *http.Request) error {
	if h.cfg.Live == nil {
		return &pageError{Status: http.StatusNotFound, Message: "Live updates are not available."}
	}
	sess := sessionFrom(r.Context())
	sub := h.cfg.Live.SubscribeTypes([]string{live.TypeAlarm}, nil)
	defer sub.Close()
	out, err := sse.Start(w, "tend dashboard", 2*time.Second)
	if err != nil {
		return err
	}
	dirty := false
	tick := time.NewTicker(coalesce)
	defer tick.Stop()
	ping := time.NewTicker(ssePing)
	defer ping.Stop()
	var buf bytes.Buffer
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-ping.C:
			out.Comment("ping")
		case _, ok := <-sub.C():
			if !ok {
				out.Event("reload", 0, []byte(sub.Err().Error()))
				out.Flush()
				return nil
			}
			dirty = true
			continue
		case <-tick.C:
			if !dirty {
				continue
			}
			dirty = false
			d, err := h.loadInbox(r.Context(), sess)
			if err != nil {
				h.cfg.Logger.Error("reload alarm inbox", "err", err)
				continue
			}
			buf.Reset()
			if err := h.renderPart(&buf, "inbox-list", d); err != nil {
				h.cfg.Logger.Error("render alarm inbox", "err", err)
				continue
			}
			out.Event("inbox", 0, buf.Bytes())
		}
		if err := out.Flush(); err != nil {
			return nil
		}
	}
}

const maxReasonBytes = 1000

// alarmAction acknowledges, resolves, snoozes or escalates an alarm as the signed-in
// user, then goes back to the page the form was on.
func (h *Handler) alarmAction(w http.ResponseWriter, r *http.Request) error {
	if h.cfg.Alarms == nil {
		return &pageError{Status: http.StatusNotFound, Message: "Alarms are not available."}
	}
	sess := sessionFrom(r.Context())
	act := alarm.Action{By: sess.User, Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if len(act.Reason) > maxReasonBytes {
		return &pageError{Status: http.StatusBadRequest, Message: fmt.Sprintf("The reason is longer than %d bytes.", maxReasonBytes)}
	}
	var do func(context.Context, string, alarm.Action) (alarm.Alarm, error)
	switch r.PathValue("action") {
	case "ack":
		do = h.cfg.Alarms.Acknowledge
	case "resolve":
		do = h.cfg.Alarms.Resolve
	case "snooze":
		d, err := time.ParseDuration(r.PostFormValue("for"))
		if err != nil {
			return &pageError{Status: http.StatusBadRequest, Message: "Choose how long to snooze for."}
		}
		if act.Reason == "" {
			return &pageError{Status: http.StatusBadRequest, Message: "A snooze needs a reason."}
		}
		act.For = d
		do = h.cfg.Alarms.Snooze
	case "escalate":
		if act.Reason == "" {
			return &pageError{Status: http.StatusBadRequest, Message: "An escalation needs a reason."}
		}
		do = h.cfg.Alarms.EscalateNow
	default:
		return &pageError{Status: http.StatusNotFound, Message: "There is no such alarm action."}
	}
	if err := h.checkAlarmAction(r.Context(), r.PathValue("id"), r.PathValue("action")); err != nil { // access.go
		return err
	}
	if _, err := do(r.Context(), r.PathValue("id"), act); err != nil {
		switch {
		case errors.Is(err, alarm.ErrNotFound):
			return &pageError{Status: http.StatusNotFound, Message: "There is no such alarm."}
		case errors.Is(err, alarm.ErrState):
			return &pageError{Status: http.StatusConflict, Message: stateMessage(err)}
		case errors.Is(err, alarm.ErrConflict):
			return &pageError{Status: http.StatusConflict, Message: "The alarm changed at the same time; reload and try again."}
		}
		return fmt.Errorf("change alarm: %w", err)
	}
	http.Redirect(w, r, safeNext(r.PostFormValue("back")), http.StatusSeeOther)
	return nil
}

// stateMessage is the alarm package's explanation without its prefix.
func stateMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}
