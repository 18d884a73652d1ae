package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/news2"
	"github.com/tendhealth/tend/internal/rules"
)

// maxDocBytes bounds a rules or escalation document.
const maxDocBytes = 1 << 20

// docTarget is whose configuration document a request is about: a care
// setting or a patient.
type docTarget struct {
	scope   string
	setting string // the setting itself, or the patient's setting
	patient string
}

// target resolves {setting} or {id} of the path; an unknown setting or
// patient is a 404.
func (h *Handler) target(r *http.Request) (docTarget, error) {
	if s := r.PathValue("setting"); s != "" {
		if !rules.IsSetting(s) {
			return docTarget{}, &Error{Status: http.StatusNotFound, Detail: fmt.Sprintf("no care setting %q (%s)", clipText(s), strings.Join(rules.Settings(), ", "))}
		}
		return docTarget{scope: alarm.SettingScope(s), setting: s}, nil
	}
	id := r.PathValue("id")
	if _, err := h.cfg.Store.Patient(r.Context(), id); err != nil {
		return docTarget{}, fmt.Errorf("load patient: %w", err)
	}
	pr, err := h.cfg.Profiles.PatientRules(r.Context(), id)
	if err != nil {
		return docTarget{}, fmt.Errorf("patient rules: %w", err)
	}
	setting := pr.Setting
	if setting == "" {
		setting = rules.SettingWard
	}
	return docTarget{scope: alarm.PatientScope(id), setting: setting, patient: id}, nil
}

// docJSON is the answer to GET and PUT of a document: the stored version
// (version 0 and an empty document when nothing is stored) and what is in
// force for the setting or patient.
type docJSON struct {
	Patient   string          `json:"patient,omitempty"`
	Setting   string          `json:"setting"`
	Version   int             `json:"version"`
	Author    string          `json:"author,omitempty"`
	At        time.Time       `json:"at,omitzero"`
	Reason    string          `json:"reason,omitempty"`
	Document  json.RawMessage `json:"document"`
	Effective any             `json:"effective"`
}

func (h *Handler) getDoc(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		t, err := h.target(r)
		if err != nil {
			return err
		}
		return h.writeDoc(w, r, t, kind)
	}
}

