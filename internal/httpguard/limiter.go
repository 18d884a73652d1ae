package httpguard

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// Limit is one budget per client: a token bucket of Rate requests per
// second with room for Burst, and at most Concurrency requests at once.
// Zero Rate or Concurrency turns that part off.
type Limit struct {
	Rate        float64
	Burst       int
	Concurrency int
}

func (l Limit) on() bool { return l.Rate > 0 || l.Concurrency > 0 }

type bucket struct {
	tokens   float64
	last     time.Time
	inflight int
}

// limiter keeps a bucket per client. Its size is bounded: when full, idle
// clients are dropped, and if that frees nothing the newcomer shares one
// overflow bucket, so that an address sweep cannot grow memory without end
// nor escape limits.
type limiter struct {
	limit      Limit
	maxClients int

	mu        sync.Mutex
	clients   map[netip.Addr]*bucket
	overflow  bucket
	lastSweep time.Time
}

// sweepEvery is how often idle clients are forgotten even when the table
// is not full, to keep it small.
const sweepEvery = time.Minute

func newLimiter(l Limit, maxClients int) *limiter {
	if l.Burst < 1 {
		l.Burst = max(1, int(math.Ceil(l.Rate)))
	}
	return &limiter{limit: l, maxClients: maxClients, clients: make(map[netip.Addr]*bucket)}
}

// acquire takes one token and, with slot, one concurrency slot that
// release gives back. When refused it says how long to wait before a retry
// can succeed.
func (l *limiter) acquire(key netip.Addr, now time.Time, slot bool) (ok bool, retry time.Duration, release func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	b := l.clients[key]
	if b == nil {
		if len(l.clients) >= l.maxClients {
			l.sweep(now)
		}
		if len(l.clients) >= l.maxClients {
			b = &l.overflow
		} else {
			b = &bucket{tokens: float64(l.limit.Burst), last: now}
			l.clients[key] = b
		}
	}
	if slot && l.limit.Concurrency > 0 && b.inflight >= l.limit.Concurrency {
		return false, time.Second, nil
	}
	if l.limit.Rate > 0 {
		if el := now.Sub(b.last); el > 0 {
			b.tokens = min(float64(l.limit.Burst), b.tokens+el.Seconds()*l.limit.Rate)
		}
		b.last = now
		if b.tokens < 1 {
			return false, time.Duration((1 - b.tokens) / l.limit.Rate * float64(time.Second)), nil
		}
		b.tokens--
	}
	if !slot {
		return true, 0, func() {}
	}
	b.inflight++
	var once sync.Once
	return true, 0, func() {
		once.Do(func() {
			l.mu.Lock()
			b.inflight--
			l.mu.Unlock()
		})
	}
}

// sweep drops clients with nothing in flight whose bucket has refilled:
// forgetting them changes nothing.
func (l *limiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.clients {
		if b.inflight > 0 {
			continue
		}
		if l.limit.Rate > 0 && b.tokens+now.Sub(b.last).Seconds()*l.limit.Rate < float64(l.limit.Burst) {
			continue
		}
		delete(l.clients, k)
	}
}

// size is the number of tracked clients (tests).
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
