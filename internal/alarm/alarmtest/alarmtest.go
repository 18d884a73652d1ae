// Package alarmtest is the conformance suite every alarm.Store
// implementation must pass. It relies only on the alarm.Store and alarm.Tx
// interfaces, so every backend is held to the same contract.
package alarmtest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/rules"
)

// Opener returns a new, empty store for one subtest and arranges for it to
// be closed (t.Cleanup).
type Opener func(t *testing.T) alarm.Store

// Run runs the conformance suite, each case on a fresh store from open.
func Run(t *testing.T, open Opener) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s alarm.Store)
	}{
		{"AlarmRoundTrip", testAlarmRoundTrip},
		{"AlarmNotFound", testAlarmNotFound},
		{"PutAlarmVersions", testPutAlarmVersions},
		{"PutAlarmRejectsInvalid", testPutAlarmRejectsInvalid},
		{"OpenAlarm", testOpenAlarm},
		{"OneOpenEpisodePerKey", testOneOpenEpisodePerKey},
		{"AlarmsFilter", testAlarmsFilter},
		{"AlarmsRestrict", testAlarmsRestrict},
		{"AlarmsScopedPages", testAlarmsScopedPages},
		{"History", testHistory},
		{"EnqueueIdempotent", testEnqueueIdempotent},
		{"ClaimLease", testClaimLease},
		{"ClaimSelection", testClaimSelection},
		{"ClaimConcurrent", testClaimConcurrent},
		{"FinishDelivery", testFinishDelivery},
		{"CountDeliveries", testCountDeliveries},
		{"NextDue", testNextDue},
		{"DueEscalations", testDueEscalations},
		{"Checkpoint", testCheckpoint},
		{"Docs", testDocs},
		{"Webhooks", testWebhooks},
		{"UpdateRollsBack", testUpdateRollsBack},
		{"UpdatePanicRollsBack", testUpdatePanicRollsBack},
		{"UpdateCancelledContext", testUpdateCancelledContext},
		{"ConcurrentUpdates", testConcurrentUpdates},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, open(t))
		})
	}
}

// t0 has nanoseconds on purpose: stores must keep them.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

// elsewhere is a non-UTC zone: stores must hand times back in UTC.
var elsewhere = time.FixedZone("UTC+5:30", 5*3600+30*60)

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// update runs fn in a transaction and fails the test on error.
func update(t *testing.T, s alarm.Store, what string, fn func(tx alarm.Tx) error) {
	t.Helper()
	must(t, s.Update(t.Context(), fn), what)
}

func putAlarm(t *testing.T, s alarm.Store, a *alarm.Alarm) {
	t.Helper()
	update(t, s, "put alarm "+a.ID, func(tx alarm.Tx) error { return tx.PutAlarm(a) })
}

// newAlarm returns an active, unacknowledged episode ready to insert.
func newAlarm(id, patient, rule, subject string, raised time.Time) alarm.Alarm {
	return alarm.Alarm{
		ID: id, Patient: patient, State: alarm.Active, Priority: rules.PriorityHigh,
		Kind: rules.CategoryClinical, Rule: rule, RuleKind: rules.KindThreshold, Subject: subject,
		Name: "SpO2 low", Raised: raised, Updated: raised, Condition: true, Latching: true,
		Device: "d1", Code: "59408-5", Value: 84.5, Unit: "%", Message: "SpO2 84.5 % < 85 %",
	}
}

func wantUTC(t *testing.T, what string, times ...time.Time) {
	t.Helper()
	for i, ts := range times {
		if !ts.IsZero() && ts.Location() != time.UTC {
			t.Errorf("%s: time %d (%v) is in %v, want UTC", what, i, ts, ts.Location())
		}
	}
}

func ids(as []alarm.Alarm) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func deliveryIDs(ds []alarm.Delivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func testAlarmRoundTrip(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	a := alarm.Alarm{
		ID: "a1", Patient: "p1", State: alarm.Acknowledged, Priority: rules.PriorityMedium,
		Kind: rules.CategoryTechnical, Rule: "r-spo2", RuleKind: rules.KindNEWS2, Subject: "d7",
		Name: "NEWS2 medium", Raised: t0.In(elsewhere), Updated: t0.Add(time.Nanosecond).In(elsewhere),
		Condition: false, Latching: true, Device: "d7", Code: "1104051000000101", Value: -0.000123, Unit: "{score}",
		Message: "NEWS2 6 ≥ 5", Detail: []byte(`{"score":6,"parts":[1,2,3]}`),
		AckedBy: "nurse1", AckedAt: t0.Add(time.Minute + 1).In(elsewhere), ResolvedBy: "dr2",
		ResolvedAt: t0.Add(2*time.Minute + 2), SnoozedUntil: t0.Add(3*time.Minute + 3).In(elsewhere),
		SnoozeReason: "turning patient", Tier: 2, Round: 5, NextEscalation: t0.Add(4*time.Minute + 4).In(elsewhere),
	}
	want := a
	putAlarm(t, s, &a)
	if a.Version != 1 {
		t.Fatalf("Version after insert = %d, want 1", a.Version)
	}
	want.Version = 1

	got, err := s.Alarm(ctx, "a1")
	must(t, err, "Alarm")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Alarm (-want +got):\n%s", diff)
	}
	wantUTC(t, "Alarm", got.Raised, got.Updated, got.AckedAt, got.ResolvedAt, got.SnoozedUntil, got.NextEscalation)
	if got.Raised.Nanosecond() != t0.Nanosecond() || got.Updated.Nanosecond() != t0.Nanosecond()+1 {
		t.Errorf("nanoseconds lost: raised %v, updated %v", got.Raised, got.Updated)
	}

	var inTx alarm.Alarm
	update(t, s, "tx.Alarm", func(tx alarm.Tx) error {
		var err error
		inTx, err = tx.Alarm("a1")
		return err
	})
	if diff := cmp.Diff(want, inTx); diff != "" {
		t.Errorf("tx.Alarm (-want +got):\n%s", diff)
	}

	// Zero times and an absent detail stay zero and absent.
	b := newAlarm("a2", "p1", "r2", "", t0)
	putAlarm(t, s, &b)
	got, err = s.Alarm(ctx, "a2")
	must(t, err, "Alarm a2")
	if !got.AckedAt.IsZero() || !got.ResolvedAt.IsZero() || !got.SnoozedUntil.IsZero() || !got.NextEscalation.IsZero() {
		t.Errorf("zero times came back set: %+v", got)
	}
	if len(got.Detail) != 0 {
		t.Errorf("Detail = %q, want empty", got.Detail)
	}
}

