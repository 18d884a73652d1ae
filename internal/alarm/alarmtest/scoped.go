package alarmtest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/alarm"
)

// testAlarmsRestrict: Filter.Restrict keeps exactly the listed patients'
// alarms, "" standing for alarms about no patient, in the usual order.
func testAlarmsRestrict(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	mk := func(id, patient string, state alarm.State, raised time.Duration) {
		a := newAlarm(id, patient, "r-"+id, "", t0.Add(raised))
		a.State = state
		putAlarm(t, s, &a)
	}
	mk("p1-old", "p1", alarm.Resolved, 0)
	mk("p1-new", "p1", alarm.Active, 3*time.Minute)
	mk("p2-a", "p2", alarm.Active, 2*time.Minute)
	mk("p3-a", "p3", alarm.Acknowledged, time.Minute)
	mk("sys", "", alarm.Active, 4*time.Minute)
	// Equal raised times are ordered by id, newest (greatest) first.
	mk("p2-tie-a", "p2", alarm.Active, 5*time.Minute)
	mk("p3-tie-b", "p3", alarm.Active, 5*time.Minute)
	// A notice about p1, newest of all: NoNotices leaves it out, and a page
	// is still full.
	notice := newAlarm("p1-notice", "p1", "break-glass", "g1", t0.Add(6*time.Minute))
	notice.RuleKind = alarm.KindNotice
	putAlarm(t, s, &notice)

	many := []string{"p1", "p3"}
	for i := range alarm.PerPatientScan + 5 { // above the per-patient strategy
		many = append(many, fmt.Sprintf("x%03d", i))
	}
	tests := []struct {
		name string
		f    alarm.Filter
		want []string
	}{
		{"two patients", alarm.Filter{Restrict: true, Patients: []string{"p1", "p3"}}, []string{"p1-notice", "p3-tie-b", "p1-new", "p3-a", "p1-old"}},
		{"two patients, limit", alarm.Filter{Restrict: true, Patients: []string{"p3", "p1"}, Limit: 2}, []string{"p1-notice", "p3-tie-b"}},
		{"no notices, limit", alarm.Filter{Restrict: true, Patients: []string{"p3", "p1"}, NoNotices: true, Limit: 2}, []string{"p3-tie-b", "p1-new"}},
		{"no notices, one patient", alarm.Filter{Patient: "p1", NoNotices: true}, []string{"p1-new", "p1-old"}},
		{"duplicates", alarm.Filter{Restrict: true, Patients: []string{"p2", "p2", "p2"}, Limit: 5}, []string{"p2-tie-a", "p2-a"}},
		{"tie order", alarm.Filter{Restrict: true, Patients: []string{"p2", "p3"}, Limit: 2}, []string{"p3-tie-b", "p2-tie-a"}},
		{"with states", alarm.Filter{Restrict: true, Patients: []string{"p1", "p3"}, States: []alarm.State{alarm.Active}, Limit: 10}, []string{"p1-notice", "p3-tie-b", "p1-new"}},
		{"no patient alarms", alarm.Filter{Restrict: true, Patients: []string{"", "p1"}, Limit: 3}, []string{"p1-notice", "sys", "p1-new"}},
		{"empty set matches none", alarm.Filter{Restrict: true}, []string{}},
		{"empty set with limit", alarm.Filter{Restrict: true, Patients: []string{}, Limit: 10}, []string{}},
		{"patient inside the set", alarm.Filter{Restrict: true, Patients: []string{"p1", "p2"}, Patient: "p2"}, []string{"p2-tie-a", "p2-a"}},
		{"patient outside the set", alarm.Filter{Restrict: true, Patients: []string{"p1"}, Patient: "p2"}, []string{}},
		{"unknown patients", alarm.Filter{Restrict: true, Patients: []string{"p8", "p9"}, Limit: 10}, []string{}},
		{"many patients", alarm.Filter{Restrict: true, Patients: many}, []string{"p1-notice", "p3-tie-b", "p1-new", "p3-a", "p1-old"}},
		{"many patients, limit", alarm.Filter{Restrict: true, Patients: many, Limit: 3}, []string{"p1-notice", "p3-tie-b", "p1-new"}},
		{"many patients, no notices", alarm.Filter{Restrict: true, Patients: many, NoNotices: true, Limit: 3}, []string{"p3-tie-b", "p1-new", "p3-a"}},
		{"many patients, states", alarm.Filter{Restrict: true, Patients: many, States: []alarm.State{alarm.Acknowledged, alarm.Resolved}, Limit: 5}, []string{"p3-a", "p1-old"}},
		{"not restricted ignores Patients", alarm.Filter{Patients: []string{"p1"}, Limit: 2}, []string{"p1-notice", "p3-tie-b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Alarms(ctx, tc.f)
			must(t, err, "Alarms")
			if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
				t.Errorf("Alarms(%+v) (-want +got):\n%s", tc.f, diff)
			}
		})
	}
}

