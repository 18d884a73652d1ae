package evaluator

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/stream"
)

type harness struct {
	t      *testing.T
	dir    string
	stream *stream.Stream
	db     *alarmdb.DB
	seq    int
	t0     time.Time
}

func newHarness(t *testing.T) *harness {
	dir := t.TempDir()
	st := stream.New(stream.Config{Dir: filepath.Join(dir, "stream")})
	if err := st.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := alarmdb.Open(filepath.Join(dir, "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &harness{t: t, dir: dir, stream: st, db: db, t0: time.Now().UTC().Truncate(time.Second)}
}

// start runs an evaluator until the returned cancel; cancelling without
// Close is a crash: no final snapshot.
func (h *harness) start(snapshotEvery time.Duration) (*Evaluator, context.CancelFunc) {
	return h.startLeased(snapshotEvery, false)
}

// startLeased is start for an evaluator that holds only the parts given
// to it by Acquire when leased.
func (h *harness) startLeased(snapshotEvery time.Duration, leased bool) (*Evaluator, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	profiles := &alarm.Profiles{Store: h.db}
	svc := alarm.NewService(alarm.Config{Store: h.db, Escalation: profiles.Escalation})
	e := &Evaluator{Stream: h.stream, Store: h.db, Alarms: svc, Profiles: profiles, SnapshotEvery: snapshotEvery, TickEvery: time.Hour, Leased: leased}
	if err := e.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	return e, cancel
}

func (h *harness) publish(patient string, offset time.Duration, spo2 float64) {
	h.seq++
	at := h.t0.Add(offset)
	r := reading.Reading{Patient: patient, Device: "ox-" + patient, Code: codes.OxygenSaturation, Value: spo2, HasValue: true,
		Unit: "%", Time: at, Received: at, Source: "test"}
	if err := h.stream.Publish(context.Background(), stream.DefaultSubject, reading.EncodeBatch([]reading.Reading{r}), fmt.Sprint("m", h.seq)); err != nil {
		h.t.Fatal(err)
	}
}

// waitFor polls the alarm store until cond holds; the deadline only bounds
// a failing test.
func (h *harness) waitFor(what string, cond func([]alarm.Alarm) bool) []alarm.Alarm {
	deadline := time.Now().Add(20 * time.Second)
	for {
		as, err := h.db.Alarms(context.Background(), alarm.Filter{Limit: 1000})
		if err != nil {
			h.t.Fatal(err)
		}
		if cond(as) {
			return as
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; alarms: %+v", what, as)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clearedOnceRaised waits until p1's spo2-critical condition has cleared
// and checks it was one episode, raised once.
func (h *harness) clearedOnceRaised() {
	h.t.Helper()
	as := h.waitFor("condition cleared", func(as []alarm.Alarm) bool {
		for _, a := range as {
			if a.Rule == "spo2-critical" && !a.Condition {
				return true
			}
		}
		return false
	})
	if n := count(as, "spo2-critical", ""); n != 1 {
		h.t.Fatalf("spo2-critical episodes = %d, want 1", n)
	}
	hist, err := h.db.History(context.Background(), as[0].ID)
	if err != nil {
		h.t.Fatal(err)
	}
	raised := 0
	for _, c := range hist {
		if c.Action == "raised" {
			raised++
		}
	}
	if raised != 1 {
		h.t.Fatalf("raised %d times in history %+v", raised, hist)
	}
}

func count(as []alarm.Alarm, rule string, state alarm.State) int {
	n := 0
	for _, a := range as {
		if a.Rule == rule && (state == "" || a.State == state) {
			n++
		}
	}
	return n
}

// A crash (no final snapshot) and restart replays the stream: the engine
// state is rebuilt, and the alarm raised before the crash is neither raised
// again nor forgotten (its condition still clears).
func TestCrashReplayRaisesOnce(t *testing.T) {
	for _, snap := range []time.Duration{time.Hour, time.Millisecond} {
		t.Run(fmt.Sprint("snapshot every ", snap), func(t *testing.T) {
			h := newHarness(t)
			_, crash := h.start(snap)
			h.publish("p1", 0, 84)
			h.publish("p1", 30*time.Second, 83) // spo2-critical: < 85 for 30 s
			h.waitFor("spo2-critical raised", func(as []alarm.Alarm) bool { return count(as, "spo2-critical", alarm.Active) == 1 })
			crash()
			time.Sleep(50 * time.Millisecond) // let the consumer goroutine wind down; not an assertion

			e, stop := h.start(snap)
			defer stop()
			h.publish("p1", 40*time.Second, 82)
			h.publish("p1", 50*time.Second, 95) // clears: latched (high), stays active with condition off
			h.clearedOnceRaised()
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			cp, err := h.db.Checkpoint(context.Background(), PartName(PartitionOf("p1")))
			if err != nil {
				t.Fatal(err)
			}
			if cp.Applied != 4 || cp.SnapSeq != 4 || cp.Snapshot == nil {
				t.Fatalf("checkpoint after Close = applied %d, snapshot at %d (%d bytes); want 4, 4, some", cp.Applied, cp.SnapSeq, len(cp.Snapshot))
			}
		})
	}
}

// Evaluation running far behind ingest raises the system's ingest-backlog
// alarm (no patient; supervisors are told) and clears it once caught up.
func TestBacklogAlarm(t *testing.T) {
	h := newHarness(t)
	_, stop := h.start(time.Hour)
	defer stop()
	old := reading.Reading{Patient: "p1", Device: "ox", Code: codes.OxygenSaturation, Value: 97, HasValue: true, Unit: "%",
		Time: time.Now().Add(-2 * time.Minute), Received: time.Now().Add(-time.Minute), Source: "test"}
	if err := h.stream.Publish(context.Background(), stream.DefaultSubject, reading.EncodeBatch([]reading.Reading{old}), "old"); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the backlog alarm", func(as []alarm.Alarm) bool { return count(as, backlogRule, alarm.Active) == 1 })
	fresh := old
	fresh.Time, fresh.Received = time.Now(), time.Now()
	if err := h.stream.Publish(context.Background(), stream.DefaultSubject, reading.EncodeBatch([]reading.Reading{fresh}), "fresh"); err != nil {
		t.Fatal(err)
	}
	as := h.waitFor("the backlog alarm to resolve", func(as []alarm.Alarm) bool { return count(as, backlogRule, alarm.Resolved) == 1 })
	for _, a := range as {
		if a.Rule == backlogRule && (a.Patient != "" || a.Kind != "technical") {
			t.Errorf("backlog alarm %+v: want a technical alarm without patient", a)
		}
	}
}

// A part moves between nodes, handed over cleanly (Release then Acquire)
// or after a crash (Acquire only): the new holder restores it from its
// checkpoint, and the alarm raised by the old one is neither raised again
// nor forgotten.
func TestPartitionMovesBetweenEvaluators(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprint("crash=", crash), func(t *testing.T) {
			h := newHarness(t)
			a, stopA := h.startLeased(time.Millisecond, true)
			b, stopB := h.startLeased(time.Millisecond, true)
			defer stopB()
			name := PartName(PartitionOf("p1"))
			a.Acquire(name)
			h.publish("p1", 0, 84)
			h.publish("p1", 30*time.Second, 83)
			h.waitFor("spo2-critical raised", func(as []alarm.Alarm) bool { return count(as, "spo2-critical", alarm.Active) == 1 })
			h.publish("p1", 40*time.Second, 82) // evaluated by a, no new event
			if crash {
				stopA()
			} else {
				a.Release(name)
				stopA()
			}
			b.Acquire(name)
			h.publish("p1", 50*time.Second, 95)
			h.clearedOnceRaised()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			floor, err := b.Floor(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if floor != 0 {
				t.Errorf("stream floor = %d with parts never snapshotted, want 0", floor)
			}
		})
	}
}

// A part held by nobody here is not evaluated at all.
func TestUnheldPartIsNotEvaluated(t *testing.T) {
	h := newHarness(t)
	e, stop := h.startLeased(time.Hour, true)
	defer stop()
	other := "x0"
	for i := 1; PartitionOf(other) == PartitionOf("p1"); i++ {
		other = fmt.Sprint("x", i)
	}
	e.Acquire(PartName(PartitionOf(other)))
	h.publish("p1", 0, 84)
	h.publish("p1", 30*time.Second, 83)
	h.publish(other, 0, 84)
	h.publish(other, 30*time.Second, 83)
	as := h.waitFor("the held part's alarm", func(as []alarm.Alarm) bool { return count(as, "spo2-critical", alarm.Active) == 1 })
	for _, a := range as {
		if a.Patient == "p1" {
			t.Fatalf("p1's part is not held but p1 has alarm %+v", a)
		}
	}
}
