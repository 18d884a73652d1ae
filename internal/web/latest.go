package web

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// latestIdle is how long the cache of latest values is kept, and its live
// subscription held, after the last page that used it.
const latestIdle = 5 * time.Minute

// latestCache keeps every shown patient's newest reading per code, current
// from the live hub, so the overview of a whole ward costs no query per
// patient (Store.Latest is one query per series, about 1 ms a patient on
// SQLite). It exists only while the dashboard is in use: its subscription
// makes the node encode every reading for the hub, which costs when
// nobody looks. A subscription the hub drops (it fell behind) empties the
// cache, so nothing stale is ever served from it.
type latestCache struct {
	hub   *live.Hub
	store store.Store
	now   func() time.Time

	mu      sync.Mutex
	sub     *live.Subscription
	byID    map[string]*cached
	lastUse time.Time
}

// cached is one patient's latest values. Live readings are applied from
// the moment it exists, also while the store is still being read, so a
// reading stored and published during that read is not lost.
type cached struct {
	m     map[string]reading.Reading
	ready chan struct{} // closed once the store's values are merged in
	err   error
}

// latest returns the patient's newest reading per code. Without a hub it
// reads the store every time.
func (c *latestCache) latest(ctx context.Context, patient string) (map[string]reading.Reading, error) {
	if c.hub == nil {
		return c.load(ctx, patient)
	}
	c.mu.Lock()
	c.lastUse = c.now()
	if c.sub == nil {
		// Subscribe before loading anything, so no reading stored after
		// a load can be missed.
		c.sub = c.hub.SubscribeTypes([]string{live.TypeReading}, nil)
		c.byID = map[string]*cached{}
		go c.follow(c.sub)
	}
	e, ok := c.byID[patient]
	if !ok {
		e = &cached{m: map[string]reading.Reading{}, ready: make(chan struct{})}
		c.byID[patient] = e
		c.mu.Unlock()
		m, err := c.load(ctx, patient)
		c.mu.Lock()
		if err != nil {
			e.err = err
			if c.byID[patient] == e {
				delete(c.byID, patient)
			}
		}
		for code, rd := range m {
			if have, ok := e.m[code]; !ok || rd.Time.After(have.Time) {
				e.m[code] = rd
			}
		}
		close(e.ready)
	} else {
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	if e.err != nil {
		return nil, e.err
	}
	out := make(map[string]reading.Reading, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out, nil
}

func (c *latestCache) load(ctx context.Context, patient string) (map[string]reading.Reading, error) {
	ss, err := c.store.Latest(ctx, patient)
	if err != nil {
		return nil, fmt.Errorf("latest readings: %w", err)
	}
	m := make(map[string]reading.Reading, len(ss))
	for _, s := range ss {
		m[s.Code] = s.Reading
	}
	return m, nil
}

// follow applies live readings to the patients already cached until the
// subscription ends or the cache has been idle for latestIdle.
func (c *latestCache) follow(sub *live.Subscription) {
	idle := time.NewTicker(time.Minute)
	defer idle.Stop()
	defer func() {
		c.mu.Lock()
		if c.sub == sub {
			c.sub, c.byID = nil, nil
		}
		c.mu.Unlock()
		sub.Close()
	}()
	for {
		select {
		case ev, ok := <-sub.C():
			if !ok {
				return
			}
			var rd reading.Reading
			if json.Unmarshal(ev.Data, &rd) != nil {
				continue
			}
			c.mu.Lock()
			if e := c.byID[rd.Patient]; e != nil {
				if have, ok := e.m[rd.Code]; !ok || !have.Time.After(rd.Time) {
					e.m[rd.Code] = rd
				}
			}
			c.mu.Unlock()
		case <-idle.C:
			c.mu.Lock()
			done := c.now().Sub(c.lastUse) > latestIdle
			c.mu.Unlock()
			if done {
				return
			}
		}
	}
}

// close drops the cache and its subscription.
func (c *latestCache) close() {
	c.mu.Lock()
	sub := c.sub
	c.sub, c.byID = nil, nil
	c.mu.Unlock()
	if sub != nil {
		sub.Close()
	}
}

// patientsTTL is how long the list of patients is reused: listing reads
// every patient's identifiers, and a ward's page is asked for often. A
// new patient shows up within it.
const patientsTTL = 10 * time.Second

// patientList caches each organisation's list of patients for
// patientsTTL; the short lists of a care team or a consent are read
// fresh, so a new grant shows at once.
type patientList struct {
	store store.Store
	now   func() time.Time

	mu    sync.Mutex
	byOrg map[string]cachedPatients
}

type cachedPatients struct {
	list    []store.Patient
	fetched time.Time
}

// get lists the patients f selects (a scope's filter), at most maxWardPatients.
func (l *patientList) get(ctx context.Context, f store.PatientFilter) ([]store.Patient, error) {
	f.Limit, f.Offset = maxWardPatients, 0
	if f.Restrict {
		ps, _, err := l.store.SearchPatients(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("list patients: %w", err)
		}
		return ps, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if c, ok := l.byOrg[f.Org]; ok && now.Sub(c.fetched) < patientsTTL && !now.Before(c.fetched) {
		return c.list, nil
	}
	ps, _, err := l.store.SearchPatients(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list patients: %w", err)
	}
	if l.byOrg == nil {
		l.byOrg = map[string]cachedPatients{}
	}
	l.byOrg[f.Org] = cachedPatients{list: ps, fetched: now}
	return ps, nil
}

// forget drops the lists (after this node changed them).
func (l *patientList) forget() {
	l.mu.Lock()
	l.byOrg = nil
	l.mu.Unlock()
}
