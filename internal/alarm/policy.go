package alarm

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/rules"
)

// Escalation says who hears about alarms: named policies, which policy
// handles each priority, and who is told when nobody could be told.
//
//	{"policies": {"ward-nurses": {"tiers": [
//	     {"after": "0s", "recipients": ["webhook:nurse-station"]},
//	     {"after": "2m", "recipients": ["email:charge@example.org"]},
//	     {"after": "5m", "recipients": ["policy:on-call"]}],
//	   "repeat": "5m"}, …},
//	 "priorities": {"high": "ward-nurses", "medium": "ward-nurses"},
//	 "supervisors": "on-call"}
//
// A patient's document overrides its care setting's per priority and may
// add or shadow policies (home patients: caregiver → family → clinic).
type Escalation struct {
	Policies    map[string]Policy         `json:"policies,omitempty"`
	Priorities  map[rules.Priority]string `json:"priorities,omitempty"`
	Supervisors string                    `json:"supervisors,omitempty"`
}

// Policy is a list of tiers: tier i is told After its delay from the raise
// while the alarm is still unacknowledged; after the last tier its
// recipients are told again every Repeat (0 means 5 minutes).
type Policy struct {
	Tiers  []Tier         `json:"tiers"`
	Repeat rules.Duration `json:"repeat,omitempty"`
}

// Tier is one step of a policy.
type Tier struct {
	After      rules.Duration `json:"after"`
	Recipients []string       `json:"recipients"`
}