func testAlarmNotFound(t *testing.T, s alarm.Store) {
	_, err := s.Alarm(t.Context(), "missing")
	wantErr(t, err, alarm.ErrNotFound, "Alarm(missing)")
	update(t, s, "tx.Alarm(missing)", func(tx alarm.Tx) error {
		_, err := tx.Alarm("missing")
		wantErr(t, err, alarm.ErrNotFound, "tx.Alarm(missing)")
		return nil
	})
}

func testPutAlarmVersions(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	a := newAlarm("a1", "p1", "r1", "", t0)
	putAlarm(t, s, &a) // version 1

	steps := []struct {
		name        string
		id          string
		version     int
		message     string
		wantErr     error // nil: success
		wantVersion int   // a.Version after the call
	}{
		{"update at stored version", "a1", 1, "second", nil, 2},
		{"update again", "a1", 2, "third", nil, 3},
		{"stale version", "a1", 2, "stale", alarm.ErrConflict, 2},
		{"future version", "a1", 7, "future", alarm.ErrConflict, 7},
		{"insert existing id", "a1", 0, "dup", alarm.ErrConflict, 0},
		{"update missing id", "nope", 1, "ghost", alarm.ErrConflict, 1},
		{"update after conflicts", "a1", 3, "fourth", nil, 4},
	}
	wantMessage, wantStored := a.Message, 1
	for _, st := range steps {
		b := newAlarm(st.id, "p1", "r1", "", t0)
		if st.id != "a1" {
			b.Patient = "p2" // keep the open-episode key free
		}
		b.Version, b.Message = st.version, st.message
		err := s.Update(ctx, func(tx alarm.Tx) error { return tx.PutAlarm(&b) })
		if st.wantErr == nil && err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.wantErr != nil {
			wantErr(t, err, st.wantErr, st.name)
		}
		if b.Version != st.wantVersion {
			t.Errorf("%s: a.Version = %d, want %d", st.name, b.Version, st.wantVersion)
		}
		if st.wantErr == nil {
			wantMessage, wantStored = st.message, wantStored+1
		}
		got, err := s.Alarm(ctx, "a1")
		must(t, err, st.name+": Alarm")
		if got.Message != wantMessage {
			t.Errorf("%s: stored message %q, want %q", st.name, got.Message, wantMessage)
		}
		if got.Version != wantStored {
			t.Errorf("%s: stored version %d, want %d", st.name, got.Version, wantStored)
		}
	}
	_, err := s.Alarm(ctx, "nope")
	wantErr(t, err, alarm.ErrNotFound, "a failed update must not insert")

	// Two updates from the same read within one transaction: the second is
	// stale even though nothing else ran in between.
	err = s.Update(ctx, func(tx alarm.Tx) error {
		x, err := tx.Alarm("a1")
		if err != nil {
			return err
		}
		y := x
		if err := tx.PutAlarm(&x); err != nil {
			return err
		}
		return tx.PutAlarm(&y)
	})
	wantErr(t, err, alarm.ErrConflict, "second write from a stale read in one transaction")
}

func testPutAlarmRejectsInvalid(t *testing.T, s alarm.Store) {
	tests := []struct {
		name   string
		mutate func(a *alarm.Alarm)
	}{
		{"empty id", func(a *alarm.Alarm) { a.ID = "" }},
		{"empty state", func(a *alarm.Alarm) { a.State = "" }},
		{"unknown state", func(a *alarm.Alarm) { a.State = "silenced" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAlarm("bad", "p1", "r1", "", t0)
			tc.mutate(&a)
			err := s.Update(t.Context(), func(tx alarm.Tx) error { return tx.PutAlarm(&a) })
			if err == nil {
				t.Fatalf("PutAlarm accepted %s", tc.name)
			}
		})
	}
	list, err := s.Alarms(t.Context(), alarm.Filter{})
	must(t, err, "Alarms")
	if len(list) != 0 {
		t.Errorf("invalid alarms were stored: %v", ids(list))
	}
}

func testOpenAlarm(t *testing.T, s alarm.Store) {
	resolved := newAlarm("old", "p1", "r1", "s1", t0)
	resolved.State = alarm.Resolved
	active := newAlarm("act", "p1", "r1", "s1", t0.Add(time.Minute))
	acked := newAlarm("ack", "p1", "r2", "", t0)
	acked.State = alarm.Acknowledged
	otherSubject := newAlarm("sub", "p1", "r1", "s2", t0)
	onlyResolved := newAlarm("res", "p2", "r1", "s1", t0)
	onlyResolved.State = alarm.Resolved
	for _, a := range []*alarm.Alarm{&resolved, &active, &acked, &otherSubject, &onlyResolved} {
		putAlarm(t, s, a)
	}

	tests := []struct {
		patient, rule, subject string
		want                   string // "" when none
	}{
		{"p1", "r1", "s1", "act"},
		{"p1", "r1", "s2", "sub"},
		{"p1", "r2", "", "ack"},
		{"p1", "r1", "", ""},   // subject "" is its own key
		{"p1", "r2", "s1", ""}, // no such subject
		{"p2", "r1", "s1", ""}, // only resolved
		{"p3", "r1", "s1", ""},
	}
	update(t, s, "OpenAlarm", func(tx alarm.Tx) error {
		for _, tc := range tests {
			a, ok, err := tx.OpenAlarm(tc.patient, tc.rule, tc.subject)
			if err != nil {
				return err
			}
			switch {
			case tc.want == "" && ok:
				t.Errorf("OpenAlarm(%s, %s, %q) = %s, want none", tc.patient, tc.rule, tc.subject, a.ID)
			case tc.want != "" && !ok:
				t.Errorf("OpenAlarm(%s, %s, %q) = none, want %s", tc.patient, tc.rule, tc.subject, tc.want)
			case tc.want != "" && a.ID != tc.want:
				t.Errorf("OpenAlarm(%s, %s, %q) = %s, want %s", tc.patient, tc.rule, tc.subject, a.ID, tc.want)
			case ok && a.Version != 1:
				t.Errorf("OpenAlarm(%s, %s, %q).Version = %d, want 1", tc.patient, tc.rule, tc.subject, a.Version)
			}
		}
		return nil
	})

	// The transaction sees its own writes: resolving the episode closes it.
	update(t, s, "resolve then look up", func(tx alarm.Tx) error {
		a, ok, err := tx.OpenAlarm("p1", "r1", "s1")
		if err != nil || !ok {
			return fmt.Errorf("open alarm before resolve: %v, %v", ok, err)
		}
		a.State = alarm.Resolved
		if err := tx.PutAlarm(&a); err != nil {
			return err
		}
		if b, ok, err := tx.OpenAlarm("p1", "r1", "s1"); err != nil || ok {
			t.Errorf("OpenAlarm after resolving in the same transaction = %s, %v, %v; want none", b.ID, ok, err)
		}
		return nil
	})
}

