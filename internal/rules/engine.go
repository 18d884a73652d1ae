package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
)

// EventType is what happened to a rule's condition.
type EventType string

// Event types.
const (
	// Start: the condition now holds (after its For duration).
	Start EventType = "start"
	// Update: the condition still holds but its priority changed (NEWS2
	// moving between bands).
	Update EventType = "update"
	// Clear: the condition no longer holds (past the hysteresis bound).
	Clear EventType = "clear"
)

// Event reports a change of a rule's condition for one patient. Subject
// separates conditions of one rule that are independent of each other
// (a no-data rule watches every device/code signal separately).
type Event struct {
	Type     EventType `json:"type"`
	Patient  string    `json:"patient"`
	Rule     string    `json:"rule"`
	Subject  string    `json:"subject,omitempty"`
	Name     string    `json:"name"`
	Kind     Kind      `json:"kind"`
	Category Category  `json:"category"`
	Priority Priority  `json:"priority"`
	Latching bool      `json:"latching"`
	Device   string    `json:"device,omitempty"`
	Code     string    `json:"code,omitempty"`
	Value    float64   `json:"value"`
	Unit     string    `json:"unit,omitempty"`
	Time     time.Time `json:"time"`              // reading time (or the tick time)
	Message  string    `json:"message"`           // one line for people
	Detail   any       `json:"detail,omitempty"`  // e.g. the NEWS2 breakdown
	Seq      uint64    `json:"seq,omitempty"`     // stream position of the reading; 0 for ticks
	Received time.Time `json:"received,omitzero"` // when the reading reached Tend
}

// Output collects what one call produced.
type Output struct {
	Events []Event
	// Derived are readings computed from others (NEWS2 scores) to be stored
	// like any reading.
	Derived []reading.Reading
}

// RuleSet returns the effective rules of a patient. It is called whenever
// the engine meets a patient it has no rules for, and after Invalidate.
type RuleSet func(patient string) []Rule

// Engine evaluates readings. It is not safe for concurrent use: one
// goroutine feeds it readings in stream order and ticks.
type Engine struct {
	rulesFor RuleSet
	patients map[string]*patientState
}

// NewEngine returns an engine that takes each patient's rules from rulesFor.
func NewEngine(rulesFor RuleSet) *Engine {
	return &Engine{rulesFor: rulesFor, patients: map[string]*patientState{}}
}

// Invalidate drops the cached rules of a patient ("" = every patient) so
// the next reading loads them again. Condition state is kept for rules that
// still exist.
func (e *Engine) Invalidate(patient string) {
	for id, p := range e.patients {
		if patient == "" || id == patient {
			p.rules = nil
		}
	}
}

type patientState struct {
	id      string
	rules   []Rule                 // nil: load on next use
	Signals map[string]*signal     `json:"signals"` // by code
	Seen    map[string]*seen       `json:"seen"`    // by device + "|" + code: for no-data
	Conds   map[string]*condition  `json:"conds"`   // by rule id + "|" + subject
	Devices map[string]*deviceSeen `json:"devices"` // clock skew per device
	// LastScore is the last NEWS2 score stored, to store only changes.
	LastScore *scoreMark `json:"last_score,omitempty"`
}

type point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

type signal struct {
	Last    point   `json:"last"`
	Device  string  `json:"device"`
	History []point `json:"history,omitempty"` // oldest first, kept for rate/change/forecast rules
}

type seen struct {
	Device   string    `json:"device"`
	Code     string    `json:"code"`
	Received time.Time `json:"received"`
}

type deviceSeen struct {
	Skew time.Duration `json:"skew"`
}

type scoreMark struct {
	Total int       `json:"total"`
	At    time.Time `json:"at"`
}

// condition is the Prometheus-style state of one rule: inactive, pending
// (true but not yet for long enough), firing.
type condition struct {
	Pending  bool      `json:"pending,omitempty"`
	Onset    time.Time `json:"onset,omitzero"`
	Firing   bool      `json:"firing,omitempty"`
	Priority Priority  `json:"priority,omitempty"`
}

