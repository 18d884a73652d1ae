package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/rules"
)

// A patient's alarm rules: the care setting's rule set with the patient's
// overrides laid over it, edited one rule at a time. A change is saved
// through alarm.Profiles.SaveRules, the same validation and storage as the
// API's PUT /api/v1/patients/{id}/rules, as a new version of the patient's
// rules document whose history keeps who, when and why; the audit trail
// records the request as an update of the patient.

// maxRuleReason bounds the reason of a change (as the API does).
const maxRuleReason = 1000

// ruleView is one rule as the page shows it: what is in force for the
// patient beside the care setting's default.
type ruleView struct {
	ID, Name, Kind, Signal, Unit string
	Op                           string
	Value, DefaultValue          string
	Clear, DefaultClear          string
	For, DefaultFor              string
	Priority, DefaultPriority    rules.Priority
	Enabled                      bool
	Mandatory                    bool
	Overridden                   bool // the patient's document changes this default
	Added                        bool // the patient's own rule, with no default
	Threshold                    bool // value and clear can be edited here
	ValueInput, ClearInput       string
}

// Changed reports whether a field differs from the default, for marking it.
func (v ruleView) Changed(field string) bool {
	if v.Added {
		return false
	}
	switch field {
	case "value":
		return v.Value != v.DefaultValue
	case "clear":
		return v.Clear != v.DefaultClear
	case "for":
		return v.For != v.DefaultFor
	case "priority":
		return v.Priority != v.DefaultPriority
	case "enabled":
		return !v.Enabled
	}
	return false
}

type rulesData struct {
	Patient, PatientName string
	Setting              string
	Version              int // of the patient's rules document; 0: none stored
	Rules                []ruleView
	History              []alarm.Doc
	Priorities           []rules.Priority
	Edit                 bool
}

// ruleState is what the page and the form work from: the setting's rules,
// the patient's stored document and its version.
type ruleState struct {
	setting  string
	defaults []rules.Rule
	patient  rules.Profile
	version  int
}

func (h *Handler) loadRuleState(r *http.Request, patient string) (ruleState, error) {
	ctx := r.Context()
	if h.cfg.Profiles == nil || h.cfg.AlarmStore == nil {
		return ruleState{}, &pageError{Status: http.StatusNotFound, Message: "Alarm rules are not configured on this node."}
	}
	var st ruleState
	d, err := h.cfg.AlarmStore.Doc(ctx, alarm.PatientScope(patient), alarm.DocRules)
	switch {
	case errors.Is(err, alarm.ErrNotFound):
	case err != nil:
		return st, fmt.Errorf("load rules document: %w", err)
	default:
		st.version = d.Version
	}
	if st.patient, err = h.cfg.Profiles.PatientRules(ctx, patient); err != nil {
		return st, fmt.Errorf("patient rules: %w", err)
	}
	st.setting = st.patient.Setting
	if st.setting == "" {
		st.setting = rules.SettingWard
	}
	set, err := h.cfg.Profiles.SettingRules(ctx, st.setting)
	if err != nil {
		return st, fmt.Errorf("rules of %s: %w", st.setting, err)
	}
	st.defaults = set.Rules
	return st, nil
}

func (st ruleState) override(id string) (rules.Rule, int) {
	for i, r := range st.patient.Rules {
		if r.ID == id {
			return r, i
		}
	}
	return rules.Rule{}, -1
}

func (st ruleState) defaultRule(id string) (rules.Rule, bool) {
	for _, r := range st.defaults {
		if r.ID == id {
			return r, true
		}
	}
	return rules.Rule{}, false
}

// inForce is a rule as it applies to the patient (disabled included).
func (st ruleState) inForce(def rules.Rule) (rules.Rule, bool) {
	o, i := st.override(def.ID)
	switch {
	case i < 0:
		return def, false
	case o.Kind == "": // {"id":…, "disabled":…}
		def.Disabled = o.Disabled
		return def, true
	}
	return o, true
}

func (st ruleState) views() []ruleView {
	var out []ruleView
	for _, def := range st.defaults {
		cur, over := st.inForce(def)
		v := viewOf(cur)
		v.Overridden = over
		v.DefaultValue, v.DefaultClear, v.DefaultFor, v.DefaultPriority = fmtRuleValue(def), fmtClear(def), fmtFor(def.For), def.Priority
		out = append(out, v)
	}
	for _, r := range st.patient.Rules {
		if _, ok := st.defaultRule(r.ID); !ok && r.Kind != "" {
			v := viewOf(r)
			v.Added = true
			out = append(out, v)
		}
	}
	return out
}