func testOneOpenEpisodePerKey(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	first := newAlarm("first", "p1", "r1", "s1", t0)
	putAlarm(t, s, &first)

	tests := []struct {
		name    string
		a       alarm.Alarm
		wantErr bool
	}{
		{"second active, same key", newAlarm("dup-active", "p1", "r1", "s1", t0.Add(time.Second)), true},
		{"second acknowledged, same key", func() alarm.Alarm {
			a := newAlarm("dup-acked", "p1", "r1", "s1", t0.Add(time.Second))
			a.State = alarm.Acknowledged
			return a
		}(), true},
		{"resolved, same key", func() alarm.Alarm {
			a := newAlarm("hist1", "p1", "r1", "s1", t0.Add(-time.Hour))
			a.State = alarm.Resolved
			return a
		}(), false},
		{"another resolved, same key", func() alarm.Alarm {
			a := newAlarm("hist2", "p1", "r1", "s1", t0.Add(-2*time.Hour))
			a.State = alarm.Resolved
			return a
		}(), false},
		{"other subject", newAlarm("s2", "p1", "r1", "s2", t0), false},
		{"other rule", newAlarm("r2", "p1", "r2", "s1", t0), false},
		{"other patient", newAlarm("p2", "p2", "r1", "s1", t0), false},
	}
	for _, tc := range tests {
		a := tc.a
		err := s.Update(ctx, func(tx alarm.Tx) error { return tx.PutAlarm(&a) })
		if tc.wantErr && err == nil {
			t.Errorf("%s: insert succeeded, want failure", tc.name)
		}
		if !tc.wantErr && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}

	// Reopening a resolved episode while another is open fails too.
	err := s.Update(ctx, func(tx alarm.Tx) error {
		h, err := tx.Alarm("hist1")
		if err != nil {
			return err
		}
		h.State = alarm.Active
		return tx.PutAlarm(&h)
	})
	if err == nil {
		t.Errorf("reopening a resolved episode beside an open one succeeded")
	}

	// Once the open one is resolved, a new episode may open.
	update(t, s, "resolve first", func(tx alarm.Tx) error {
		first.State = alarm.Resolved
		return tx.PutAlarm(&first)
	})
	next := newAlarm("next", "p1", "r1", "s1", t0.Add(time.Hour))
	putAlarm(t, s, &next)

	open, err := s.Alarms(ctx, alarm.Filter{Patient: "p1", States: []alarm.State{alarm.Active, alarm.Acknowledged}})
	must(t, err, "Alarms")
	if diff := cmp.Diff([]string{"next", "r2", "s2"}, sortedIDs(open)); diff != "" {
		t.Errorf("open episodes of p1 (-want +got):\n%s", diff)
	}
}

func sortedIDs(as []alarm.Alarm) []string {
	out := ids(as)
	sort.Strings(out)
	return out
}

func testAlarmsFilter(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	mk := func(id, patient string, state alarm.State, raised time.Duration) {
		a := newAlarm(id, patient, "r-"+id, "", t0.Add(raised))
		a.State = state
		putAlarm(t, s, &a)
	}
	// Inserted out of raised order on purpose.
	mk("p1-old", "p1", alarm.Resolved, 0)
	mk("p1-new", "p1", alarm.Active, 3*time.Minute)
	mk("p1-mid", "p1", alarm.Acknowledged, time.Minute+time.Nanosecond)
	mk("p2-a", "p2", alarm.Active, 2*time.Minute)
	mk("p2-b", "p2", alarm.Resolved, time.Minute)

	tests := []struct {
		name string
		f    alarm.Filter
		want []string
	}{
		{"all", alarm.Filter{}, []string{"p1-new", "p2-a", "p1-mid", "p2-b", "p1-old"}},
		{"patient", alarm.Filter{Patient: "p1"}, []string{"p1-new", "p1-mid", "p1-old"}},
		{"one state", alarm.Filter{States: []alarm.State{alarm.Active}}, []string{"p1-new", "p2-a"}},
		{"two states", alarm.Filter{States: []alarm.State{alarm.Active, alarm.Acknowledged}}, []string{"p1-new", "p2-a", "p1-mid"}},
		{"patient and state", alarm.Filter{Patient: "p2", States: []alarm.State{alarm.Resolved}}, []string{"p2-b"}},
		{"limit", alarm.Filter{Limit: 2}, []string{"p1-new", "p2-a"}},
		{"patient and limit", alarm.Filter{Patient: "p1", Limit: 1}, []string{"p1-new"}},
		{"limit above count", alarm.Filter{Patient: "p2", Limit: 10}, []string{"p2-a", "p2-b"}},
		{"unknown patient", alarm.Filter{Patient: "p9"}, []string{}},
		{"no match", alarm.Filter{Patient: "p2", States: []alarm.State{alarm.Acknowledged}}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Alarms(ctx, tc.f)
			must(t, err, "Alarms")
			if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
				t.Errorf("Alarms(%+v) (-want +got):\n%s", tc.f, diff)
			}
			for _, a := range got {
				if a.Version != 1 || a.Patient == "" {
					t.Errorf("Alarms returned an incomplete episode: %+v", a)
				}
			}
		})
	}
}

