package inbound

import "sync"

// cacheLimit bounds each lookup cache; when full it starts over, which
// costs a few store look-ups and never a wrong answer.
const cacheLimit = 100_000

// cache maps an outside identifier to a Tend id.
type cache struct {
	mu sync.RWMutex
	m  map[string]string
}

func (c *cache) get(k string) (string, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *cache) put(k, v string) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= cacheLimit {
		c.m = make(map[string]string)
	}
	c.m[k] = v
	c.mu.Unlock()
}

// forget drops every entry (after a registry change that may move them).
func (c *cache) forget() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}

// recentLimit is how many acknowledged messages are remembered for
// duplicate detection; older resends are still stored once, by the store's
// reading key, and acknowledged again.
const recentLimit = 16_384

// recent remembers the keys of the last acknowledged messages.
type recent struct {
	mu   sync.Mutex
	set  map[[32]byte]struct{}
	ring [][32]byte
	next int
}

func (r *recent) has(k [32]byte) bool {
	r.mu.Lock()
	_, ok := r.set[k]
	r.mu.Unlock()
	return ok
}

func (r *recent) add(k [32]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = make(map[[32]byte]struct{}, recentLimit)
		r.ring = make([][32]byte, recentLimit)
	}
	if _, ok := r.set[k]; ok {
		return
	}
	old := r.ring[r.next]
	delete(r.set, old)
	r.ring[r.next] = k
	r.set[k] = struct{}{}
	r.next = (r.next + 1) % recentLimit
}