const (
	defaultRepeat = 5 * time.Minute
	minRepeat     = 30 * time.Second
	maxTiers      = 10
	maxRecipients = 50
)

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks a document on its own; references to policies must
// resolve within it (merge a patient document onto its setting's first).
func (e Escalation) Validate() error {
	var errs []error
	names := make([]string, 0, len(e.Policies))
	for n := range e.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !namePattern.MatchString(n) {
			errs = append(errs, fmt.Errorf("policy name %q: use letters, digits, '.', '_' or '-'", clip(n)))
			continue
		}
		if err := e.Policies[n].validate(n); err != nil {
			errs = append(errs, err)
		}
	}
	for p, n := range e.Priorities {
		if p.Rank() == 0 {
			errs = append(errs, fmt.Errorf("priorities: %q is not high, medium or low", clip(string(p))))
		}
		if _, ok := e.Policies[n]; !ok {
			errs = append(errs, fmt.Errorf("priorities.%s: no policy named %q", p, clip(n)))
		}
	}
	if e.Supervisors != "" {
		if _, ok := e.Policies[e.Supervisors]; !ok {
			errs = append(errs, fmt.Errorf("supervisors: no policy named %q", clip(e.Supervisors)))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, n := range names {
		if _, err := e.expand(n, nil); err != nil {
			return err
		}
	}
	return nil
}

func (p Policy) validate(name string) error {
	if len(p.Tiers) == 0 || len(p.Tiers) > maxTiers {
		return fmt.Errorf("policy %s: needs 1 to %d tiers", name, maxTiers)
	}
	if p.Repeat != 0 && time.Duration(p.Repeat) < minRepeat {
		return fmt.Errorf("policy %s: repeat must be at least %s", name, minRepeat)
	}
	var last time.Duration
	for i, t := range p.Tiers {
		after := time.Duration(t.After)
		if after < 0 || (i > 0 && after <= last) || (i == 0 && after != 0) {
			return fmt.Errorf("policy %s: tier %d: 'after' must start at 0s and increase from tier to tier", name, i+1)
		}
		last = after
		if len(t.Recipients) == 0 || len(t.Recipients) > maxRecipients {
			return fmt.Errorf("policy %s: tier %d needs 1 to %d recipients", name, i+1, maxRecipients)
		}
		for _, r := range t.Recipients {
			if err := checkRecipient(r); err != nil {
				return fmt.Errorf("policy %s: tier %d: %w", name, i+1, err)
			}
		}
	}
	return nil
}

// Recipient kinds.
const (
	RecipientWebhook = "webhook"
	RecipientEmail   = "email"
	RecipientDevice  = "device"
	RecipientPolicy  = "policy"
	// RecipientSubscription deliveries are FHIR subscription notifications
	// riding the outbox: they have no alarm episode, so the dispatcher only
	// records their attempts.
	RecipientSubscription = "subscription"
)

func checkRecipient(r string) error {
	kind, addr, ok := strings.Cut(r, ":")
	if !ok || addr == "" {
		return fmt.Errorf("recipient %q: use webhook:ID, email:ADDRESS, device:ID or policy:NAME", clip(r))
	}
	switch kind {
	case RecipientWebhook, RecipientDevice, RecipientPolicy:
		if !namePattern.MatchString(addr) {
			return fmt.Errorf("recipient %q: bad id", clip(r))
		}
	case RecipientEmail:
		a, err := mail.ParseAddress(addr)
		if err != nil || a.Address != addr || strings.ContainsAny(addr, "\r\n") {
			return fmt.Errorf("recipient %q: not a plain e-mail address", clip(r))
		}
	default:
		return fmt.Errorf("recipient %q: unknown kind %q (webhook, email, device, policy)", clip(r), clip(kind))
	}
	return nil
}

// expand returns the concrete recipients of every tier of a policy, with
// policy:NAME replaced by the first tier of that policy (recursively).
// A reference cycle is an error.
func (e Escalation) expand(name string, path []string) ([][]string, error) {
	for _, p := range path {
		if p == name {
			return nil, fmt.Errorf("policy references form a cycle: %s → %s", strings.Join(path, " → "), name)
		}
	}
	pol, ok := e.Policies[name]
	if !ok {
		return nil, fmt.Errorf("no policy named %q", clip(name))
	}
	path = append(path, name)
	out := make([][]string, len(pol.Tiers))
	for i, t := range pol.Tiers {
		seen := map[string]bool{}
		for _, r := range t.Recipients {
			if ref, ok := strings.CutPrefix(r, RecipientPolicy+":"); ok {
				sub, err := e.expand(ref, path)
				if err != nil {
					return nil, err
				}
				for _, s := range sub[0] {
					if !seen[s] {
						seen[s] = true
						out[i] = append(out[i], s)
					}
				}
				continue
			}
			if !seen[r] {
				seen[r] = true
				out[i] = append(out[i], r)
			}
		}
	}
	return out, nil
}

// Merge lays a patient's document over its care setting's.
func Merge(setting, patient Escalation) Escalation {
	out := Escalation{Policies: map[string]Policy{}, Priorities: map[rules.Priority]string{}, Supervisors: setting.Supervisors}
	for n, p := range setting.Policies {
		out.Policies[n] = p
	}
	for n, p := range patient.Policies {
		out.Policies[n] = p
	}
	for k, v := range setting.Priorities {
		out.Priorities[k] = v
	}
	for k, v := range patient.Priorities {
		out.Priorities[k] = v
	}
	if patient.Supervisors != "" {
		out.Supervisors = patient.Supervisors
	}
	return out
}

// plan is a resolved policy: concrete recipients per tier, delays, repeat.
type plan struct {
	tiers  [][]string
	after  []time.Duration
	repeat time.Duration
}

// planFor resolves the policy for a priority; ok is false when none is
// configured.
func (e Escalation) planFor(p rules.Priority) (plan, bool) {
	name, ok := e.Priorities[p]
	if !ok {
		return plan{}, false
	}
	return e.plan(name)
}

func (e Escalation) plan(name string) (plan, bool) {
	tiers, err := e.expand(name, nil)
	if err != nil {
		return plan{}, false
	}
	pol := e.Policies[name]
	pl := plan{tiers: tiers, repeat: time.Duration(pol.Repeat)}
	if pl.repeat == 0 {
		pl.repeat = defaultRepeat
	}
	for _, t := range pol.Tiers {
		pl.after = append(pl.after, time.Duration(t.After))
	}
	return pl, true
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