// patient returns a patient's state, loading its rules when needed. The
// condition of a rule that no longer exists (switched off or removed) is
// dropped, and if it was firing a Clear is emitted at time at, so its
// alarm does not stay open for a condition nobody evaluates.
func (e *Engine) patient(id string, at time.Time, out *Output) *patientState {
	p := e.patients[id]
	if p == nil {
		p = newPatientState(id)
		e.patients[id] = p
	}
	if p.rules == nil {
		p.rules = e.rulesFor(id)
		if p.rules == nil {
			p.rules = []Rule{}
		}
		exists := make(map[string]bool, len(p.rules))
		for _, r := range p.rules {
			exists[r.ID] = true
		}
		keys := make([]string, 0, len(p.Conds))
		for k := range p.Conds {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ruleID, subject, _ := strings.Cut(k, "|")
			if exists[ruleID] {
				continue
			}
			if c := p.Conds[k]; c.Firing {
				gone := Rule{ID: ruleID, Name: ruleID, Priority: c.Priority}
				e.emit(gone, subject, Clear, Event{Patient: id, Time: at, Priority: c.Priority, Message: ruleID + ": rule switched off"}, out)
			}
			delete(p.Conds, k)
		}
	}
	return p
}

func newPatientState(id string) *patientState {
	return &patientState{id: id, Signals: map[string]*signal{}, Seen: map[string]*seen{}, Conds: map[string]*condition{}, Devices: map[string]*deviceSeen{}}
}

// value is one number a reading carries: its own value or a panel part.
type value struct {
	code string
	v    float64
	unit string
}

func values(r *reading.Reading) []value {
	var vs []value
	if r.HasValue {
		vs = append(vs, value{r.Code, r.Value, r.Unit})
	}
	for _, c := range r.Components {
		vs = append(vs, value{c.Code, c.Value, c.Unit})
	}
	return vs
}

// historyKeep is how much history a code needs for the rules on it.
func historyKeep(rules []Rule, code string) time.Duration {
	var keep time.Duration
	for _, r := range rules {
		if r.Code != code && !(r.Kind == KindForecast && r.Code == "" && isGlucose(code)) {
			continue
		}
		switch r.Kind {
		case KindRate:
			keep = max(keep, 2*r.window(5*time.Minute))
		case KindChange:
			keep = max(keep, time.Duration(r.Window))
		case KindForecast:
			keep = max(keep, 15*time.Minute)
		}
	}
	return keep
}

const maxHistory = 4096

func (r Rule) window(def time.Duration) time.Duration {
	if r.Window > 0 {
		return time.Duration(r.Window)
	}
	return def
}

