package web

import (
	"net/url"
	"testing"
	"time"
)

func TestParseAuditSearch(t *testing.T) {
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	for _, tc := range []struct {
		query      string
		from, to   time.Time
		after      int64
		patient    string
		badProblem bool
	}{
		{"", day("2026-11-22"), time.Time{}, 0, "", false}, // the last day by default
		{"from=", time.Time{}, time.Time{}, 0, "", false},  // from the first record
		{"from=2026-11-01&to=2026-11-02&after=17&patient=+p1+", day("2026-11-01"), day("2026-11-03"), 17, "p1", false},
		{"from=01/11/2026", time.Time{}, time.Time{}, 0, "", true},
		{"to=tomorrow", time.Time{}, time.Time{}, 0, "", true},
		{"action=read&outcome=failure&from=", time.Time{}, time.Time{}, 0, "", false},
		{"action=drop", time.Time{}, time.Time{}, 0, "", true},
		{"outcome=partial", time.Time{}, time.Time{}, 0, "", true},
		{"after=x", time.Time{}, time.Time{}, 0, "", true},
		{"after=-1", time.Time{}, time.Time{}, 0, "", true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			v, _ := url.ParseQuery(tc.query)
			_, q, problem := parseAuditSearch(v, now)
			if (problem != "") != tc.badProblem {
				t.Fatalf("problem %q, want one: %v", problem, tc.badProblem)
			}
			if tc.badProblem {
				return
			}
			if !q.From.Equal(tc.from) || !q.To.Equal(tc.to) || q.AfterSeq != tc.after || q.Patient != tc.patient {
				t.Errorf("query %+v", q)
			}
		})
	}
}

// FuzzParseAuditSearch: any query string gives either a problem to show
// or a query whose range and cursor make sense; it never panics.
func FuzzParseAuditSearch(f *testing.F) {
	for _, s := range []string{"", "from=", "from=2026-11-01&to=2026-11-02&after=17", "action=read&outcome=failure", "after=-1", "to=9999-12-31"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		fl, q, problem := parseAuditSearch(v, now)
		if problem != "" {
			return
		}
		if q.AfterSeq < 0 {
			t.Errorf("negative cursor %d", q.AfterSeq)
		}
		if fl.Action != "" && !contains(auditActions, fl.Action) {
			t.Errorf("unknown action %q accepted", fl.Action)
		}
		if fl.Outcome != "" && fl.Outcome != "success" && fl.Outcome != "failure" {
			t.Errorf("unknown outcome %q accepted", fl.Outcome)
		}
		if !q.To.IsZero() && q.To.Sub(q.To.Truncate(24*time.Hour)) != 0 {
			t.Errorf("end %v is not the start of a day", q.To)
		}
	})
}