// testAlarmsScopedPages: thousands of alarms of two organisations, the
// busier one's interleaved with (and mostly newer than) the other's; a
// scoped listing of either, at any page size, is the full newest-first
// prefix of its own alarms and nothing of the other's.
func testAlarmsScopedPages(t *testing.T, s alarm.Store) {
	ctx := t.Context()
	const (
		northPatients = 100 // above PerPatientScan: the organisation-wide strategy
		southPatients = 100
		total         = 3000
	)
	var north, south []string
	for i := range northPatients {
		north = append(north, fmt.Sprintf("north-%03d", i))
	}
	for i := range southPatients {
		south = append(south, fmt.Sprintf("south-%03d", i))
	}
	var all []alarm.Alarm
	update(t, s, "insert alarms", func(tx alarm.Tx) error {
		for i := range total {
			// One alarm in ten is north's; south's fill the newest end.
			patient := south[i%southPatients]
			if i%10 == 0 {
				patient = north[(i/10)%northPatients]
			}
			a := newAlarm(fmt.Sprintf("a%05d", i), patient, fmt.Sprintf("r%05d", i), "", t0.Add(time.Duration(i%1500)*time.Second))
			if i%3 == 0 {
				a.State = alarm.Resolved
			}
			if err := tx.PutAlarm(&a); err != nil {
				return err
			}
			all = append(all, a)
		}
		return nil
	})
	newestFirst := func(in []string, states []alarm.State) []string {
		var as []alarm.Alarm
		for _, a := range all {
			if slices.Contains(in, a.Patient) && (len(states) == 0 || slices.Contains(states, a.State)) {
				as = append(as, a)
			}
		}
		slices.SortFunc(as, func(a, b alarm.Alarm) int {
			if c := b.Raised.Compare(a.Raised); c != 0 {
				return c
			}
			return strings.Compare(b.ID, a.ID)
		})
		return ids(as)
	}
	team := []string{north[3], north[17], north[42], south[5]} // a care team may name another org's patient; the caller's set decides
	for _, tc := range []struct {
		name     string
		patients []string
		states   []alarm.State
	}{
		{"north", north, nil},
		{"south", south, nil},
		{"north open", north, []alarm.State{alarm.Active, alarm.Acknowledged}},
		{"care team", team[:3], nil},
		{"care team resolved", team[:3], []alarm.State{alarm.Resolved}},
	} {
		want := newestFirst(tc.patients, tc.states)
		for _, limit := range []int{1, 7, 100, 1000, 0} {
			t.Run(fmt.Sprintf("%s/limit=%d", tc.name, limit), func(t *testing.T) {
				got, err := s.Alarms(ctx, alarm.Filter{Restrict: true, Patients: tc.patients, States: tc.states, Limit: limit})
				must(t, err, "Alarms")
				w := want
				if limit > 0 && len(w) > limit {
					w = w[:limit]
				}
				if diff := cmp.Diff(w, ids(got)); diff != "" {
					t.Errorf("page (-want +got):\n%s", diff)
				}
				for _, a := range got {
					if !slices.Contains(tc.patients, a.Patient) {
						t.Fatalf("alarm %s of %s leaked into a listing of %v", a.ID, a.Patient, tc.patients[:1])
					}
				}
			})
		}
	}
}
