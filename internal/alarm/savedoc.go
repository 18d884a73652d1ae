package alarm

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/rules"
)

// InvalidDocError is a document refused by validation; nothing was stored.
type InvalidDocError struct {
	Kind string // DocRules or DocEscalation
	Err  error
}

func (e *InvalidDocError) Error() string { return "invalid " + e.Kind + " document: " + e.Err.Error() }
func (e *InvalidDocError) Unwrap() error { return e.Err }

// SaveRules validates a rules document for a scope (ValidateRules: the
// rules, and for a patient that mandatory rules of the setting stay
// untouched) and stores it as the scope's next version, with author and
// reason kept in its history. The cached profiles are dropped so the
// change applies at once. The API and the dashboard both save through
// here, so they cannot disagree on what is valid.
func (p *Profiles) SaveRules(ctx context.Context, scope string, pr *rules.Profile, author, reason string, at time.Time) (Doc, error) {
	if pr.Rules == nil {
		pr.Rules = []rules.Rule{}
	}
	// ValidateRules also rewrites code aliases to the codes themselves, so
	// what is stored is canonical.
	if err := p.ValidateRules(ctx, scope, pr); err != nil {
		return Doc{}, &InvalidDocError{Kind: DocRules, Err: err}
	}
	body, err := json.Marshal(pr)
	if err != nil {
		return Doc{}, fmt.Errorf("encode rules document: %w", err)
	}
	d := Doc{Scope: scope, Kind: DocRules, Body: body, Author: author, Reason: reason, At: at}
	if err := p.Store.PutDoc(ctx, &d); err != nil {
		return Doc{}, fmt.Errorf("store rules document: %w", err)
	}
	p.Invalidate()
	return d, nil
}
