package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/fhir"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

// TestExportSMARTScopes: a Bulk Data kick-off needs search permission on
// every type it exports (all of them without _type); the status URL of
// an admitted job needs nothing more.
func TestExportSMARTScopes(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateOrg(ctx, store.Organisation{ID: "north", Name: "North"}); err != nil {
		t.Fatal(err)
	}
	tokens := map[string][]string{
		"tok-patient-only-xxxxxxxxxxxxxxxxxxxxxxxx": {"system/Patient.rs"},
		"tok-patient-read-xxxxxxxxxxxxxxxxxxxxxxxx": {"system/Patient.r"},
		"tok-everything-xxxxxxxxxxxxxxxxxxxxxxxxxx": {"system/*.rs"},
	}
	for tok, scopes := range tokens {
		if err := st.PutToken(ctx, store.Token{Hash: auth.HashSecret(tok), Role: store.RoleIntegration, Subject: "client-" + tok[4:12], Org: "north",
			Scopes: scopes, Client: "client-" + tok[4:12], Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol := access.New(st, clock)
	exp := fhir.NewExporter(fhir.ExportConfig{Store: st, Access: pol, Now: clock, Logger: log})
	fh := fhir.NewHandler(fhir.Config{Store: st, Now: clock, Logger: log, Access: pol, Export: exp})
	srv := httptest.NewServer(New(Config{Store: st, FHIR: fh, Ready: func() error { return nil }, Now: clock, Logger: log}))
	t.Cleanup(srv.Close)

	do := func(path, tok string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Prefer", "respond-async")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		path, tok string
		want      int
	}{
		{"/fhir/$export", "tok-patient-only-xxxxxxxxxxxxxxxxxxxxxxxx", http.StatusForbidden},
		{"/fhir/Patient/$export", "tok-patient-only-xxxxxxxxxxxxxxxxxxxxxxxx", http.StatusForbidden},
		{"/fhir/$export?_type=Patient,Observation", "tok-patient-only-xxxxxxxxxxxxxxxxxxxxxxxx", http.StatusForbidden},
		{"/fhir/$export?_type=Patient", "tok-patient-read-xxxxxxxxxxxxxxxxxxxxxxxx", http.StatusForbidden}, // read is not search
		{"/fhir/$export?_type=Patient", "tok-patient-only-xxxxxxxxxxxxxxxxxxxxxxxx", http.StatusAccepted},
		{"/fhir/$export", "tok-everything-xxxxxxxxxxxxxxxxxxxxxxxxxx", http.StatusAccepted},
	} {
		resp := do(tc.path, tc.tok)
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s with %v: %d, want %d", tc.path, tokens[tc.tok], resp.StatusCode, tc.want)
		}
		if resp.StatusCode == http.StatusAccepted {
			loc := resp.Header.Get("Content-Location")
			if poll := do(strings.TrimPrefix(loc, srv.URL), tc.tok); poll.StatusCode != http.StatusAccepted {
				t.Errorf("poll %s: %d, want 202", loc, poll.StatusCode)
			}
		}
	}
}
