package audit_test

import (
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/api"
	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/store/sqlite"
	"github.com/tendhealth/tend/internal/web"
)

// allRoutes builds the API and the dashboard with every optional part
// switched on, as a node serves them, and returns their route patterns.
func allRoutes(t *testing.T) (apiRoutes, webRoutes []string) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := alarmdb.Open(filepath.Join(t.TempDir(), "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	profiles := &alarm.Profiles{Store: db}
	svc := alarm.NewService(alarm.Config{Store: db, Escalation: profiles.Escalation})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	stub := http.NotFoundHandler()
	a := api.New(api.Config{Store: st, FHIR: stub, Metrics: stub, AuditEvents: stub, Ready: func() error { return nil }, Logger: log,
		Alarms: svc, AlarmStore: db, Profiles: profiles, Live: &live.Hub{}})
	key := make([]byte, 32)
	rand.Read(key)
	w, err := web.New(web.Config{Store: st, Alarms: svc, AlarmStore: db, Profiles: profiles, Live: &live.Hub{}, SessionKey: key, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return a.Routes(), w.Routes()
}

// samplePath turns a route pattern into a request path: wildcards get
// sample values, a method-less pattern is asked with GET, and the
// catch-all "/" with a path nothing else serves.
func samplePath(pattern string) (method, path string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = http.MethodGet, pattern
	}
	switch path {
	case "/":
		return method, "/no-such-page"
	case "/fhir/":
		return method, "/fhir/Patient/p1"
	}
	path = strings.ReplaceAll(path, "{$}", "")
	for _, w := range []string{"{id}", "{member}", "{setting}", "{kind}", "{action}"} {
		path = strings.ReplaceAll(path, w, "x"+strings.Trim(w, "{}"))
	}
	if strings.HasSuffix(path, "/") && path != "/" {
		path += "x"
	}
	return method, path
}

// Every route the API and the dashboard register is either recorded in
// the audit trail or listed in audit.Unaudited with its reason, so a new
// route cannot be forgotten.
func TestEveryRouteIsClassified(t *testing.T) {
	apiRoutes, webRoutes := allRoutes(t)
	seen := map[string]bool{}
	for _, pattern := range append(apiRoutes, webRoutes...) {
		if seen[pattern] {
			continue
		}
		seen[pattern] = true
		t.Run(pattern, func(t *testing.T) {
			method, path := samplePath(pattern)
			r := httptest.NewRequest(method, path, nil)
			_, recorded := audit.Classify(r)
			reason, exempt := audit.Unaudited[pattern]
			switch {
			case !recorded && !exempt:
				t.Errorf("%s (%s %s) is neither audited by audit.Classify nor listed in audit.Unaudited", pattern, method, path)
			case recorded && exempt:
				t.Errorf("%s is audited but listed in audit.Unaudited (%s)", pattern, reason)
			}
		})
	}
	for pattern := range audit.Unaudited {
		if !seen[pattern] {
			t.Errorf("audit.Unaudited lists %q, which no handler registers", pattern)
		}
	}
}
