package alarm_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/rules"
)

type noticeFixture struct {
	db  *alarmdb.DB
	svc *alarm.Service
	mu  sync.Mutex
	now time.Time
}

func (f *noticeFixture) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *noticeFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// newNoticeFixture has a ward escalation whose clinical policy goes to the
// nurses and whose supervisors are the on-call manager.
func newNoticeFixture(t *testing.T) *noticeFixture {
	t.Helper()
	db, err := alarmdb.Open(filepath.Join(t.TempDir(), "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &noticeFixture{db: db, now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	esc := `{"policies":{"nurses":{"tiers":[{"after":"0s","recipients":["webhook:nurses"]}]},
		"on-call":{"tiers":[{"after":"0s","recipients":["email:manager@example.org"]}]}},
		"priorities":{"high":"nurses","medium":"nurses","low":"nurses"},"supervisors":"on-call"}`
	if err := db.PutDoc(context.Background(), &alarm.Doc{Scope: alarm.SettingScope("ward"), Kind: alarm.DocEscalation, Body: []byte(esc), Author: "t", At: f.now}); err != nil {
		t.Fatal(err)
	}
	profiles := &alarm.Profiles{Store: db, Now: f.clock}
	f.svc = alarm.NewService(alarm.Config{Store: db, Escalation: profiles.Escalation, Now: f.clock})
	return f
}

func (f *noticeFixture) recipients(t *testing.T, id string) []string {
	t.Helper()
	ds, err := f.db.Deliveries(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range ds {
		out = append(out, d.Event+" "+d.Recipient)
	}
	slices.Sort(out)
	return out
}

func TestNoticeGoesToItsRecipientsOnly(t *testing.T) {
	f := newNoticeFixture(t)
	ctx := context.Background()
	n := alarm.Notice{Rule: alarm.RuleBreakGlass, Subject: "grant-1", Patient: "p1", Name: "Break-glass access",
		Message: "dr-lee opened p1", Recipients: []string{"email:privacy@example.org"}, Detail: map[string]any{"grant": "grant-1"}}
	a, err := f.svc.Notice(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if a.State != alarm.Active || a.RuleKind != alarm.KindNotice || a.Kind != rules.CategoryTechnical || a.Priority != rules.PriorityLow {
		t.Errorf("notice episode %+v", a)
	}
	if got, want := f.recipients(t, a.ID), []string{"alarm.raised email:privacy@example.org"}; !slices.Equal(got, want) {
		t.Errorf("deliveries %v, want %v (never the patient's clinical policy)", got, want)
	}
	// The same grant twice is one episode, told once.
	again, err := f.svc.Notice(ctx, n)
	if err != nil || again.ID != a.ID {
		t.Fatalf("second notice: %v %+v", err, again)
	}
	if got := f.recipients(t, a.ID); len(got) != 1 {
		t.Errorf("deliveries after a repeated call: %v", got)
	}
	// Unacknowledged, it is sent again after an hour, to the same recipient.
	f.advance(59 * time.Minute)
	if moved, err := f.svc.Escalate(ctx); err != nil || moved != 0 {
		t.Fatalf("escalate before the hour: %d %v", moved, err)
	}
	f.advance(time.Minute)
	if moved, err := f.svc.Escalate(ctx); err != nil || moved != 1 {
		t.Fatalf("escalate at the hour: %d %v", moved, err)
	}
	want := []string{"alarm.raised email:privacy@example.org", "alarm.repeated email:privacy@example.org"}
	if got := f.recipients(t, a.ID); !slices.Equal(got, want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}
	// Acknowledging ends it: its condition is over when it is raised.
	acked, err := f.svc.Acknowledge(ctx, a.ID, alarm.Action{By: "privacy-officer", Reason: "reviewed"})
	if err != nil || acked.State != alarm.Resolved {
		t.Fatalf("acknowledge: %v %+v", err, acked)
	}
}

func TestNoticeWithoutRecipientsGoesToSupervisors(t *testing.T) {
	f := newNoticeFixture(t)
	a, err := f.svc.Notice(context.Background(), alarm.Notice{Rule: alarm.RuleBreakGlass, Subject: "grant-2", Patient: "p1", Name: "Break-glass access", Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.recipients(t, a.ID), []string{"alarm.raised email:manager@example.org"}; !slices.Equal(got, want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}
}

func TestNoticeRefusesBadRecipients(t *testing.T) {
	f := newNoticeFixture(t)
	for _, r := range []string{"policy:nurses", "email:not an address", "sms:123", ""} {
		_, err := f.svc.Notice(context.Background(), alarm.Notice{Rule: "x", Subject: "s", Patient: "p1", Recipients: []string{r}})
		if err == nil {
			t.Errorf("recipient %q accepted", r)
		}
	}
	if _, err := f.svc.Notice(context.Background(), alarm.Notice{Rule: "x", Patient: "p1"}); err == nil {
		t.Error("a notice without a subject was accepted")
	}
}