// Observe evaluates one reading. seq is its stream position, carried into
// the events so that a replay can recognise events already applied.
// Readings of a signal older than the newest one seen are late: they are
// stored but do not move the rule state (it is kept in reading-time order).
func (e *Engine) Observe(r reading.Reading, seq uint64, out *Output) {
	if r.Patient == "" {
		return
	}
	p := e.patient(r.Patient, r.Time, out)
	for _, v := range values(&r) {
		k := r.Device + "|" + v.code
		s := p.Seen[k]
		if s == nil {
			s = &seen{Device: r.Device, Code: v.code}
			p.Seen[k] = s
		}
		if r.Received.After(s.Received) {
			s.Received = r.Received
		}
	}
	e.clockSkew(p, &r, seq, out)
	// A reading ends the silence of its signals at once, even a late one.
	for _, rule := range p.rules {
		if rule.Kind == KindNoData {
			for _, v := range values(&r) {
				if rule.Code == "" || rule.Code == v.code {
					e.transition(p, rule, r.Device+"/"+v.code, false, Event{Device: r.Device, Code: v.code, Time: r.Time, Seq: seq, Received: r.Received,
						Message: rule.label() + ": data again from " + r.Device}, out)
				}
			}
		}
	}
	news2Touched := false
	for _, v := range values(&r) {
		sig := p.Signals[v.code]
		if sig != nil && !r.Time.After(sig.Last.T) {
			continue // late or duplicate
		}
		if sig == nil {
			sig = &signal{}
			p.Signals[v.code] = sig
		}
		sig.Last = point{r.Time, v.v}
		sig.Device = r.Device
		if keep := historyKeep(p.rules, v.code); keep > 0 {
			sig.History = append(sig.History, sig.Last)
			cut := 0
			for cut < len(sig.History) && r.Time.Sub(sig.History[cut].T) > keep {
				cut++
			}
			if len(sig.History)-cut > maxHistory {
				cut = len(sig.History) - maxHistory
			}
			sig.History = append(sig.History[:0], sig.History[cut:]...)
		} else {
			sig.History = nil
		}
		base := Event{Device: r.Device, Code: v.code, Value: v.v, Unit: v.unit, Time: r.Time, Seq: seq, Received: r.Received}
		for _, rule := range p.rules {
			if rule.Code != v.code && !(rule.Kind == KindForecast && rule.Code == "" && isGlucose(v.code)) {
				continue
			}
			switch rule.Kind {
			case KindThreshold:
				e.threshold(p, rule, v.v, base, out)
			case KindEvent:
				if compare(v.v, rule.Op, rule.Value) {
					ev := base
					ev.Message = fmt.Sprintf("%s (%s)", rule.label(), r.Device)
					e.transition(p, rule, "", true, ev, out)
					e.transition(p, rule, "", false, ev, out) // an event is over at once; latching keeps the alarm
				}
			case KindRate:
				e.rate(p, rule, sig, base, out)
			case KindChange:
				e.change(p, rule, sig, base, out)
			case KindForecast:
				e.forecast(p, rule, sig, base, out)
			}
		}
		if isNEWS2Input(v.code) {
			news2Touched = true
		}
	}
	if news2Touched {
		for _, rule := range p.rules {
			if rule.Kind == KindNEWS2 {
				e.news2(p, rule, r, seq, out)
			}
		}
	}
}

// Tick evaluates the rules that depend on the passage of time (no data).
// now is wall-clock time: silence is measured in receive time, so a device
// with a wrong clock is still noticed when it stops sending.
func (e *Engine) Tick(now time.Time, out *Output) {
	ids := make([]string, 0, len(e.patients))
	for id := range e.patients {
		ids = append(ids, id)
	}
	sort.Strings(ids) // deterministic event order
	for _, id := range ids {
		p := e.patient(id, now, out)
		for _, rule := range p.rules {
			if rule.Kind != KindNoData {
				continue
			}
			keys := make([]string, 0, len(p.Seen))
			for k := range p.Seen {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				s := p.Seen[k]
				if rule.Code != "" && rule.Code != s.Code {
					continue
				}
				silent := now.Sub(s.Received)
				if silent > time.Duration(rule.Window) {
					e.transition(p, rule, s.Device+"/"+s.Code, true, Event{Patient: id, Device: s.Device, Code: s.Code, Time: now,
						Message: fmt.Sprintf("%s: nothing from %s for %s", rule.label(), s.Device, silent.Round(time.Second))}, out)
				}
			}
		}
	}
}

func (r Rule) label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.ID
}

// transition moves a condition and emits Start/Clear on edges.
func (e *Engine) transition(p *patientState, rule Rule, subject string, active bool, ev Event, out *Output) {
	ev.Patient = p.id
	key := rule.ID + "|" + subject
	c := p.Conds[key]
	if c == nil {
		if !active {
			return
		}
		c = &condition{}
		p.Conds[key] = c
	}
	switch {
	case active && !c.Firing:
		c.Firing, c.Pending, c.Priority = true, false, ev.Priority
		if c.Priority == "" {
			c.Priority = rule.Priority
		}
		e.emit(rule, subject, Start, ev, out)
	case !active && c.Firing:
		e.emit(rule, subject, Clear, ev, out)
		delete(p.Conds, key)
	case !active:
		delete(p.Conds, key)
	}
}

