package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/fhir"
)

// VerifyAudit opens the node's store (as `tend serve` would, without
// starting anything) and walks its audit chain.
func VerifyAudit(ctx context.Context, cfg Config) (audit.Result, error) {
	cfg = New(cfg).cfg
	st, err := openStore(ctx, cfg)
	if err != nil {
		return audit.Result{}, err
	}
	res, err := audit.Verify(ctx, st)
	return res, errors.Join(err, st.Close())
}

// auditing records every PHI request the root handler serves (package
// audit); the log is the node's one writer to its store's audit chain.
func (n *Node) auditing(root http.Handler) http.Handler {
	n.auditLog = audit.New(n.store, n.cfg.Now)
	mw := &audit.Middleware{Log: n.auditLog, Classify: audit.Classify, Logger: n.cfg.Logger,
		Purpose: audit.BreakGlassPurpose(n.store, n.cfg.Now)} // break-glass access is flagged BTG
	if n.alarms != nil && n.alarms.db != nil {
		db := n.alarms.db
		mw.AlarmPatient = func(ctx context.Context, id string) (string, error) {
			a, err := db.Alarm(ctx, id)
			if err != nil {
				return "", fmt.Errorf("load alarm: %w", err)
			}
			return a.Patient, nil
		}
	}
	return mw.Wrap(root)
}

// AuditLog is the node's audit trail writer (nil until Start has built
// the HTTP handlers), for handlers and tests that record or read it.
func (n *Node) AuditLog() *audit.Log { return n.auditLog }

// auditEvents serves the trail as FHIR AuditEvent.
func (n *Node) auditEvents() http.Handler {
	return fhir.NewAuditEventHandler(fhir.AuditEventConfig{Store: n.store, Now: n.cfg.Now, Logger: n.cfg.Logger})
}
