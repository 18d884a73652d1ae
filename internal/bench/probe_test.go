package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAppendBP(t *testing.T) {
	at := time.Date(2026, 11, 23, 20, 0, 0, 123_900_000, time.UTC)
	got := appendBP(nil, probeLowSystolic(3), probeDiastolic, at)
	var recs []senmlRecord
	if err := json.Unmarshal(got, &recs); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	if len(recs) != 2 || recs[0].N != "8480-6" || recs[1].N != "8462-4" ||
		recs[0].U != "mm[Hg]" || recs[1].U != "mm[Hg]" || *recs[0].V != 83 || *recs[1].V != 50 {
		t.Fatalf("records %s", got)
	}
	// Same time on both (so they merge into one panel), 1 ms after the clock.
	if recs[0].T != recs[1].T || fmt.Sprintf("%.3f", recs[0].T) != "1795464000.124" {
		t.Errorf("times %.3f and %.3f, want both 1795464000.124", recs[0].T, recs[1].T)
	}
	for n := range 20 {
		if v := probeLowSystolic(n); v >= 90 || v < 80 {
			t.Errorf("raise %d: systolic %d does not trip sbp-low (< 90)", n, v)
		}
	}
	if probeNormalSys < 95 {
		t.Errorf("normal systolic %d is below the rule's clear level 95", probeNormalSys)
	}
}

func change(action, patient, rule string, value float64) alarmChange {
	var c alarmChange
	c.Action, c.Alarm.Patient, c.Alarm.Rule, c.Alarm.Value = action, patient, rule, value
	return c
}

func TestProbeBook(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)
	win := window{from: t0.Add(10 * time.Second), to: t0.Add(70 * time.Second)}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	type step struct {
		expect  string // patient whose raise is sent (value, at)
		value   float64
		at      time.Time
		observe *alarmChange
		giveUp  string
		failed  bool
	}
	obs := func(c alarmChange) *alarmChange { return &c }
	tests := []struct {
		name  string
		steps []step
		want  string // sent seen missed late unexpected resolved p50 p99 others
	}{
		{"raise seen in the window",
			[]step{
				{expect: "p1", value: 80, at: ms(20_000)},
				{observe: obs(change("raised", "p1", "sbp-low", 80)), at: ms(20_012)},
				{observe: obs(change("resolved", "p1", "sbp-low", 80)), at: ms(21_010)},
			}, "1 1 0 0 0 1 12ms 12ms map[]"},
		{"warmup raise is matched but not timed",
			[]step{
				{expect: "p1", value: 80, at: ms(5_000)},
				{observe: obs(change("raised", "p1", "sbp-low", 80)), at: ms(5_030)},
			}, "0 0 0 0 0 0 0s 0s map[]"},
		{"other rules of a probe and other patients",
			[]step{
				{expect: "p1", value: 81, at: ms(20_000)},
				{observe: obs(change("raised", "p1", "news2", 3)), at: ms(20_001)},
				{observe: obs(change("raised", "bg7", "news2", 5)), at: ms(20_002)},
				{observe: obs(change("raised", "", "ingest-backlog", 0)), at: ms(20_002)},
				{observe: obs(change("raised", "p1", "sbp-low", 81)), at: ms(20_040)},
			}, "1 1 0 0 0 0 40ms 40ms map[ingest-backlog:1 news2:1]"},
		{"wrong value is not the awaited raise",
			[]step{
				{expect: "p1", value: 82, at: ms(20_000)},
				{observe: obs(change("raised", "p1", "sbp-low", 80)), at: ms(20_010)},
				{giveUp: "p1"},
			}, "1 0 1 0 1 0 0s 0s map[]"},
		{"missed, then seen late",
			[]step{
				{expect: "p1", value: 83, at: ms(20_000)},
				{giveUp: "p1"},
				{observe: obs(change("raised", "p1", "sbp-low", 83)), at: ms(31_000)},
			}, "1 0 1 1 0 0 0s 0s map[]"},
		{"a failed send is withdrawn",
			[]step{
				{expect: "p1", value: 80, at: ms(20_000)},
				{giveUp: "p1", failed: true},
			}, "0 0 0 0 0 0 0s 0s map[]"},
		{"give up after seen does nothing",
			[]step{
				{expect: "p2", value: 84, at: ms(20_000)},
				{observe: obs(change("raised", "p2", "sbp-low", 84)), at: ms(20_100)},
				{giveUp: "p2"},
			}, "1 1 0 0 0 0 100ms 100ms map[]"},
		{"two probes, percentiles",
			[]step{
				{expect: "p1", value: 80, at: ms(20_000)},
				{expect: "p2", value: 80, at: ms(20_000)},
				{observe: obs(change("raised", "p2", "sbp-low", 80)), at: ms(20_005)},
				{observe: obs(change("raised", "p1", "sbp-low", 80)), at: ms(20_050)},
				{observe: obs(change("raised", "p1", "sbp-low", 80)), at: ms(20_060)}, // duplicate
			}, "2 2 0 0 1 0 5ms 50ms map[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newProbeBook(win, []string{"p1", "p2"})
			waits := map[string]<-chan struct{}{}
			for _, s := range tt.steps {
				switch {
				case s.expect != "":
					waits[s.expect] = b.expect(s.expect, s.value, s.at)
				case s.observe != nil:
					b.observe(*s.observe, s.at)
				case s.giveUp != "":
					b.giveUp(s.giveUp, s.failed)
				}
			}
			s := b.summary()
			got := fmt.Sprintf("%d %d %d %d %d %d %v %v %v", s.sent, s.seen, s.missed, s.late, s.unexpected, s.resolved, s.p50, s.p99, s.others)
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			// Every wait ends once its raise was seen or given up.
			for p, c := range waits {
				select {
				case <-c:
				default:
					if s.seen+s.missed > 0 {
						b.mu.Lock()
						waiting := b.probes[p].waiting
						b.mu.Unlock()
						if !waiting {
							t.Errorf("%s: raise no longer awaited but its channel is open", p)
						}
					}
				}
			}
		})
	}
}

// TestProbeBookOnCapturedStream replays the alarm events of a captured
// stream: both probes' sbp-low raises (systolic 80) are matched, the NEWS2
// alarms the same readings raised are not.
func TestProbeBookOnCapturedStream(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "live_stream.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evs, err := readAllEvents(t, f)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 23, 20, 29, 4, 0, time.UTC)
	b := newProbeBook(window{from: t0, to: t0.Add(time.Minute)}, nil)
	b.expect("260a547764b8b805", 80, t0)
	b.expect("3b6a4c359504973a", 80, t0)
	for _, ev := range evs {
		if ev.Type != "alarm" {
			continue
		}
		c, err := parseAlarmChange(ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		b.observe(c, c.Alarm.Raised.Add(time.Millisecond))
	}
	s := b.summary()
	if s.sent != 2 || s.seen != 2 || s.missed != 0 || s.unexpected != 0 || s.resolved != 1 || len(s.others) != 0 {
		t.Errorf("summary %+v", s)
	}
	// Latency = raise commit time (+1 ms) minus t0 for each probe.
	if s.p50.Round(time.Millisecond) != 282*time.Millisecond || s.p99.Round(time.Millisecond) != 823*time.Millisecond {
		t.Errorf("p50 %v p99 %v, want 282ms and 823ms (rounded)", s.p50, s.p99)
	}
}
