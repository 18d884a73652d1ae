package bench

import (
	"slices"
	"time"
)

// percentile returns the nearest-rank p-quantile (0 < p <= 1) of sorted
// latencies in nanoseconds; 0 when there are none.
func percentile(sorted []int64, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(p*float64(n) + 0.999999999) // ceil without float noise at exact ranks
	rank = min(max(rank, 1), n)
	return time.Duration(sorted[rank-1])
}

// tally is what one sender goroutine counted. It is owned by that goroutine
// until the load ends, so recording needs no locks.
type tally struct {
	latencies     []int64 // ns, messages sent inside the measured window
	ackedInWindow int64   // readings acked inside the window
	ackedTotal    int64   // readings acked at any time
	errors        int64
	firstErr      error
}

func (t *tally) fail(err error) {
	t.errors++
	if t.firstErr == nil {
		t.firstErr = err
	}
}

// window is the measured interval [from, to).
type window struct{ from, to time.Time }

func (w window) contains(t time.Time) bool { return !t.Before(w.from) && t.Before(w.to) }

// ack records one acknowledged message of n readings.
func (t *tally) ack(w window, sent, acked time.Time, n int) {
	t.ackedTotal += int64(n)
	if w.contains(acked) {
		t.ackedInWindow += int64(n)
	}
	if w.contains(sent) {
		t.latencies = append(t.latencies, int64(acked.Sub(sent)))
	}
}

// summary merges tallies into rate and latency figures.
type summary struct {
	acked, ackedTotal, errors int64
	rate                      float64
	p50, p99, max             time.Duration
	firstErr                  error
}

func summarise(ts []*tally, measured time.Duration) summary {
	var s summary
	n := 0
	for _, t := range ts {
		n += len(t.latencies)
	}
	all := make([]int64, 0, n)
	for _, t := range ts {
		s.acked += t.ackedInWindow
		s.ackedTotal += t.ackedTotal
		s.errors += t.errors
		if s.firstErr == nil {
			s.firstErr = t.firstErr
		}
		all = append(all, t.latencies...)
	}
	slices.Sort(all)
	s.p50, s.p99 = percentile(all, 0.50), percentile(all, 0.99)
	if len(all) > 0 {
		s.max = time.Duration(all[len(all)-1])
	}
	if measured > 0 {
		s.rate = float64(s.acked) / measured.Seconds()
	}
	return s
}