func testHistory(t *testing.T, s alarm.Store) {
	a := newAlarm("a1", "p1", "r1", "", t0)
	changes := []alarm.Change{
		{Alarm: "a1", At: t0.Add(2 * time.Second).In(elsewhere), Action: "acknowledged", By: "nurse1", Reason: "seen"},
		{Alarm: "a1", At: t0, Action: "raised", By: "system"},
		{Alarm: "a1", At: t0, Action: "notified", By: "system", Detail: "webhook:w1"},
		{Alarm: "a1", At: t0.Add(time.Second + 1), Action: "escalated", By: "system", Detail: "tier 1"},
		{Alarm: "other", At: t0, Action: "raised", By: "system"},
	}
	update(t, s, "write history", func(tx alarm.Tx) error {
		if err := tx.PutAlarm(&a); err != nil {
			return err
		}
		for _, c := range changes {
			if err := tx.AddChange(c); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := s.History(t.Context(), "a1")
	must(t, err, "History")
	// Oldest first; changes at the same instant keep the order they were added.
	want := []alarm.Change{changes[1], changes[2], changes[3], changes[0]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("History (-want +got):\n%s", diff)
	}
	for _, c := range got {
		wantUTC(t, "History "+c.Action, c.At)
	}
	if got[2].At.Nanosecond() != t0.Nanosecond()+1 {
		t.Errorf("nanoseconds lost: %v", got[2].At)
	}
	none, err := s.History(t.Context(), "missing")
	must(t, err, "History(missing)")
	if len(none) != 0 {
		t.Errorf("History(missing) = %v, want empty", none)
	}
}

func delivery(id, alarmID string, due time.Time) alarm.Delivery {
	return alarm.Delivery{
		ID: id, Alarm: alarmID, Event: "alarm.raised", Recipient: "webhook:w1",
		Body: []byte(`{"id":"` + id + `"}`), Created: t0, Due: due, State: alarm.Pending,
	}
}

func enqueue(t *testing.T, s alarm.Store, ds ...alarm.Delivery) {
	t.Helper()
	update(t, s, "enqueue", func(tx alarm.Tx) error {
		for _, d := range ds {
			if err := tx.Enqueue(d); err != nil {
				return err
			}
		}
		return nil
	})
}

func testEnqueueIdempotent(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	first := delivery("a1/1/w1", "a1", t0.In(elsewhere))
	first.Body = []byte{0x00, 0xff, 0xfe, '{', 0x80} // not UTF-8: bodies are bytes
	first.Created = t0.Add(-time.Nanosecond).In(elsewhere)
	second := delivery("a1/1/email", "a1", t0.Add(time.Second))
	second.Recipient = "email:ward@example.org"
	second.Created = t0
	enqueue(t, s, first, second)

	replay := first
	replay.Body = []byte("replayed")
	replay.Recipient = "webhook:other"
	replay.Due = t0.Add(time.Hour)
	enqueue(t, s, replay)

	got, err := s.Deliveries(ctx, "a1")
	must(t, err, "Deliveries")
	wantFirst, wantSecond := first, second
	if diff := cmp.Diff([]alarm.Delivery{wantFirst, wantSecond}, got); diff != "" {
		t.Errorf("Deliveries after replay (-want +got):\n%s", diff)
	}
	for _, d := range got {
		wantUTC(t, "Deliveries", d.Created, d.Due, d.Delivered)
	}

	// A delivery enqueued without a state is pending.
	noState := delivery("a2/1/w1", "a2", t0)
	noState.State = ""
	enqueue(t, s, noState)
	got, err = s.Deliveries(ctx, "a2")
	must(t, err, "Deliveries a2")
	if len(got) != 1 || got[0].State != alarm.Pending {
		t.Errorf("Deliveries(a2) = %+v, want one pending", got)
	}
	none, err := s.Deliveries(ctx, "missing")
	must(t, err, "Deliveries(missing)")
	if len(none) != 0 {
		t.Errorf("Deliveries(missing) = %v, want empty", none)
	}
}

func testClaimLease(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	enqueue(t, s, delivery("d1", "a1", t0), delivery("d2", "a1", t0.Add(time.Second)))
	const lease = 30 * time.Second
	now := t0.Add(time.Minute)

	steps := []struct {
		name string
		at   time.Time
		want []string
	}{
		{"first claim", now, []string{"d1", "d2"}},
		{"during the lease", now.Add(lease - time.Nanosecond), []string{}},
		{"still during the lease", now.Add(time.Second), []string{}},
		{"after the lease", now.Add(lease + time.Nanosecond), []string{"d1", "d2"}},
		{"during the second lease", now.Add(lease + time.Second), []string{}},
	}
	for _, st := range steps {
		got, err := s.ClaimDeliveries(ctx, st.at, lease, 10)
		must(t, err, st.name)
		if diff := cmp.Diff(st.want, deliveryIDs(got)); diff != "" {
			t.Errorf("%s: claimed (-want +got):\n%s", st.name, diff)
		}
	}

	// Claimed rows come back whole.
	got, err := s.ClaimDeliveries(ctx, now.Add(3*lease), lease, 1)
	must(t, err, "claim one")
	want := delivery("d1", "a1", t0)
	if diff := cmp.Diff([]alarm.Delivery{want}, got); diff != "" {
		t.Errorf("claimed delivery (-want +got):\n%s", diff)
	}
	// The limit leaves d2 to the next claimer.
	got, err = s.ClaimDeliveries(ctx, now.Add(3*lease), lease, 10)
	must(t, err, "claim rest")
	if diff := cmp.Diff([]string{"d2"}, deliveryIDs(got)); diff != "" {
		t.Errorf("claim after a limited claim (-want +got):\n%s", diff)
	}
}

func testClaimSelection(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	now := t0.Add(time.Hour)
	delivered := delivery("delivered", "a1", t0)
	delivered.State, delivered.Attempts, delivered.Receipt, delivered.Delivered = alarm.Delivered, 1, "r-1", t0
	failed := delivery("failed", "a1", t0)
	failed.State, failed.Attempts, failed.LastError = alarm.Failed, 5, "410 Gone"
	enqueue(t, s,
		delivery("due-late", "a1", now),
		delivery("due-early", "a1", t0),
		delivery("due-mid", "a2", t0.Add(time.Minute)),
		delivery("not-yet", "a1", now.Add(time.Nanosecond)),
		delivered, failed,
	)
	got, err := s.ClaimDeliveries(ctx, now, time.Minute, 0)
	must(t, err, "claim")
	// Earliest due first; delivered, failed and future rows are not claimed.
	if diff := cmp.Diff([]string{"due-early", "due-mid", "due-late"}, deliveryIDs(got)); diff != "" {
		t.Errorf("claimed (-want +got):\n%s", diff)
	}
	got, err = s.ClaimDeliveries(ctx, now.Add(2*time.Minute), time.Minute, 2)
	must(t, err, "claim later")
	if diff := cmp.Diff([]string{"due-early", "due-mid"}, deliveryIDs(got)); diff != "" {
		t.Errorf("claimed after leases ended, limit 2 (-want +got):\n%s", diff)
	}
	got, err = s.ClaimDeliveries(ctx, now.Add(2*time.Minute), time.Minute, 10)
	must(t, err, "claim remainder")
	if diff := cmp.Diff([]string{"due-late", "not-yet"}, deliveryIDs(got)); diff != "" {
		t.Errorf("claimed remainder (-want +got):\n%s", diff)
	}
}

func testClaimConcurrent(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	var ds []alarm.Delivery
	for i := range 40 {
		ds = append(ds, delivery(fmt.Sprintf("d%02d", i), "a1", t0.Add(time.Duration(i)*time.Millisecond)))
	}
	enqueue(t, s, ds...)
	now := t0.Add(time.Minute)

	var (
		mu      sync.Mutex
		claimed = map[string]int{}
		wg      sync.WaitGroup
		errs    = make(chan error, 8)
	)
	for range 8 {
		wg.Go(func() {
			// Bounded: a store that ignores leases would hand out rows forever.
			for range len(ds) {
				got, err := s.ClaimDeliveries(ctx, now, time.Hour, 3)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, d := range got {
					claimed[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent claim: %v", err)
	}
	if len(claimed) != len(ds) {
		t.Errorf("claimed %d distinct deliveries, want %d", len(claimed), len(ds))
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("delivery %s claimed %d times under one lease", id, n)
		}
	}
}

func testFinishDelivery(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	enqueue(t, s, delivery("retry", "a1", t0), delivery("ok", "a1", t0), delivery("gone", "a1", t0))
	now := t0.Add(time.Minute)
	claimed, err := s.ClaimDeliveries(ctx, now, time.Hour, 0)
	must(t, err, "claim")
	if len(claimed) != 3 {
		t.Fatalf("claimed %d, want 3", len(claimed))
	}

	retry := claimed[0]
	for _, d := range claimed {
		if d.ID == "retry" {
			retry = d
		}
	}
	retry.Attempts, retry.LastError, retry.Due = 1, "503 Service Unavailable", now.Add(10*time.Second).In(elsewhere)
	ok := delivery("ok", "a1", t0)
	ok.State, ok.Attempts, ok.Receipt, ok.Delivered = alarm.Delivered, 1, "msg-42", now.Add(time.Nanosecond).In(elsewhere)
	gone := delivery("gone", "a1", t0)
	gone.State, gone.Attempts, gone.LastError = alarm.Failed, 1, "410 Gone"
	update(t, s, "finish", func(tx alarm.Tx) error {
		for _, d := range []alarm.Delivery{retry, ok, gone} {
			if err := tx.FinishDelivery(d); err != nil {
				return err
			}
		}
		return nil
	})

	got, err := s.Deliveries(ctx, "a1")
	must(t, err, "Deliveries")
	byID := map[string]alarm.Delivery{}
	for _, d := range got {
		byID[d.ID] = d
		wantUTC(t, "Deliveries "+d.ID, d.Created, d.Due, d.Delivered)
	}
	tests := []struct {
		id   string
		want alarm.Delivery
	}{
		{"retry", retry},
		{"ok", ok},
		{"gone", gone},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, byID[tc.id]); diff != "" {
			t.Errorf("delivery %s after FinishDelivery (-want +got):\n%s", tc.id, diff)
		}
	}

	// FinishDelivery ended the lease: the retry is claimable at its new due
	// time although the hour-long lease has not run out.
	early, err := s.ClaimDeliveries(ctx, now.Add(9*time.Second), time.Hour, 0)
	must(t, err, "claim before retry due")
	if len(early) != 0 {
		t.Errorf("claimed %v before the retry was due", deliveryIDs(early))
	}
	again, err := s.ClaimDeliveries(ctx, now.Add(10*time.Second), time.Hour, 0)
	must(t, err, "claim retry")
	if diff := cmp.Diff([]string{"retry"}, deliveryIDs(again)); diff != "" {
		t.Errorf("claim at retry due (-want +got):\n%s", diff)
	}
	if len(again) == 1 && again[0].Attempts != 1 {
		t.Errorf("claimed retry has %d attempts, want 1", again[0].Attempts)
	}

	err = s.Update(ctx, func(tx alarm.Tx) error {
		return tx.FinishDelivery(alarm.Delivery{ID: "missing", State: alarm.Delivered, Attempts: 1})
	})
	wantErr(t, err, alarm.ErrNotFound, "FinishDelivery(missing)")
}

func testCountDeliveries(t *testing.T, s alarm.Store) {
	d := func(id, alarmID string, state alarm.DeliveryState) alarm.Delivery {
		x := delivery(id, alarmID, t0)
		x.State = state
		return x
	}
	enqueue(t, s,
		d("1", "a1", alarm.Pending), d("2", "a1", alarm.Pending), d("3", "a1", alarm.Delivered),
		d("4", "a1", alarm.Failed), d("5", "a2", alarm.Pending), d("1", "a1", alarm.Failed), // replay of 1
	)
	tests := []struct {
		alarm string
		state alarm.DeliveryState
		want  int
	}{
		{"a1", alarm.Pending, 2},
		{"a1", alarm.Delivered, 1},
		{"a1", alarm.Failed, 1},
		{"a2", alarm.Pending, 1},
		{"a2", alarm.Failed, 0},
		{"a3", alarm.Pending, 0},
	}
	update(t, s, "count", func(tx alarm.Tx) error {
		for _, tc := range tests {
			n, err := tx.CountDeliveries(tc.alarm, tc.state)
			if err != nil {
				return err
			}
			if n != tc.want {
				t.Errorf("CountDeliveries(%s, %s) = %d, want %d", tc.alarm, tc.state, n, tc.want)
			}
		}
		// Counts see the transaction's own writes.
		if err := tx.Enqueue(d("6", "a2", alarm.Failed)); err != nil {
			return err
		}
		if n, err := tx.CountDeliveries("a2", alarm.Failed); err != nil || n != 1 {
			t.Errorf("CountDeliveries after Enqueue in the same transaction = %d, %v; want 1", n, err)
		}
		return nil
	})
}

func testNextDue(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	next := func(what string) time.Time {
		t.Helper()
		due, err := s.NextDue(ctx)
		must(t, err, what)
		wantUTC(t, what, due)
		return due
	}
	if due := next("empty"); !due.IsZero() {
		t.Errorf("NextDue on an empty outbox = %v, want zero", due)
	}
	done := delivery("done", "a1", t0.Add(-time.Hour))
	done.State = alarm.Delivered
	failed := delivery("failed", "a1", t0.Add(-time.Hour))
	failed.State = alarm.Failed
	enqueue(t, s, done, failed)
	if due := next("only finished"); !due.IsZero() {
		t.Errorf("NextDue with only delivered/failed rows = %v, want zero", due)
	}
	enqueue(t, s, delivery("late", "a1", t0.Add(time.Minute)), delivery("early", "a1", t0.Add(time.Nanosecond).In(elsewhere)))
	if due := next("pending"); !due.Equal(t0.Add(time.Nanosecond)) {
		t.Errorf("NextDue = %v, want %v", due, t0.Add(time.Nanosecond))
	}
	update(t, s, "finish early", func(tx alarm.Tx) error {
		d := delivery("early", "a1", t0)
		d.State, d.Attempts, d.Delivered = alarm.Delivered, 1, t0
		return tx.FinishDelivery(d)
	})
	if due := next("after finishing the earliest"); !due.Equal(t0.Add(time.Minute)) {
		t.Errorf("NextDue = %v, want %v", due, t0.Add(time.Minute))
	}
	update(t, s, "reschedule late", func(tx alarm.Tx) error {
		d := delivery("late", "a1", t0.Add(time.Hour))
		d.Attempts = 1
		return tx.FinishDelivery(d)
	})
	if due := next("after rescheduling"); !due.Equal(t0.Add(time.Hour)) {
		t.Errorf("NextDue = %v, want %v", due, t0.Add(time.Hour))
	}
}

func testDueEscalations(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	now := t0.Add(time.Hour)
	mk := func(id string, state alarm.State, next time.Time) {
		a := newAlarm(id, "p-"+id, "r1", "", t0)
		a.State, a.NextEscalation = state, next
		putAlarm(t, s, &a)
	}
	mk("due-now", alarm.Active, now)
	mk("due-oldest", alarm.Active, now.Add(-time.Hour))
	mk("due-mid", alarm.Active, now.Add(-time.Minute).In(elsewhere))
	mk("future", alarm.Active, now.Add(time.Nanosecond))
	mk("unset", alarm.Active, time.Time{})
	mk("acked", alarm.Acknowledged, now.Add(-2*time.Hour))
	mk("resolved", alarm.Resolved, now.Add(-2*time.Hour))

	tests := []struct {
		name  string
		now   time.Time
		limit int
		want  []string
	}{
		{"due", now, 0, []string{"due-oldest", "due-mid", "due-now"}},
		{"limit", now, 2, []string{"due-oldest", "due-mid"}},
		{"later", now.Add(time.Nanosecond), 10, []string{"due-oldest", "due-mid", "due-now", "future"}},
		{"earlier", now.Add(-time.Minute - 1), 10, []string{"due-oldest"}},
		{"nothing due", now.Add(-time.Hour - time.Nanosecond), 10, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.DueEscalations(ctx, tc.now, tc.limit)
			must(t, err, "DueEscalations")
			if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
				t.Errorf("DueEscalations(%v, %d) (-want +got):\n%s", tc.now, tc.limit, diff)
			}
			for _, a := range got {
				wantUTC(t, "DueEscalations "+a.ID, a.NextEscalation)
			}
		})
	}

	// Acknowledging takes an episode off the escalation list.
	update(t, s, "acknowledge", func(tx alarm.Tx) error {
		a, err := tx.Alarm("due-oldest")
		if err != nil {
			return err
		}
		a.State, a.AckedBy, a.AckedAt = alarm.Acknowledged, "nurse1", now
		return tx.PutAlarm(&a)
	})
	got, err := s.DueEscalations(ctx, now, 0)
	must(t, err, "DueEscalations after ack")
	if diff := cmp.Diff([]string{"due-mid", "due-now"}, ids(got)); diff != "" {
		t.Errorf("DueEscalations after ack (-want +got):\n%s", diff)
	}
}

func testCheckpoint(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	got, err := s.Checkpoint(ctx, "eval-0")
	must(t, err, "Checkpoint(none)")
	if diff := cmp.Diff(alarm.Checkpoint{}, got); diff != "" {
		t.Errorf("Checkpoint with none stored (-want +got):\n%s", diff)
	}

	const big = uint64(1)<<63 + 12345 // sequences past int64 must survive
	steps := []struct {
		name string
		set  alarm.Checkpoint
		want alarm.Checkpoint
	}{
		{"first, without snapshot",
			alarm.Checkpoint{Name: "eval-0", Applied: 10, SnapSeq: 9},
			alarm.Checkpoint{Name: "eval-0", Applied: 10}},
		{"with snapshot",
			alarm.Checkpoint{Name: "eval-0", Applied: 20, Snapshot: []byte{0, 1, 2, 0xff}, SnapSeq: 20},
			alarm.Checkpoint{Name: "eval-0", Applied: 20, Snapshot: []byte{0, 1, 2, 0xff}, SnapSeq: 20}},
		{"without snapshot keeps the previous one",
			alarm.Checkpoint{Name: "eval-0", Applied: 25, SnapSeq: 99},
			alarm.Checkpoint{Name: "eval-0", Applied: 25, Snapshot: []byte{0, 1, 2, 0xff}, SnapSeq: 20}},
		{"empty non-nil snapshot replaces",
			alarm.Checkpoint{Name: "eval-0", Applied: 30, Snapshot: []byte{}, SnapSeq: 30},
			alarm.Checkpoint{Name: "eval-0", Applied: 30, Snapshot: []byte{}, SnapSeq: 30}},
		{"large sequences",
			alarm.Checkpoint{Name: "eval-0", Applied: big + 1, Snapshot: []byte("s"), SnapSeq: big},
			alarm.Checkpoint{Name: "eval-0", Applied: big + 1, Snapshot: []byte("s"), SnapSeq: big}},
	}
	for _, st := range steps {
		var inTx alarm.Checkpoint
		update(t, s, st.name, func(tx alarm.Tx) error {
			if err := tx.SetCheckpoint(st.set); err != nil {
				return err
			}
			var err error
			inTx, err = tx.Checkpoint(st.set.Name)
			return err
		})
		got, err := s.Checkpoint(ctx, st.set.Name)
		must(t, err, st.name)
		// An empty snapshot may come back nil or empty.
		opts := cmpopts.EquateEmpty()
		if diff := cmp.Diff(st.want, got, opts); diff != "" {
			t.Errorf("%s: Checkpoint (-want +got):\n%s", st.name, diff)
		}
		pos := st.want
		pos.Snapshot = nil // a transaction reads the position only
		if diff := cmp.Diff(pos, inTx, opts); diff != "" {
			t.Errorf("%s: tx.Checkpoint (-want +got):\n%s", st.name, diff)
		}
	}
	other, err := s.Checkpoint(ctx, "eval-1")
	must(t, err, "other checkpoint")
	if other.Applied != 0 || other.Snapshot != nil || other.SnapSeq != 0 {
		t.Errorf("checkpoints leak between names: %+v", other)
	}
}

func testDocs(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	_, err := s.Doc(ctx, "setting:ward", "rules")
	wantErr(t, err, alarm.ErrNotFound, "Doc(none)")
	hist, err := s.DocHistory(ctx, "setting:ward", "rules")
	must(t, err, "DocHistory(none)")
	if len(hist) != 0 {
		t.Errorf("DocHistory(none) = %v, want empty", hist)
	}
	lastVersion, err := s.DocsVersion(ctx)
	must(t, err, "DocsVersion")

	puts := []struct {
		scope, kind, body string
		wantVersion       int
	}{
		{"setting:ward", "rules", "v1", 1},
		{"setting:ward", "rules", "v2", 2},
		{"setting:ward", "escalation", "e1", 1},
		{"patient:p1", "rules", "p1", 1},
		{"setting:ward", "rules", "v3", 3},
	}
	var stored []alarm.Doc
	for i, p := range puts {
		d := alarm.Doc{
			Scope: p.scope, Kind: p.kind, Body: []byte(p.body), Author: "admin",
			Reason: fmt.Sprintf("change %d", i), At: t0.Add(time.Duration(i) * time.Second).In(elsewhere),
		}
		must(t, s.PutDoc(ctx, &d), "PutDoc "+p.body)
		if d.Version != p.wantVersion {
			t.Errorf("PutDoc %s: Version = %d, want %d", p.body, d.Version, p.wantVersion)
		}
		v, err := s.DocsVersion(ctx)
		must(t, err, "DocsVersion")
		if v <= lastVersion {
			t.Errorf("DocsVersion after PutDoc %s = %d, not above %d", p.body, v, lastVersion)
		}
		lastVersion = v
		stored = append(stored, d)
	}

	cur, err := s.Doc(ctx, "setting:ward", "rules")
	must(t, err, "Doc")
	if diff := cmp.Diff(stored[4], cur); diff != "" {
		t.Errorf("Doc (-want +got):\n%s", diff)
	}
	wantUTC(t, "Doc", cur.At)
	hist, err = s.DocHistory(ctx, "setting:ward", "rules")
	must(t, err, "DocHistory")
	if diff := cmp.Diff([]alarm.Doc{stored[4], stored[1], stored[0]}, hist); diff != "" {
		t.Errorf("DocHistory newest first (-want +got):\n%s", diff)
	}
	esc, err := s.Doc(ctx, "setting:ward", "escalation")
	must(t, err, "Doc escalation")
	if diff := cmp.Diff(stored[2], esc); diff != "" {
		t.Errorf("Doc escalation (-want +got):\n%s", diff)
	}
	v, err := s.DocsVersion(ctx)
	must(t, err, "DocsVersion")
	if v != lastVersion {
		t.Errorf("DocsVersion changed without a PutDoc: %d, then %d", lastVersion, v)
	}
}

func testWebhooks(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	list, err := s.Webhooks(ctx)
	must(t, err, "Webhooks(empty)")
	if len(list) != 0 {
		t.Errorf("Webhooks on an empty store = %v", list)
	}
	w1 := alarm.Webhook{ID: "w1", URL: "https://a.example/hook", Secret: []byte{0, 1, 0xfe}, Created: t0.In(elsewhere)}
	w2 := alarm.Webhook{ID: "w2", URL: "https://b.example/hook", Secret: []byte("s2"), Created: t0.Add(time.Nanosecond)}
	must(t, s.PutWebhook(ctx, w2), "PutWebhook w2")
	must(t, s.PutWebhook(ctx, w1), "PutWebhook w1")

	got, err := s.Webhook(ctx, "w1")
	must(t, err, "Webhook w1")
	if diff := cmp.Diff(w1, got); diff != "" {
		t.Errorf("Webhook (-want +got):\n%s", diff)
	}
	wantUTC(t, "Webhook", got.Created)

	// Putting an existing id replaces it.
	w1.URL, w1.Secret = "https://a.example/v2", []byte("rotated")
	must(t, s.PutWebhook(ctx, w1), "PutWebhook w1 again")
	list, err = s.Webhooks(ctx)
	must(t, err, "Webhooks")
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	if diff := cmp.Diff([]alarm.Webhook{w1, w2}, list); diff != "" {
		t.Errorf("Webhooks (-want +got):\n%s", diff)
	}

	must(t, s.DeleteWebhook(ctx, "w1"), "DeleteWebhook w1")
	_, err = s.Webhook(ctx, "w1")
	wantErr(t, err, alarm.ErrNotFound, "Webhook after delete")
	wantErr(t, s.DeleteWebhook(ctx, "w1"), alarm.ErrNotFound, "DeleteWebhook twice")
	_, err = s.Webhook(ctx, "never")
	wantErr(t, err, alarm.ErrNotFound, "Webhook(never)")
	list, err = s.Webhooks(ctx)
	must(t, err, "Webhooks after delete")
	if diff := cmp.Diff([]alarm.Webhook{w2}, list); diff != "" {
		t.Errorf("Webhooks after delete (-want +got):\n%s", diff)
	}
}

// writeEverything writes one of each kind of row, as an evaluator batch does.
func writeEverything(tx alarm.Tx, id string, applied uint64) error {
	a := newAlarm(id, "p-"+id, "r1", "", t0)
	a.NextEscalation = t0
	if err := tx.PutAlarm(&a); err != nil {
		return err
	}
	if err := tx.AddChange(alarm.Change{Alarm: id, At: t0, Action: "raised", By: "system"}); err != nil {
		return err
	}
	if err := tx.Enqueue(delivery(id+"/1", id, t0)); err != nil {
		return err
	}
	return tx.SetCheckpoint(alarm.Checkpoint{Name: "eval", Applied: applied, Snapshot: []byte(id), SnapSeq: applied})
}

// wantNothingOf checks that no row written by writeEverything(id) is visible.
func wantNothingOf(t *testing.T, s alarm.Store, id string, wantApplied uint64) {
	t.Helper()
	ctx := t.Context()
	if _, err := s.Alarm(ctx, id); !errors.Is(err, alarm.ErrNotFound) {
		t.Errorf("alarm %s visible after rollback (err %v)", id, err)
	}
	if h, err := s.History(ctx, id); err != nil || len(h) != 0 {
		t.Errorf("history of %s after rollback = %v, %v", id, h, err)
	}
	if d, err := s.Deliveries(ctx, id); err != nil || len(d) != 0 {
		t.Errorf("deliveries of %s after rollback = %v, %v", id, d, err)
	}
	if due, err := s.DueEscalations(ctx, t0, 0); err != nil || len(due) != 0 {
		t.Errorf("due escalations after rollback = %v, %v", ids(due), err)
	}
	if c, err := s.Checkpoint(ctx, "eval"); err != nil || c.Applied != wantApplied {
		t.Errorf("checkpoint after rollback = %+v, %v; want applied %d", c, err, wantApplied)
	}
	if n, err := s.NextDue(ctx); err != nil || !n.IsZero() {
		t.Errorf("NextDue after rollback = %v, %v; want zero", n, err)
	}
}

func testUpdateRollsBack(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	update(t, s, "checkpoint 5", func(tx alarm.Tx) error {
		return tx.SetCheckpoint(alarm.Checkpoint{Name: "eval", Applied: 5})
	})

	boom := errors.New("boom")
	err := s.Update(ctx, func(tx alarm.Tx) error {
		if err := writeEverything(tx, "a1", 6); err != nil {
			return err
		}
		return fmt.Errorf("evaluate: %w", boom)
	})
	wantErr(t, err, boom, "Update with a failing fn")
	wantNothingOf(t, s, "a1", 5)

	// A store error that fn passes on rolls back the writes before it.
	existing := newAlarm("x", "p-x", "r-x", "", t0)
	putAlarm(t, s, &existing)
	err = s.Update(ctx, func(tx alarm.Tx) error {
		if err := writeEverything(tx, "a2", 7); err != nil {
			return err
		}
		stale := existing
		stale.Version = 0 // insert of an existing id
		return tx.PutAlarm(&stale)
	})
	wantErr(t, err, alarm.ErrConflict, "Update with a conflict")
	wantNothingOf(t, s, "a2", 5)

	// The store is still usable and commits everything together.
	update(t, s, "write everything", func(tx alarm.Tx) error { return writeEverything(tx, "a3", 8) })
	if _, err := s.Alarm(ctx, "a3"); err != nil {
		t.Errorf("alarm after a successful Update: %v", err)
	}
	if c, err := s.Checkpoint(ctx, "eval"); err != nil || c.Applied != 8 || string(c.Snapshot) != "a3" {
		t.Errorf("checkpoint after a successful Update = %+v, %v", c, err)
	}
}

func testUpdatePanicRollsBack(t *testing.T, s alarm.Store) {
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("a panic in fn did not reach the caller")
			}
		}()
		_ = s.Update(t.Context(), func(tx alarm.Tx) error {
			if err := writeEverything(tx, "a1", 1); err != nil {
				return err
			}
			panic("evaluator bug")
		})
	}()
	wantNothingOf(t, s, "a1", 0)
	// The writer was released: the next Update does not block. The timeout
	// turns a store that leaked its writer into a failure, not a hang.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	must(t, s.Update(ctx, func(tx alarm.Tx) error { return writeEverything(tx, "a2", 2) }), "Update after panic")
	if _, err := s.Alarm(t.Context(), "a2"); err != nil {
		t.Errorf("alarm after panic recovery: %v", err)
	}
}

func testUpdateCancelledContext(t *testing.T, s alarm.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Update(ctx, func(tx alarm.Tx) error { return writeEverything(tx, "a1", 1) })
	if err == nil {
		t.Fatalf("Update with a cancelled context succeeded")
	}
	wantNothingOf(t, s, "a1", 0)
}

func testConcurrentUpdates(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	counter := newAlarm("counter", "p1", "r1", "", t0)
	putAlarm(t, s, &counter)

	const workers, perWorker = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				// Read-modify-write; a store may answer ErrConflict, and
				// then the whole transaction is retried as callers do.
				for {
					err := s.Update(ctx, func(tx alarm.Tx) error {
						a, err := tx.Alarm("counter")
						if err != nil {
							return err
						}
						a.Round++
						if err := tx.PutAlarm(&a); err != nil {
							return err
						}
						return tx.AddChange(alarm.Change{Alarm: "counter", At: t0, Action: "repeated", By: fmt.Sprintf("w%d-%d", w, i)})
					})
					if errors.Is(err, alarm.ErrConflict) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Update: %v", err)
	}
	got, err := s.Alarm(ctx, "counter")
	must(t, err, "Alarm")
	if got.Round != workers*perWorker || got.Version != 1+workers*perWorker {
		t.Errorf("after %d updates: Round %d, Version %d; want %d, %d", workers*perWorker, got.Round, got.Version, workers*perWorker, 1+workers*perWorker)
	}
	hist, err := s.History(ctx, "counter")
	must(t, err, "History")
	if len(hist) != workers*perWorker {
		t.Errorf("history has %d entries, want %d", len(hist), workers*perWorker)
	}
}