func viewOf(r rules.Rule) ruleView {
	v := ruleView{ID: r.ID, Name: r.Name, Kind: string(r.Kind), Op: r.Op, Value: fmtRuleValue(r), Clear: fmtClear(r),
		For: fmtFor(r.For), Priority: r.Priority, Enabled: !r.Disabled, Mandatory: r.Mandatory,
		Threshold: r.Kind == rules.KindThreshold, ValueInput: trimNumber(r.Value)}
	if r.Clear != nil {
		v.ClearInput = trimNumber(*r.Clear)
	}
	if v.Name == "" {
		v.Name = r.ID
	}
	if c, ok := codes.ByLOINC(r.Code); ok {
		v.Signal, v.Unit = c.Display, c.Unit
	} else {
		v.Signal = r.Code
	}
	return v
}

func trimNumber(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// fmtRuleValue shows what a rule compares against, where its kind has one.
func fmtRuleValue(r rules.Rule) string {
	switch r.Kind {
	case rules.KindThreshold, rules.KindRate, rules.KindChange, rules.KindForecast:
		return strings.TrimSpace(r.Op + " " + trimNumber(r.Value))
	case rules.KindNEWS2:
		return "scale " + strconv.Itoa(max(r.Scale, 1))
	case rules.KindNoData, rules.KindClockSkew:
		return "after " + fmtFor(r.Window)
	}
	return ""
}

func fmtClear(r rules.Rule) string {
	if r.Clear == nil {
		return ""
	}
	return trimNumber(*r.Clear)
}

func fmtFor(d rules.Duration) string {
	if d == 0 {
		return ""
	}
	return time.Duration(d).String()
}

// patientRules shows a patient's alarm rules to someone who may see the
// patient; those who may change them get a form per rule.
func (h *Handler) patientRules(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := h.visiblePatient(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	st, err := h.loadRuleState(r, p.ID)
	if err != nil {
		return err
	}
	hist, err := h.cfg.AlarmStore.DocHistory(ctx, alarm.PatientScope(p.ID), alarm.DocRules)
	if err != nil {
		return fmt.Errorf("rules history: %w", err)
	}
	if len(hist) > 20 {
		hist = hist[:20]
	}
	sess := sessionFrom(ctx)
	d := rulesData{Patient: p.ID, PatientName: patientName(p), Setting: st.setting, Version: st.version, Rules: st.views(),
		History: hist, Priorities: []rules.Priority{rules.PriorityLow, rules.PriorityMedium, rules.PriorityHigh}, Edit: sess.can(permEditRules)}
	h.render(w, r, http.StatusOK, "rules", page{Title: "Alarm rules · " + d.PatientName, Nav: "ward", Session: sess, Data: d})
	return nil
}

// changeRule applies one rule's form: new limits, priority and on/off, or
// "reset" back to the setting's default. The form carries the document
// version it was shown with, so a change made meanwhile by someone else is
// not silently overwritten.
func (h *Handler) changeRule(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := h.visiblePatient(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	st, err := h.loadRuleState(r, p.ID)
	if err != nil {
		return err
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		return &pageError{Status: http.StatusBadRequest, Message: "Give the reason for the change; it is kept with the rule's history."}
	}
	if len(reason) > maxRuleReason {
		return &pageError{Status: http.StatusBadRequest, Message: fmt.Sprintf("The reason is at most %d bytes.", maxRuleReason)}
	}
	if v, err := strconv.Atoi(r.PostFormValue("version")); err != nil || v != st.version {
		return &pageError{Status: http.StatusConflict, Message: "The patient's rules changed since this page was opened; reload it and try again."}
	}
	id := r.PostFormValue("rule")
	def, isDefault := st.defaultRule(id)
	cur, at := st.override(id)
	if !isDefault && (at < 0 || cur.Kind == "") {
		return &pageError{Status: http.StatusNotFound, Message: "This patient has no such rule."}
	}
	next := st.patient
	next.Rules = slices.Clone(st.patient.Rules)
	if r.PostFormValue("action") == "reset" {
		if !isDefault || at < 0 {
			return &pageError{Status: http.StatusBadRequest, Message: "This rule already follows the care setting's default."}
		}
		next.Rules = slices.Delete(next.Rules, at, at+1)
	} else {
		base := def
		if at >= 0 && cur.Kind != "" {
			base = cur
		}
		changed, err := applyRuleForm(r, base)
		if err != nil {
			return err
		}
		switch {
		case isDefault && sameRule(changed, def): // back to the default: no override
			if at >= 0 {
				next.Rules = slices.Delete(next.Rules, at, at+1)
			}
		case isDefault && sameRule(withEnabled(changed), def): // only switched off
			next.Rules = putRule(next.Rules, at, rules.Rule{ID: id, Disabled: true})
		default:
			next.Rules = putRule(next.Rules, at, changed)
		}
	}
	if slices.EqualFunc(next.Rules, st.patient.Rules, sameRule) {
		return &pageError{Status: http.StatusBadRequest, Message: "This leaves the rule as it is; nothing was changed."}
	}
	_, err = h.cfg.Profiles.SaveRules(ctx, alarm.PatientScope(p.ID), &next, sessionFrom(ctx).User, reason, h.cfg.Now().UTC())
	if inv := (*alarm.InvalidDocError)(nil); errors.As(err, &inv) {
		// The rules package's message names the rule and what is wrong
		// (a mandatory rule, a clear value on the wrong side); it holds no
		// patient data.
		return &pageError{Status: http.StatusUnprocessableEntity, Message: "Tend refused this change: " + inv.Err.Error()}
	}
	if err != nil {
		return err
	}
	h.cfg.Logger.Info("patient alarm rule changed from the dashboard", "rule", id, "by", sessionFrom(ctx).User)
	return seeOther(w, r, "/patients/"+url.PathEscape(p.ID)+"/rules#rule-"+url.PathEscape(id))
}

// applyRuleForm returns base with the form's fields applied: value and
// clear (threshold rules), priority and enabled.
func applyRuleForm(r *http.Request, base rules.Rule) (rules.Rule, error) {
	out := base
	if base.Clear != nil {
		c := *base.Clear
		out.Clear = &c
	}
	num := func(field string) (float64, bool, error) {
		s := strings.TrimSpace(r.PostFormValue(field))
		if s == "" {
			return 0, false, nil
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, false, &pageError{Status: http.StatusBadRequest, Message: fmt.Sprintf("The %s must be a number.", field)}
		}
		return v, true, nil
	}
	if base.Kind == rules.KindThreshold {
		if v, ok, err := num("value"); err != nil {
			return out, err
		} else if ok {
			out.Value = v
		}
		if v, ok, err := num("clear"); err != nil {
			return out, err
		} else if ok {
			out.Clear = &v
		}
	}
	if s := r.PostFormValue("priority"); s != "" {
		pr := rules.Priority(s)
		if pr.Rank() == 0 {
			return out, &pageError{Status: http.StatusBadRequest, Message: "The priority is low, medium or high."}
		}
		out.Priority = pr
	}
	out.Disabled = r.PostFormValue("enabled") == ""
	return out, nil
}

func withEnabled(r rules.Rule) rules.Rule { r.Disabled = false; return r }

func sameRule(a, b rules.Rule) bool {
	if (a.Clear == nil) != (b.Clear == nil) || (a.Clear != nil && *a.Clear != *b.Clear) {
		return false
	}
	if (a.Latching == nil) != (b.Latching == nil) || (a.Latching != nil && *a.Latching != *b.Latching) {
		return false
	}
	a.Clear, b.Clear, a.Latching, b.Latching = nil, nil, nil, nil
	return a == b
}

func putRule(rs []rules.Rule, at int, r rules.Rule) []rules.Rule {
	if at >= 0 {
		rs[at] = r
		return rs
	}
	return append(rs, r)
}

// home is the ward; an auditor, who sees no patients, lands on the audit
// trail instead of a refusal.
func (h *Handler) home(w http.ResponseWriter, r *http.Request) error {
	sess := sessionFrom(r.Context())
	switch {
	case sess.can(permViewPatients):
		return h.ward(w, r)
	case sess.can(permReadAudit):
		return seeOther(w, r, "/audit")
	}
	return &pageError{Status: http.StatusForbidden, Message: fmt.Sprintf("Your role (%s) may not %s.", sess.Role, permViewPatients.what())}
}
