package alarm_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/rules"
)

// threeTiers: the ward's nurse station, then the charge nurse after 5
// minutes, then the on-call doctor after 10; medium alarms have no policy.
const threeTiers = `{"policies":{"ward":{"tiers":[
  {"after":"0s","recipients":["webhook:station"]},
  {"after":"5m","recipients":["email:charge@example.org"]},
  {"after":"10m","recipients":["webhook:oncall"]}],"repeat":"5m"}},
 "priorities":{"high":"ward"}}`

type escFixture struct {
	ctx     context.Context
	now     time.Time
	db      *alarmdb.DB
	svc     *alarm.Service
	changes []string // OnChange actions
}

func newEscFixture(t *testing.T) *escFixture {
	t.Helper()
	f := &escFixture{ctx: context.Background(), now: epoch}
	db, err := alarmdb.Open(filepath.Join(t.TempDir(), "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	clock := func() time.Time { return f.now }
	if err := db.PutDoc(f.ctx, &alarm.Doc{Scope: alarm.SettingScope(rules.SettingWard), Kind: alarm.DocEscalation, Body: []byte(threeTiers), Author: "t", At: epoch}); err != nil {
		t.Fatal(err)
	}
	profiles := &alarm.Profiles{Store: db, Now: clock}
	f.svc = alarm.NewService(alarm.Config{Store: db, Escalation: profiles.Escalation, Now: clock,
		OnChange: func(a alarm.Alarm, action string) { f.changes = append(f.changes, action) }})
	return f
}

func (f *escFixture) raise(t *testing.T, rule string, prio rules.Priority) alarm.Alarm {
	t.Helper()
	ev := rules.Event{Type: rules.Start, Patient: "p1", Rule: rule, Name: rule, Kind: rules.KindThreshold, Category: rules.CategoryClinical,
		Priority: prio, Time: f.now, Message: rule}
	if err := f.svc.Apply(f.ctx, alarm.Checkpoint{}, []rules.Event{ev}); err != nil {
		t.Fatal(err)
	}
	as, err := f.db.Alarms(f.ctx, alarm.Filter{Patient: "p1", States: []alarm.State{alarm.Active}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Rule == rule {
			return a
		}
	}
	t.Fatalf("no active %s alarm", rule)
	return alarm.Alarm{}
}

// told lists "event recipient" of an alarm's outbox rows, oldest first.
func (f *escFixture) told(t *testing.T, id string) []string {
	t.Helper()
	ds, err := f.db.Deliveries(f.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ds, func(a, b alarm.Delivery) int { return a.Created.Compare(b.Created) })
	var out []string
	for _, d := range ds {
		out = append(out, d.Event+" "+d.Recipient)
	}
	return out
}

func (f *escFixture) last(t *testing.T, id string) alarm.Change {
	t.Helper()
	h, err := f.db.History(f.ctx, id)
	if err != nil || len(h) == 0 {
		t.Fatalf("history of %s: %v %v", id, h, err)
	}
	return h[len(h)-1]
}

func TestEscalateNowTellsTheNextTierOnce(t *testing.T) {
	f := newEscFixture(t)
	a := f.raise(t, "spo2-critical", rules.PriorityHigh)
	f.now = epoch.Add(time.Minute)
	got, err := f.svc.EscalateNow(f.ctx, a.ID, alarm.Action{By: "nina", Reason: "saturation still falling"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Tier != 1 || got.State != alarm.Active {
		t.Errorf("after escalating: tier %d state %s, want tier 1 (the second) and still active", got.Tier, got.State)
	}
	// The next timed step is the third tier at its usual time from the raise.
	if want := epoch.Add(10 * time.Minute); !got.NextEscalation.Equal(want) {
		t.Errorf("next escalation %s, want %s", got.NextEscalation, want)
	}
	want := []string{"alarm.raised webhook:station", "alarm.escalated email:charge@example.org"}
	if told := f.told(t, a.ID); !slices.Equal(told, want) {
		t.Errorf("outbox %q, want %q", told, want)
	}
	c := f.last(t, a.ID)
	if c.Action != "escalated" || c.By != "nina" || c.Reason != "saturation still falling" || c.Detail != "tier 2" || !c.At.Equal(f.now) {
		t.Errorf("history entry %+v", c)
	}
	if f.changes[len(f.changes)-1] != "escalated" {
		t.Errorf("live changes %q: the escalation was not announced", f.changes)
	}

	// The tier-2 timer (5 minutes) must not tell the charge nurse again.
	f.now = epoch.Add(6 * time.Minute)
	if n, err := f.svc.Escalate(f.ctx); err != nil || n != 0 {
		t.Fatalf("timed escalation before the third tier is due: moved %d, %v", n, err)
	}
	if told := f.told(t, a.ID); len(told) != 2 {
		t.Errorf("a timer re-sent the manual escalation: %q", told)
	}

	// Third (last) tier by hand; then there is nowhere further to go.
	if _, err := f.svc.EscalateNow(f.ctx, a.ID, alarm.Action{By: "nina", Reason: "no answer"}); err != nil {
		t.Fatal(err)
	}
	before := f.told(t, a.ID)
	_, err = f.svc.EscalateNow(f.ctx, a.ID, alarm.Action{By: "nina", Reason: "again"})
	if !errors.Is(err, alarm.ErrState) || !strings.Contains(err.Error(), "last escalation tier") {
		t.Fatalf("escalating past the last tier: %v, want ErrState naming the last tier", err)
	}
	if told := f.told(t, a.ID); !slices.Equal(told, before) || before[len(before)-1] != "alarm.escalated webhook:oncall" {
		t.Errorf("outbox %q after the refused escalation, want %q ending with the on-call", told, before)
	}
	if c := f.last(t, a.ID); c.Reason != "no answer" {
		t.Errorf("the refused escalation was recorded: %+v", c)
	}
}

func TestEscalateNowStates(t *testing.T) {
	tests := []struct {
		name    string
		prio    rules.Priority
		prepare func(t *testing.T, f *escFixture, id string)
		reason  string
		err     string // "" = allowed
		state   alarm.State
	}{
		{"active", rules.PriorityHigh, nil, "needs a doctor", "", alarm.Active},
		{"acknowledged stays acknowledged", rules.PriorityHigh, func(t *testing.T, f *escFixture, id string) {
			if _, err := f.svc.Acknowledge(f.ctx, id, alarm.Action{By: "nina"}); err != nil {
				t.Fatal(err)
			}
		}, "needs a doctor", "", alarm.Acknowledged},
		{"snoozed wakes up", rules.PriorityHigh, func(t *testing.T, f *escFixture, id string) {
			if _, err := f.svc.Snooze(f.ctx, id, alarm.Action{By: "nina", Reason: "turning", For: 5 * time.Minute}); err != nil {
				t.Fatal(err)
			}
		}, "needs a doctor", "", alarm.Active},
		{"resolved", rules.PriorityHigh, func(t *testing.T, f *escFixture, id string) {
			if _, err := f.svc.Resolve(f.ctx, id, alarm.Action{By: "nina"}); err != nil {
				t.Fatal(err)
			}
		}, "needs a doctor", "already resolved", alarm.Resolved},
		{"no reason", rules.PriorityHigh, nil, "  ", "needs a reason", alarm.Active},
		{"no policy for the priority", rules.PriorityMedium, nil, "needs a doctor", "no escalation policy", alarm.Active},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newEscFixture(t)
			a := f.raise(t, "r", tt.prio)
			if tt.prepare != nil {
				tt.prepare(t, f, a.ID)
			}
			f.now = epoch.Add(time.Minute)
			outbox, hist := f.told(t, a.ID), f.last(t, a.ID)
			got, err := f.svc.EscalateNow(f.ctx, a.ID, alarm.Action{By: "nina", Reason: tt.reason})
			if tt.err != "" {
				if !errors.Is(err, alarm.ErrState) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want ErrState with %q", err, tt.err)
				}
				if told := f.told(t, a.ID); !slices.Equal(told, outbox) {
					t.Errorf("a refused escalation queued %q", told[len(outbox):])
				}
				if c := f.last(t, a.ID); c != hist {
					t.Errorf("a refused escalation was recorded: %+v", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			stored, err := f.db.Alarm(f.ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.State != tt.state || stored.Tier != 1 || !stored.SnoozedUntil.IsZero() || got.Version != stored.Version {
				t.Errorf("stored %s tier %d snoozed until %s (answer v%d, stored v%d)", stored.State, stored.Tier, stored.SnoozedUntil, got.Version, stored.Version)
			}
			// Acknowledged: somebody is on it; no timer pages anyone else.
			if timer := !stored.NextEscalation.IsZero(); timer != (tt.state == alarm.Active) {
				t.Errorf("next escalation %s for a %s alarm", stored.NextEscalation, stored.State)
			}
			if told := f.told(t, a.ID); len(told) != len(outbox)+1 || told[len(told)-1] != "alarm.escalated email:charge@example.org" {
				t.Errorf("outbox %q, want one escalation to the charge nurse after %q", told, outbox)
			}
		})
	}
}

func TestEscalateNowUnknownAlarm(t *testing.T) {
	f := newEscFixture(t)
	if _, err := f.svc.EscalateNow(f.ctx, "nope", alarm.Action{By: "nina", Reason: "x"}); !errors.Is(err, alarm.ErrNotFound) {
		t.Fatalf("unknown alarm: %v, want ErrNotFound", err)
	}
}