func (h *Handler) writeDoc(w http.ResponseWriter, r *http.Request, t docTarget, kind string) error {
	ctx := r.Context()
	out := docJSON{Patient: t.patient, Setting: t.setting}
	d, err := h.cfg.AlarmStore.Doc(ctx, t.scope, kind)
	switch {
	case errors.Is(err, alarm.ErrNotFound):
		out.Document = json.RawMessage(`{}`)
		if kind == alarm.DocRules {
			out.Document = json.RawMessage(`{"rules":[]}`)
		}
	case err != nil:
		return fmt.Errorf("load %s document: %w", kind, err)
	default:
		out.Version, out.Author, out.At, out.Reason, out.Document = d.Version, d.Author, d.At, d.Reason, d.Body
	}
	switch {
	case kind == alarm.DocRules && t.patient == "":
		p, err := h.cfg.Profiles.SettingRules(ctx, t.setting)
		if err != nil {
			return fmt.Errorf("effective rules of %s: %w", t.setting, err)
		}
		out.Effective = p.Rules
	case kind == alarm.DocRules:
		if out.Effective, err = h.cfg.Profiles.Rules(ctx, t.patient); err != nil {
			return fmt.Errorf("effective rules of a patient: %w", err)
		}
	case t.patient == "":
		var e alarm.Escalation
		if err := json.Unmarshal(out.Document, &e); err != nil {
			return fmt.Errorf("stored escalation of %s: %w", t.setting, err)
		}
		out.Effective = alarm.Merge(e, alarm.Escalation{})
	default:
		if out.Effective, err = h.cfg.Profiles.Escalation(ctx, t.patient); err != nil {
			return fmt.Errorf("effective escalation of a patient: %w", err)
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// putDoc stores a new version of a rules or escalation document after
// validating it against what it will be merged with; an invalid document
// stores nothing. ?reason= is kept in the history.
func (h *Handler) putDoc(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		t, err := h.target(r)
		if err != nil {
			return err
		}
		reason := r.URL.Query().Get("reason")
		if len(reason) > maxReasonBytes {
			return &Error{Status: http.StatusBadRequest, Detail: fmt.Sprintf("reason is longer than %d bytes", maxReasonBytes)}
		}
		if kind == alarm.DocRules {
			if err := h.putRules(w, r, t, reason); err != nil {
				return err
			}
		} else {
			doc, err := h.decodeEscalation(w, r, t)
			if err != nil {
				return err
			}
			body, err := json.Marshal(doc)
			if err != nil {
				return fmt.Errorf("encode %s document: %w", kind, err)
			}
			d := alarm.Doc{Scope: t.scope, Kind: kind, Body: body, Author: subject(r), Reason: reason, At: h.cfg.Now().UTC()}
			if err := h.cfg.AlarmStore.PutDoc(r.Context(), &d); err != nil {
				return fmt.Errorf("store %s document: %w", kind, err)
			}
			h.cfg.Profiles.Invalidate()
		}
		if kind == alarm.DocRules && t.patient != "" {
			// The patient's document may have moved them to another setting.
			if t, err = h.target(r); err != nil {
				return err
			}
		}
		return h.writeDoc(w, r, t, kind)
	}
}

func invalid(what string, err error) error {
	return &Error{Status: http.StatusUnprocessableEntity, Detail: fmt.Sprintf("invalid %s document: %v", what, err)}
}

// putRules decodes and saves a rules document through
// alarm.Profiles.SaveRules, the validation and storage the dashboard's rule
// form uses too.
func (h *Handler) putRules(w http.ResponseWriter, r *http.Request, t docTarget, reason string) error {
	var p rules.Profile
	if err := decodeBody(w, r, &p, maxDocBytes, false); err != nil {
		return err
	}
	_, err := h.cfg.Profiles.SaveRules(r.Context(), t.scope, &p, subject(r), reason, h.cfg.Now().UTC())
	if inv := (*alarm.InvalidDocError)(nil); errors.As(err, &inv) {
		return invalid("rules", inv.Err)
	}
	return err
}

func (h *Handler) decodeEscalation(w http.ResponseWriter, r *http.Request, t docTarget) (*alarm.Escalation, error) {
	var e alarm.Escalation
	if err := decodeBody(w, r, &e, maxDocBytes, false); err != nil {
		return nil, err
	}
	if err := h.cfg.Profiles.ValidateEscalation(r.Context(), t.scope, e); err != nil {
		return nil, invalid("escalation", err)
	}
	if err := h.checkWebhooks(r, e); err != nil {
		return nil, err
	}
	return &e, nil
}

// checkWebhooks refuses recipients naming webhooks that are not
// registered: better a 422 now than a failed notification during an alarm.
func (h *Handler) checkWebhooks(r *http.Request, e alarm.Escalation) error {
	for name, p := range e.Policies {
		for i, t := range p.Tiers {
			for _, rcpt := range t.Recipients {
				id, ok := strings.CutPrefix(rcpt, alarm.RecipientWebhook+":")
				if !ok {
					continue
				}
				_, err := h.cfg.AlarmStore.Webhook(r.Context(), id)
				if errors.Is(err, alarm.ErrNotFound) {
					return invalid("escalation", fmt.Errorf("policy %s: tier %d: no webhook %q is registered (POST /api/v1/webhooks)", name, i+1, id))
				}
				if err != nil {
					return fmt.Errorf("look up webhook: %w", err)
				}
			}
		}
	}
	return nil
}

// docHistory lists the stored versions of a document, newest first.
func (h *Handler) docHistory(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		t, err := h.target(r)
		if err != nil {
			return err
		}
		ds, err := h.cfg.AlarmStore.DocHistory(r.Context(), t.scope, kind)
		if err != nil {
			return fmt.Errorf("%s history: %w", kind, err)
		}
		if ds == nil {
			ds = []alarm.Doc{}
		}
		return writeJSON(w, http.StatusOK, map[string]any{"history": ds})
	}
}

// news2JSON is a NEWS2 score computed on demand.
type news2JSON struct {
	Patient  string         `json:"patient"`
	Time     time.Time      `json:"time"`
	Scale    int            `json:"scale"`
	Priority rules.Priority `json:"priority,omitempty"`
	news2.Result
}

// news2 scores the patient's latest stored vital signs at Now, on the SpO2
// scale of their effective NEWS2 rule. Parameters without a recent enough
// reading are listed as missing or stale, and the total is then a lower
// bound.
func (h *Handler) news2(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	ctx := r.Context()
	if _, err := h.cfg.Store.Patient(ctx, id); err != nil {
		return fmt.Errorf("load patient: %w", err)
	}
	ss, err := h.cfg.Store.Latest(ctx, id)
	if err != nil {
		return fmt.Errorf("latest readings: %w", err)
	}
	type obs struct {
		v  float64
		at time.Time
	}
	latest := map[string]obs{}
	keep := func(code string, v float64, at time.Time) {
		if o, ok := latest[code]; !ok || at.After(o.at) {
			latest[code] = obs{v, at}
		}
	}
	for _, s := range ss {
		if s.HasValue {
			keep(s.Code, s.Value, s.Time)
		}
		for _, c := range s.Components { // systolic inside a blood-pressure panel
			keep(c.Code, c.Value, s.Time)
		}
	}
	in := rules.NEWS2Input(func(code string) (float64, time.Time, bool) {
		o, ok := latest[code]
		return o.v, o.at, ok
	})
	eff, err := h.cfg.Profiles.Rules(ctx, id)
	if err != nil {
		return fmt.Errorf("effective rules: %w", err)
	}
	cfg, scale := news2.Config{Scale: news2.Scale1, Fresh: news2.DefaultFreshness()}, 1
	for _, rule := range eff {
		if rule.Kind == rules.KindNEWS2 && rule.Scale == 2 {
			cfg.Scale, scale = news2.Scale2, 2
		}
	}
	now := h.cfg.Now().UTC()
	res := news2.Score(in, cfg, now)
	return writeJSON(w, http.StatusOK, news2JSON{Patient: id, Time: now, Scale: scale, Priority: rules.BandPriority(res.Band), Result: res})
}