func (e *Engine) emit(rule Rule, subject string, t EventType, ev Event, out *Output) {
	ev.Type = t
	ev.Rule = rule.ID
	ev.Subject = subject
	ev.Name = rule.label()
	ev.Kind = rule.Kind
	ev.Category = rule.CategoryOf()
	if ev.Priority == "" {
		ev.Priority = rule.Priority
	}
	ev.Latching = rule.latchingAt(ev.Priority)
	out.Events = append(out.Events, ev)
}

// pending implements "true for at least For": it returns whether the
// condition should now be firing.
func pending(c *condition, cond bool, t time.Time, hold time.Duration) bool {
	if !cond {
		c.Pending = false
		return false
	}
	if !c.Pending {
		c.Pending, c.Onset = true, t
	}
	return t.Sub(c.Onset) >= hold
}

func (e *Engine) cond(p *patientState, rule Rule) *condition {
	key := rule.ID + "|"
	c := p.Conds[key]
	if c == nil {
		c = &condition{}
		p.Conds[key] = c
	}
	return c
}

func (e *Engine) threshold(p *patientState, rule Rule, v float64, ev Event, out *Output) {
	c := e.cond(p, rule)
	if c.Firing {
		if !compare(v, rule.Op, rule.clearValue()) {
			ev.Message = fmt.Sprintf("%s: %s %s, back past %s", rule.label(), fmtValue(v), unitOf(ev.Code), fmtValue(rule.clearValue()))
			e.transition(p, rule, "", false, ev, out)
		}
		return
	}
	if pending(c, compare(v, rule.Op, rule.Value), ev.Time, time.Duration(rule.For)) {
		ev.Message = fmt.Sprintf("%s: %s %s %s %s", rule.label(), fmtValue(v), unitOf(ev.Code), rule.Op, fmtValue(rule.Value))
		if rule.For > 0 {
			ev.Message += " for " + time.Duration(rule.For).String()
		}
		e.transition(p, rule, "", true, ev, out)
	} else if !c.Pending {
		delete(p.Conds, rule.ID+"|")
	}
}

// rate compares the change per minute against the reading nearest to
// Window before the latest, within half a window either way; with no such
// reading there is no rate and the state is left as it is.
func (e *Engine) rate(p *patientState, rule Rule, sig *signal, ev Event, out *Output) {
	w := rule.window(5 * time.Minute)
	prev, ok := nearest(sig.History, ev.Time.Add(-w), w/2)
	if !ok {
		return
	}
	perMin := (ev.Value - prev.V) / ev.Time.Sub(prev.T).Minutes()
	c := e.cond(p, rule)
	if c.Firing {
		if !compare(perMin, rule.Op, rule.clearValue()) {
			ev.Message = fmt.Sprintf("%s: now %s %s/min", rule.label(), fmtValue(round1(perMin)), unitOf(ev.Code))
			e.transition(p, rule, "", false, ev, out)
		}
		return
	}
	if pending(c, compare(perMin, rule.Op, rule.Value), ev.Time, time.Duration(rule.For)) {
		ev.Message = fmt.Sprintf("%s: %s %s/min over %s (now %s %s)", rule.label(), fmtValue(round1(perMin)), unitOf(ev.Code), ev.Time.Sub(prev.T).Round(time.Second), fmtValue(ev.Value), unitOf(ev.Code))
		e.transition(p, rule, "", true, ev, out)
	} else if !c.Pending {
		delete(p.Conds, rule.ID+"|")
	}
}

// change compares the latest value with the lowest (for a rise) or highest
// (for a fall) value of the window before it.
func (e *Engine) change(p *patientState, rule Rule, sig *signal, ev Event, out *Output) {
	from := ev.Time.Add(-time.Duration(rule.Window))
	ref, found := 0.0, false
	for _, pt := range sig.History[:len(sig.History)-1] {
		if pt.T.Before(from) {
			continue
		}
		if !found || (rule.Value > 0 && pt.V < ref) || (rule.Value < 0 && pt.V > ref) {
			ref, found = pt.V, true
		}
	}
	if !found {
		return
	}
	delta := ev.Value - ref
	c := e.cond(p, rule)
	if c.Firing {
		if !compare(delta, rule.Op, rule.clearValue()) {
			ev.Message = fmt.Sprintf("%s: change now %s %s", rule.label(), fmtValue(round1(delta)), unitOf(ev.Code))
			e.transition(p, rule, "", false, ev, out)
		}
		return
	}
	if pending(c, compare(delta, rule.Op, rule.Value), ev.Time, time.Duration(rule.For)) {
		ev.Message = fmt.Sprintf("%s: %+g %s within %s (now %s %s)", rule.label(), round1(delta), unitOf(ev.Code), time.Duration(rule.Window), fmtValue(ev.Value), unitOf(ev.Code))
		e.transition(p, rule, "", true, ev, out)
	} else if !c.Pending {
		delete(p.Conds, rule.ID+"|")
	}
}

