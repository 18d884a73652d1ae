package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/store"
)

// The OAuth token endpoint records the client as the agent: the one that
// got a token, and the one a refused request claimed to be.
func TestTokenEndpointAuditsTheClient(t *testing.T) {
	f := newSMARTFixture(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := New(Config{Store: f.st, Ready: func() error { return nil }, Now: f.clock.Now, Logger: log})
	f.srv.Close()
	f.srv = httptest.NewServer((&audit.Middleware{Log: audit.New(f.st, f.clock.Now), Classify: audit.Classify, Logger: log}).Wrap(h))
	t.Cleanup(f.srv.Close)

	if resp, m := f.tokenRequest(t, grantForm(f.assertion(t, f.rsa, f.claims(f.rsa, "audit-1")), "system/Patient.rs")); resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, m)
	}
	forged := f.claims(f.rsa, "audit-2")
	if resp, _ := f.tokenRequest(t, grantForm(f.assertion(t, f.ec, forged), "system/Patient.rs")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an assertion signed with another client's key got %d", resp.StatusCode)
	}
	es, err := f.st.AuditEntries(t.Context(), store.AuditQuery{Subject: f.rsa.id})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 {
		t.Fatalf("records naming the client: %+v, want the grant and the refusal", es)
	}
	if e := es[0]; e.Action != "login" || e.Status != 200 || e.Role != string(store.RoleIntegration) || e.Entity != "/auth/token" {
		t.Errorf("grant recorded as %+v", e)
	}
	if e := es[1]; e.Action != "login" || e.Status != 401 || e.Outcome != audit.MinorFailure || e.Role != "" {
		t.Errorf("refusal recorded as %+v", e)
	}
}

// Signing out through the API is recorded, with who signed out.
func TestLogoutIsAudited(t *testing.T) {
	f := newSMARTFixture(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := New(Config{Store: f.st, Ready: func() error { return nil }, Now: f.clock.Now, Logger: log})
	f.srv.Close()
	f.srv = httptest.NewServer((&audit.Middleware{Log: audit.New(f.st, f.clock.Now), Classify: audit.Classify, Logger: log}).Wrap(h))
	t.Cleanup(f.srv.Close)
	if resp, m := f.do(t, "POST", "/api/v1/auth/logout", adminTok, "", ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %v", resp.StatusCode, m)
	}
	es, err := f.st.AuditEntries(t.Context(), store.AuditQuery{Subject: "admin"})
	if err != nil || len(es) != 1 || es[0].Action != "logout" || es[0].Status != 204 {
		t.Fatalf("records %+v %v: want one logout", es, err)
	}
}
