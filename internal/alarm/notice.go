package alarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/rules"
)

// KindNotice marks an episode raised by Service.Notice: addressed to named
// recipients, not to the patient's escalation policy.
const KindNotice rules.Kind = "notice"

// RuleBreakGlass is the rule id of the notice that tells an organisation's
// privacy officer about a break-glass access.
const RuleBreakGlass = "break-glass"

// defaultNoticeRepeat is how often an unacknowledged notice is sent again:
// it asks for a review, not for someone at the bedside.
const defaultNoticeRepeat = time.Hour

// Notice is something a named person must hear about that is not the
// patient's condition, e.g. that someone opened the patient's record by
// break-glass. It becomes an ordinary episode (listed, acknowledged,
// resolved, with history) whose deliveries go through the outbox like any
// alarm's, but to Recipients instead of the escalation policy.
type Notice struct {
	Rule    string // e.g. RuleBreakGlass
	Subject string // what it is about (a grant id): one episode per patient, rule and subject
	// Patient is the patient it concerns; it decides who may list the
	// episode (the patient's organisation, as for any alarm).
	Patient  string
	Name     string
	Message  string // one line for people; the whole of what recipients learn beyond Detail
	Priority rules.Priority
	// Recipients are webhook:ID and email:ADDRESS entries. With none, the
	// supervisors of the patient's escalation document are told, so a
	// notice is never left with nobody to tell while someone could be.
	Recipients []string
	// Repeat is how often recipients are told again while nobody has
	// acknowledged it (0: hourly).
	Repeat time.Duration
	// Detail is kept with the episode and sent with it (no PHI beyond
	// what the recipients may see).
	Detail map[string]any
}

// noticeDetail is the part of a notice's Detail that addresses it.
type noticeDetail struct {
	Recipients []string       `json:"recipients"`
	Repeat     rules.Duration `json:"repeat"`
}

// Notice raises n once: a second call with the same patient, rule and
// subject while the first episode is open returns that episode and tells
// nobody again. The episode stays active until acknowledged (its
// condition is over as soon as it is raised).
func (s *Service) Notice(ctx context.Context, n Notice) (Alarm, error) {
	if n.Rule == "" || n.Subject == "" || n.Patient == "" {
		return Alarm{}, errors.New("alarm: a notice needs a rule, a subject and a patient")
	}
	if n.Priority.Rank() == 0 {
		n.Priority = rules.PriorityLow
	}
	if n.Repeat <= 0 {
		n.Repeat = defaultNoticeRepeat
	}
	for _, r := range n.Recipients {
		if err := checkRecipient(r); err != nil {
			return Alarm{}, fmt.Errorf("alarm: notice: %w", err)
		}
		if strings.HasPrefix(r, RecipientPolicy+":") {
			return Alarm{}, fmt.Errorf("alarm: notice: recipient %q: name webhooks or e-mail addresses, not policies", clip(r))
		}
	}
	detail := map[string]any{}
	for k, v := range n.Detail {
		detail[k] = v
	}
	detail["recipients"] = append([]string{}, n.Recipients...)
	detail["repeat"] = rules.Duration(n.Repeat)
	esc, err := s.cfg.Escalation(ctx, n.Patient)
	if err != nil {
		return Alarm{}, fmt.Errorf("alarm: escalation policy of %s: %w", n.Patient, err)
	}
	now := s.cfg.Now().UTC()
	ev := rules.Event{Type: rules.Start, Patient: n.Patient, Rule: n.Rule, Subject: n.Subject, Name: n.Name, Kind: KindNotice,
		Category: rules.CategoryTechnical, Priority: n.Priority, Latching: true, Time: now, Message: n.Message, Detail: detail}
	var out Alarm
	var done committed
	err = s.cfg.Store.Update(ctx, func(tx Tx) error {
		done = committed{}
		a, open, err := tx.OpenAlarm(n.Patient, n.Rule, n.Subject)
		if err != nil {
			return err
		}
		if open {
			out = a
			return nil
		}
		a = Alarm{ID: episodeID(ev), Patient: n.Patient, State: Active, Priority: n.Priority, Kind: rules.CategoryTechnical,
			Rule: n.Rule, RuleKind: KindNotice, Subject: n.Subject, Name: n.Name, Raised: now, Updated: now, Latching: true}
		setReading(&a, ev)
		if a.Detail == nil {
			return errors.New("notice detail could not be encoded")
		}
		pl, ok := planOf(esc, &a)
		if ok {
			a.NextEscalation = now.Add(pl.repeat)
		}
		if err := tx.PutAlarm(&a); err != nil {
			return err
		}
		detailNote := n.Message
		if !ok {
			detailNote += " (nobody to tell: no recipients and no supervisors; shown in the API and live stream only)"
		}
		if err := tx.AddChange(Change{Alarm: a.ID, At: now, Action: "raised", By: "system", Detail: detailNote}); err != nil {
			return err
		}
		done.note(&a, "raised")
		if err := s.notify(tx, &a, esc, "alarm.raised", 0, now, &done); err != nil {
			return err
		}
		out = a
		return nil
	})
	if err != nil {
		return Alarm{}, fmt.Errorf("alarm: raise notice %s: %w", n.Rule, err)
	}
	s.after(&done)
	return out, nil
}

// noticePlan is the plan of a notice: one tier of its recipients, told
// again every repeat; the supervisors when it names nobody.
func noticePlan(esc Escalation, a *Alarm) (plan, bool) {
	var d noticeDetail
	if err := json.Unmarshal(a.Detail, &d); err != nil || len(d.Recipients) == 0 {
		if esc.Supervisors == "" {
			return plan{}, false
		}
		return esc.plan(esc.Supervisors)
	}
	repeat := time.Duration(d.Repeat)
	if repeat <= 0 {
		repeat = defaultNoticeRepeat
	}
	return plan{tiers: [][]string{d.Recipients}, after: []time.Duration{0}, repeat: repeat}, true
}