func (e *Engine) clockSkew(p *patientState, r *reading.Reading, seq uint64, out *Output) {
	if r.Received.IsZero() || r.Device == "" {
		return
	}
	skew := r.Time.Sub(r.Received)
	d := p.Devices[r.Device]
	if d == nil {
		d = &deviceSeen{}
		p.Devices[r.Device] = d
	}
	d.Skew = skew
	for _, rule := range p.rules {
		if rule.Kind != KindClockSkew {
			continue
		}
		tol := time.Duration(rule.Window)
		ev := Event{Device: r.Device, Time: r.Time, Seq: seq, Received: r.Received, Value: skew.Seconds(), Unit: "s"}
		switch {
		case skew > tol:
			ev.Message = fmt.Sprintf("%s: %s is %s ahead", rule.label(), r.Device, skew.Round(time.Second))
			e.transition(p, rule, r.Device, true, ev, out)
		case skew < tol/4: // hysteresis: well back within tolerance
			ev.Message = fmt.Sprintf("%s: %s back in time", rule.label(), r.Device)
			e.transition(p, rule, r.Device, false, ev, out)
		}
	}
}

// nearest finds the history point closest to t within tol.
func nearest(h []point, t time.Time, tol time.Duration) (point, bool) {
	best, found := point{}, false
	var bestD time.Duration
	for _, pt := range h {
		d := pt.T.Sub(t)
		if d < 0 {
			d = -d
		}
		if d <= tol && (!found || d < bestD) {
			best, bestD, found = pt, d, true
		}
	}
	return best, found
}

func unitOf(code string) string {
	if c, ok := codes.ByLOINC(code); ok {
		switch c.Unit {
		case "Cel":
			return "°C"
		case "mm[Hg]":
			return "mmHg"
		case "{score}", "{flag}":
			return ""
		}
		return c.Unit
	}
	return ""
}

func fmtValue(v float64) string { return strings.TrimSuffix(fmt.Sprintf("%g", v), ".0") }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// Snapshot serialises the condition state of every patient; Restore loads
// it. Rules are not part of it: they are reloaded.
func (e *Engine) Snapshot() ([]byte, error) { return json.Marshal(e.patients) }

// Restore replaces the engine state with a snapshot. Entries a damaged
// snapshot leaves empty (null) are dropped rather than trusted.
func (e *Engine) Restore(b []byte) error {
	ps := map[string]*patientState{}
	if err := json.Unmarshal(b, &ps); err != nil {
		return fmt.Errorf("rules: restore snapshot: %w", err)
	}
	out := make(map[string]*patientState, len(ps))
	for id, p := range ps {
		if p == nil {
			continue
		}
		fresh := newPatientState(id)
		for k, v := range p.Signals {
			if v != nil {
				fresh.Signals[k] = v
			}
		}
		for k, v := range p.Seen {
			if v != nil {
				fresh.Seen[k] = v
			}
		}
		for k, v := range p.Conds {
			if v != nil {
				fresh.Conds[k] = v
			}
		}
		for k, v := range p.Devices {
			if v != nil {
				fresh.Devices[k] = v
			}
		}
		fresh.LastScore = p.LastScore
		out[id] = fresh
	}
	e.patients = out
	return nil
}

// Patients is the number of patients with state (metrics).
func (e *Engine) Patients() int { return len(e.patients) }
