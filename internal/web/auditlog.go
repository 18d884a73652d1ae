package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/store"
)

// The audit trail viewer, for auditors and admins. Someone of the
// installation's default organisation sees every record; someone of
// another organisation only the records of their organisation's users and
// clients. Reading the trail is itself recorded (audit.Classify).

const (
	auditPageSize = 50
	// auditScanMax bounds the records one page reads when filters the
	// store cannot apply (action, outcome, organisation) discard most: the
	// page then ends early with a link to go on.
	auditScanMax = 5000
	auditBatch   = 500
)

// auditActions are the actions a record may carry, for the filter.
var auditActions = []string{string(audit.Read), string(audit.Search), string(audit.Create), string(audit.Update), string(audit.Delete),
	string(audit.Export), string(audit.Login), string(audit.Logout), string(audit.Failure), string(audit.Denial)}

type auditFilter struct {
	Patient, User, From, To, Action, Outcome string
}

type auditData struct {
	Filter  auditFilter
	Actions []string
	Rows    []auditRow
	Next    string // link to the next page, "" at the end
	Scanned bool   // the page stopped at auditScanMax records read
	Problem string
	Verify  *verifyView
}

type auditRow struct {
	store.AuditEntry
	Failed bool
}

type verifyView struct {
	OK      bool
	Count   int64
	Head    string
	Problem string
	Stored  bool // the chain head is recorded (the trail is not empty)
}

// auditLog shows a page of records, oldest first, matching the filters.
// Without a "from" parameter the page starts 24 hours ago; an empty one
// means from the first record.
func (h *Handler) auditLog(w http.ResponseWriter, r *http.Request) error {
	return h.showAudit(w, r, nil)
}

func (h *Handler) showAudit(w http.ResponseWriter, r *http.Request, v *verifyView) error {
	now := h.cfg.Now().UTC()
	f, q, problem := parseAuditSearch(r.URL.Query(), now)
	d := auditData{Filter: f, Actions: auditActions, Verify: v, Problem: problem}
	status := http.StatusOK
	if d.Problem != "" {
		status = http.StatusBadRequest
	} else if err := h.auditPage(r, &d, q); err != nil {
		return err
	}
	h.render(w, r, status, "audit", page{Title: "Audit trail", Nav: "audit", Session: sessionFrom(r.Context()), Now: now, Data: d})
	return nil
}

// parseAuditSearch reads the viewer's query: the filter as typed (to fill
// the form again), the store query, and a problem to show when some
// parameter is not valid.
func parseAuditSearch(qv url.Values, now time.Time) (f auditFilter, q store.AuditQuery, problem string) {
	f = auditFilter{Patient: strings.TrimSpace(qv.Get("patient")), User: strings.TrimSpace(qv.Get("user")), From: qv.Get("from"),
		To: qv.Get("to"), Action: qv.Get("action"), Outcome: qv.Get("outcome")}
	if _, ok := qv["from"]; !ok {
		f.From = now.Add(-24 * time.Hour).Format(time.DateOnly)
	}
	q = store.AuditQuery{Patient: f.Patient, Subject: f.User}
	var err error
	if q.From, err = parseDay(f.From); err != nil {
		problem = "The start date is not a date."
	}
	if q.To, err = parseDay(f.To); err != nil {
		problem = "The end date is not a date."
	} else if !q.To.IsZero() {
		q.To = q.To.Add(24 * time.Hour) // the whole end day
	}
	if f.Action != "" && !contains(auditActions, f.Action) {
		problem = "Choose an action from the list."
	}
	if f.Outcome != "" && f.Outcome != "success" && f.Outcome != "failure" {
		problem = "Choose an outcome from the list."
	}
	if after := qv.Get("after"); after != "" {
		if q.AfterSeq, err = strconv.ParseInt(after, 10, 64); err != nil || q.AfterSeq < 0 {
			problem = "The page link is damaged; search again."
		}
	}
	return f, q, problem
}

// auditPage fills d with the records of q that pass the filters the store
// does not apply.
func (h *Handler) auditPage(r *http.Request, d *auditData, q store.AuditQuery) error {
	ctx := r.Context()
	vis := auditVisibility{org: store.OrgOrDefault(sessionFrom(ctx).Org), orgOf: map[string]string{}}
	scanned, last := 0, q.AfterSeq
	for scanned < auditScanMax {
		q.Limit, q.AfterSeq = auditBatch, last
		es, err := h.cfg.Store.AuditEntries(ctx, q)
		if err != nil {
			return fmt.Errorf("read audit records: %w", err)
		}
		for _, e := range es {
			scanned++
			visible, err := vis.visible(ctx, h.cfg.Store, e)
			if err != nil {
				return err
			}
			if !visible || !d.Filter.matches(e) {
				last = e.Seq
				continue
			}
			if len(d.Rows) == auditPageSize {
				d.Next = nextAuditPage(r, last)
				return nil
			}
			d.Rows = append(d.Rows, auditRow{e, e.Outcome != audit.Success})
			last = e.Seq
		}
		if len(es) < auditBatch {
			return nil // the end of the trail
		}
	}
	d.Scanned, d.Next = true, nextAuditPage(r, last)
	return nil
}

// auditVisibility: the default organisation's auditors see the whole
// trail, others their own organisation's records. A sign-in is recorded
// before the session knows its organisation: it belongs to the
// organisation of the user who signed in.
type auditVisibility struct {
	org   string
	orgOf map[string]string // user id -> organisation, "" for none
}

func (v auditVisibility) visible(ctx context.Context, st store.Store, e store.AuditEntry) (bool, error) {
	switch {
	case v.org == store.DefaultOrg || e.Org == v.org:
		return true, nil
	case e.Org != "" || e.Subject == "":
		return false, nil
	}
	org, ok := v.orgOf[e.Subject]
	if !ok {
		u, err := st.User(ctx, e.Subject)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, fmt.Errorf("load user: %w", err)
		}
		if err == nil {
			org = store.OrgOrDefault(u.Org)
		}
		v.orgOf[e.Subject] = org
	}
	return org == v.org, nil
}

func (f auditFilter) matches(e store.AuditEntry) bool {
	if f.Action != "" && e.Action != f.Action {
		return false
	}
	switch f.Outcome {
	case "success":
		return e.Outcome == audit.Success
	case "failure":
		return e.Outcome != audit.Success
	}
	return true
}

func nextAuditPage(r *http.Request, after int64) string {
	v := url.Values{}
	for k, vs := range r.URL.Query() {
		if k != "after" {
			v[k] = vs
		}
	}
	v.Set("after", strconv.FormatInt(after, 10))
	return "/audit?" + v.Encode()
}

// parseDay reads a YYYY-MM-DD date (UTC); "" is the zero time.
func parseDay(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.DateOnly, s)
}

// verifyAudit checks the whole chain, as `tend audit verify` does, and
// shows the result above the records.
func (h *Handler) verifyAudit(w http.ResponseWriter, r *http.Request) error {
	res, err := audit.Verify(r.Context(), h.cfg.Store)
	if err != nil {
		return fmt.Errorf("verify audit trail: %w", err)
	}
	v := &verifyView{OK: res.Problem == nil, Count: res.Count, Head: res.HeadHex(), Stored: len(res.Stored) > 0}
	if res.Problem != nil {
		v.Problem = res.Problem.Error()
	}
	return h.showAudit(w, r, v)
}
