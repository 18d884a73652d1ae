package alarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/rules"
)

// Document kinds and scopes.
const (
	DocRules      = "rules"
	DocEscalation = "escalation"
	scopeSetting  = "setting:"
	scopePatient  = "patient:"
)

// SettingScope and PatientScope name document scopes.
func SettingScope(s string) string  { return scopeSetting + s }
func PatientScope(id string) string { return scopePatient + id }

// Profiles resolves the effective rules and escalation of each patient from
// the built-in defaults and the stored documents, caching them until any
// document changes (checked at most every refresh interval).
type Profiles struct {
	Store Store
	Now   func() time.Time

	mu      sync.Mutex
	version int64
	checked time.Time
	rules   map[string][]rules.Rule
	esc     map[string]Escalation
}

const profileRefresh = time.Second

// Refresh reloads when documents changed; it reports whether they did.
func (p *Profiles) Refresh(ctx context.Context) (bool, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	p.mu.Lock()
	if p.rules != nil && now().Sub(p.checked) < profileRefresh {
		p.mu.Unlock()
		return false, nil
	}
	p.mu.Unlock()
	v, err := p.Store.DocsVersion(ctx)
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.checked = now()
	if p.rules != nil && v == p.version {
		return false, nil
	}
	p.version = v
	p.rules = map[string][]rules.Rule{}
	p.esc = map[string]Escalation{}
	return true, nil
}

// Invalidate forgets cached profiles at once (after a local change).
func (p *Profiles) Invalidate() {
	p.mu.Lock()
	p.rules, p.esc = nil, nil
	p.mu.Unlock()
}

func (p *Profiles) cached(patient string) ([]rules.Rule, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.rules[patient]
	return r, ok
}

// Rules returns a patient's effective rules.
func (p *Profiles) Rules(ctx context.Context, patient string) ([]rules.Rule, error) {
	if _, err := p.Refresh(ctx); err != nil {
		return nil, err
	}
	if r, ok := p.cached(patient); ok {
		return r, nil
	}
	pat, err := p.PatientRules(ctx, patient)
	if err != nil {
		return nil, err
	}
	set, err := p.SettingRules(ctx, settingOr(pat.Setting))
	if err != nil {
		return nil, err
	}
	eff, err := rules.Effective(set, pat)
	if err != nil {
		return nil, fmt.Errorf("patient %s: %w", patient, err)
	}
	p.mu.Lock()
	if p.rules != nil {
		p.rules[patient] = eff
	}
	p.mu.Unlock()
	return eff, nil
}

func settingOr(s string) string {
	if s == "" {
		return rules.SettingWard
	}
	return s
}

// SettingRules is a care setting's rule set: built-in defaults with the
// stored setting document laid over them (mandatory rules stay).
func (p *Profiles) SettingRules(ctx context.Context, setting string) (rules.Profile, error) {
	def, ok := rules.Defaults(setting)
	if !ok {
		return rules.Profile{}, fmt.Errorf("unknown care setting %q", setting)
	}
	var stored rules.Profile
	if err := p.doc(ctx, SettingScope(setting), DocRules, &stored); err != nil {
		return rules.Profile{}, err
	}
	eff, err := rules.Effective(def, stored)
	if err != nil {
		return rules.Profile{}, err
	}
	return rules.Profile{Rules: eff}, nil
}

// PatientRules is a patient's stored override document (empty if none).
func (p *Profiles) PatientRules(ctx context.Context, patient string) (rules.Profile, error) {
	var pr rules.Profile
	err := p.doc(ctx, PatientScope(patient), DocRules, &pr)
	return pr, err
}

// Escalation returns a patient's effective escalation ("" = system alarms:
// the ward setting's).
func (p *Profiles) Escalation(ctx context.Context, patient string) (Escalation, error) {
	if _, err := p.Refresh(ctx); err != nil {
		return Escalation{}, err
	}
	p.mu.Lock()
	e, ok := p.esc[patient]
	p.mu.Unlock()
	if ok {
		return e, nil
	}
	setting := rules.SettingWard
	var pe Escalation
	if patient != "" {
		pr, err := p.PatientRules(ctx, patient)
		if err != nil {
			return Escalation{}, err
		}
		setting = settingOr(pr.Setting)
		if err := p.doc(ctx, PatientScope(patient), DocEscalation, &pe); err != nil {
			return Escalation{}, err
		}
	}
	var se Escalation
	if err := p.doc(ctx, SettingScope(setting), DocEscalation, &se); err != nil {
		return Escalation{}, err
	}
	e = Merge(se, pe)
	p.mu.Lock()
	if p.esc != nil {
		p.esc[patient] = e
	}
	p.mu.Unlock()
	return e, nil
}

func (p *Profiles) doc(ctx context.Context, scope, kind string, into any) error {
	d, err := p.Store.Doc(ctx, scope, kind)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(d.Body, into); err != nil {
		return fmt.Errorf("stored %s document of %s: %w", kind, scope, err)
	}
	return nil
}

// ValidateRules checks a rules document for a scope before it is stored:
// the rules themselves, and (for a patient) that it merges onto its care
// setting (mandatory rules untouched).
func (p *Profiles) ValidateRules(ctx context.Context, scope string, pr *rules.Profile) error {
	if err := pr.Validate(); err != nil {
		return err
	}
	if setting, ok := strings.CutPrefix(scope, scopeSetting); ok {
		if pr.Setting != "" {
			return errors.New("a care setting's document cannot name another setting")
		}
		def, ok := rules.Defaults(setting)
		if !ok {
			return fmt.Errorf("unknown care setting %q", setting)
		}
		_, err := rules.Effective(def, *pr)
		return err
	}
	set, err := p.SettingRules(ctx, settingOr(pr.Setting))
	if err != nil {
		return err
	}
	_, err = rules.Effective(set, *pr)
	return err
}

// ValidateEscalation checks an escalation document for a scope: on its
// own for a setting, merged onto its setting's for a patient.
func (p *Profiles) ValidateEscalation(ctx context.Context, scope string, e Escalation) error {
	patient, ok := strings.CutPrefix(scope, scopePatient)
	if !ok {
		return e.Validate()
	}
	pr, err := p.PatientRules(ctx, patient)
	if err != nil {
		return err
	}
	var se Escalation
	if err := p.doc(ctx, SettingScope(settingOr(pr.Setting)), DocEscalation, &se); err != nil {
		return err
	}
	return Merge(se, e).Validate()
}
