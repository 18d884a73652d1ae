package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

// TestAlarmListScopedPages: a busy organisation's alarms (more than the
// 16,000 an organisation-wide listing used to read per page) are all newer
// than a quiet one's. Every caller's page is still full, newest first, and
// holds nothing of the other organisation.
func TestAlarmListScopedPages(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
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
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	const (
		quiet, busy       = "quiet", "busy"
		perPatient        = 120
		patients          = 10
		busyAlarms        = 17000
		quietTeamPatients = 3
	)
	tokens := map[string]string{}
	for _, org := range []string{quiet, busy} {
		must(st.CreateOrg(ctx, store.Organisation{ID: org, Name: org}))
		for i := range patients {
			id := fmt.Sprintf("%s-p%02d", org, i)
			must(st.CreatePatient(ctx, &store.Patient{ID: id, Org: org, Resource: []byte(`{"resourceType":"Patient"}`)}))
		}
		for _, role := range []store.Role{store.RoleAdmin, store.RoleNurse} {
			user := org + "-" + string(role)
			must(st.CreateUser(ctx, store.User{ID: user, Name: user, Role: role, Org: org, PasswordHash: "x"}))
			tok := "tok-" + user + "-xxxxxxxxxxxxxxxxxxxxxxxx"
			must(st.PutToken(ctx, store.Token{Hash: auth.HashSecret(tok), Role: role, Subject: user, Org: org}))
			tokens[user] = tok
		}
	}
	must(st.CreateCareTeam(ctx, store.CareTeam{ID: "ward", Org: quiet, Name: "Ward"}))
	must(st.SetCareTeamMember(ctx, "ward", quiet+"-nurse", true))
	for i := range quietTeamPatients {
		must(st.SetCareTeamPatient(ctx, "ward", fmt.Sprintf("%s-p%02d", quiet, i), true))
	}
	must(st.SetCareTeamPatient(ctx, "ward", busy+"-p00", true)) // another organisation's: the wall holds

	// The quiet organisation's alarms are the oldest; the busy one's fill
	// the newest 17,000 places.
	var all []alarm.Alarm
	must(db.Update(ctx, func(tx alarm.Tx) error {
		add := func(id, patient string, raised time.Time) error {
			a := alarm.Alarm{ID: id, Patient: patient, State: alarm.Active, Priority: rules.PriorityHigh, Kind: rules.CategoryClinical,
				Rule: "r-" + id, RuleKind: rules.KindThreshold, Name: "SpO2 low", Raised: raised, Updated: raised, Message: "low"}
			all = append(all, a)
			return tx.PutAlarm(&a)
		}
		for i := range patients * perPatient {
			if err := add(fmt.Sprintf("q%05d", i), fmt.Sprintf("%s-p%02d", quiet, i%patients), now.Add(-48*time.Hour+time.Duration(i)*time.Second)); err != nil {
				return err
			}
		}
		for i := range busyAlarms {
			if err := add(fmt.Sprintf("b%05d", i), fmt.Sprintf("%s-p%02d", busy, i%patients), now.Add(-24*time.Hour+time.Duration(i)*time.Second)); err != nil {
				return err
			}
		}
		return nil
	}))

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := alarm.NewService(alarm.Config{Store: db, Now: clock})
	srv := httptest.NewServer(New(Config{Store: st, Ready: func() error { return nil }, Now: clock, Logger: log, Alarms: svc, AlarmStore: db}))
	t.Cleanup(srv.Close)

	newest := func(keep func(patient string) bool, n int) []string {
		var out []string
		for i := len(all) - 1; i >= 0 && len(out) < n; i-- { // all is in raised order
			if keep(all[i].Patient) {
				out = append(out, all[i].ID)
			}
		}
		return out
	}
	inOrg := func(org string) func(string) bool {
		return func(p string) bool { return strings.HasPrefix(p, org+"-") }
	}
	team := func(p string) bool {
		return slices.Contains([]string{"quiet-p00", "quiet-p01", "quiet-p02"}, p)
	}
	for _, tc := range []struct {
		user  string
		limit int
		keep  func(string) bool
	}{
		{"quiet-admin", 1000, inOrg(quiet)},
		{"quiet-admin", 1, inOrg(quiet)},
		{"busy-admin", 1000, inOrg(busy)},
		{"quiet-nurse", 300, team}, // 360 alarms in the team
		{"quiet-nurse", 1000, team},
		{"busy-nurse", 100, func(string) bool { return false }}, // in no team
	} {
		t.Run(fmt.Sprintf("%s/limit=%d", tc.user, tc.limit), func(t *testing.T) {
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/v1/alarms?limit=%d", srv.URL, tc.limit), nil)
			req.Header.Set("Authorization", "Bearer "+tokens[tc.user])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Alarms []alarm.Alarm `json:"alarms"`
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range body.Alarms {
				if !tc.keep(a.Patient) {
					t.Fatalf("alarm %s of %s is not %s's to see", a.ID, a.Patient, tc.user)
				}
				got = append(got, a.ID)
			}
			want := newest(tc.keep, tc.limit)
			if !slices.Equal(got, want) {
				t.Errorf("got %d alarms (first %v), want %d (first %v)", len(got), got[:min(3, len(got))], len(want), want[:min(3, len(want))])
			}
		})
	}
}
