package bench

import (
	"slices"
	"strconv"
	"sync"
	"time"
)

// probeRule is the ward default rule the probes trip: systolic < 90 mmHg,
// no duration, medium priority, not latching, so a normal reading resolves
// the episode and the next low one raises a new one.
const probeRule = "sbp-low"

// Probe blood pressures. The raising systolic varies (80–88) so that an
// alarm event can be matched to the exact reading that raised it; 120 is
// above the rule's clear level (95).
const (
	probeLowBase    = 80
	probeLowSpread  = 9
	probeDiastolic  = 50
	probeNormalSys  = 120
	probeNormalDias = 80
)

// probeLowSystolic is the systolic value of a probe's n-th raise.
func probeLowSystolic(n int) int { return probeLowBase + n%probeLowSpread }

// appendBP appends a SenML pack of one blood pressure, systolic and
// diastolic with the same time so the server merges them into one panel.
func appendBP(dst []byte, systolic, diastolic int, at time.Time) []byte {
	// +1 ms: never before the device's binding (see generator.Append).
	ms := at.UnixMilli() + 1
	dst = append(dst, `[{"n":"8480-6","u":"mm[Hg]","v":`...)
	dst = strconv.AppendInt(dst, int64(systolic), 10)
	dst = append(dst, `,"t":`...)
	dst = appendMillis(dst, ms)
	dst = append(dst, `},{"n":"8462-4","u":"mm[Hg]","v":`...)
	dst = strconv.AppendInt(dst, int64(diastolic), 10)
	dst = append(dst, `,"t":`...)
	dst = appendMillis(dst, ms)
	return append(dst, "}]"...)
}

// probeBook matches `raised` alarm events from the live stream to the
// probe readings that should have raised them. Each probe patient has at
// most one outstanding raise. Safe for concurrent use.
type probeBook struct {
	win window // raises sent inside it count towards the latencies

	mu         sync.Mutex
	probes     map[string]*probeState // by patient id
	latencies  []int64                // ns, raises sent in the window and seen
	sent       int64                  // raises sent in the window
	seen       int64                  // of those, seen on the stream in time
	missed     int64                  // raises (any phase) never seen in time
	late       int64                  // seen only after they were given up
	unexpected int64                  // probe-rule raises nobody was waiting for
	resolved   int64                  // probe-rule episodes resolved
	others     map[string]int64       // raises on other patients, by rule
}

type probeState struct {
	waiting  bool
	sentAt   time.Time
	value    float64
	inWindow bool
	gaveUp   []float64 // values of raises given up, to recognise late events
	seen     chan struct{}
}

func newProbeBook(win window, patients []string) *probeBook {
	b := &probeBook{win: win, probes: map[string]*probeState{}, others: map[string]int64{}}
	for _, p := range patients {
		b.probes[p] = &probeState{}
	}
	return b
}

// expect records that patient's raising reading with systolic value is
// about to be sent at sentAt. The returned channel is closed when its alarm
// event arrives. Call it before sending, so a quick event is not missed.
func (b *probeBook) expect(patient string, value float64, sentAt time.Time) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.probes[patient]
	if p == nil {
		p = &probeState{}
		b.probes[patient] = p
	}
	p.waiting, p.sentAt, p.value = true, sentAt, value
	p.inWindow = b.win.contains(sentAt)
	p.seen = make(chan struct{})
	if p.inWindow {
		b.sent++
	}
	return p.seen
}

// giveUp ends the wait for patient's outstanding raise: it was missed
// unless it was seen meanwhile. A raise whose reading could not be sent is
// withdrawn instead (sendFailed), since no alarm was due.
func (b *probeBook) giveUp(patient string, sendFailed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.probes[patient]
	if p == nil || !p.waiting {
		return
	}
	p.waiting = false
	close(p.seen)
	switch {
	case sendFailed:
		if p.inWindow {
			b.sent--
		}
	default:
		b.missed++
		p.gaveUp = append(p.gaveUp, p.value)
	}
}

// observe takes one alarm change from the stream, received at at.
func (b *probeBook) observe(c alarmChange, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.probes[c.Alarm.Patient]
	if p == nil {
		if c.Action == "raised" {
			b.others[c.Alarm.Rule]++
		}
		return
	}
	if c.Alarm.Rule != probeRule {
		return // e.g. the NEWS2 single-parameter alarm a systolic < 91 also raises
	}
	switch c.Action {
	case "resolved":
		b.resolved++
		return
	case "raised":
	default:
		return
	}
	if !p.waiting || c.Alarm.Value != p.value {
		if i := slices.Index(p.gaveUp, c.Alarm.Value); i >= 0 {
			p.gaveUp = slices.Delete(p.gaveUp, i, i+1)
			b.late++
			return
		}
		b.unexpected++
		return
	}
	p.waiting = false
	close(p.seen)
	if p.inWindow {
		b.seen++
		b.latencies = append(b.latencies, int64(at.Sub(p.sentAt)))
	}
}

// probeSummary is what the book counted.
type probeSummary struct {
	sent, seen, missed, late, unexpected, resolved int64
	p50, p99, max                                  time.Duration
	others                                         map[string]int64
}

func (b *probeBook) summary() probeSummary {
	b.mu.Lock()
	defer b.mu.Unlock()
	lat := slices.Clone(b.latencies)
	slices.Sort(lat)
	s := probeSummary{sent: b.sent, seen: b.seen, missed: b.missed, late: b.late, unexpected: b.unexpected,
		resolved: b.resolved, p50: percentile(lat, 0.50), p99: percentile(lat, 0.99), others: map[string]int64{}}
	if len(lat) > 0 {
		s.max = time.Duration(lat[len(lat)-1])
	}
	for k, v := range b.others {
		s.others[k] = v
	}
	return s
}
