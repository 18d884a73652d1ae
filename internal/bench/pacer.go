package bench

import (
	"sync"
	"time"
)

// pacer is a token bucket for one device: it hands out send times spaced
// interval apart and lets a device that fell behind catch up by at most
// burst, so a stall is not followed by an unbounded flood. Safe for
// concurrent use (the HTTP workers of a device share one).
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	burst    time.Duration
	next     time.Time
}

// newPacer returns nil when msgsPerSec is 0 (unpaced).
func newPacer(msgsPerSec float64, start time.Time) *pacer {
	if msgsPerSec <= 0 {
		return nil
	}
	iv := time.Duration(float64(time.Second) / msgsPerSec)
	if iv <= 0 {
		iv = 1
	}
	return &pacer{interval: iv, burst: max(iv, 20*time.Millisecond), next: start}
}

// reserve returns when the caller may send its next message.
func (p *pacer) reserve(now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if floor := now.Add(-p.burst); p.next.Before(floor) {
		p.next = floor
	}
	at := p.next
	p.next = p.next.Add(p.interval)
	return at
}

// wait blocks until the next send time or until stop is closed; it reports
// false when stopped. A nil pacer never waits.
func (p *pacer) wait(now func() time.Time, timer *time.Timer, stop <-chan struct{}) bool {
	if p == nil {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	d := p.reserve(now()).Sub(now())
	if d <= 0 {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	timer.Reset(d)
	select {
	case <-timer.C:
		return true
	case <-stop:
		timer.Stop()
		return false
	}
}
