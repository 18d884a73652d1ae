// Package live fans live events (new readings, alarm changes) out to
// subscribers such as server-sent-event streams.
//
// Publishing never blocks: each subscriber has a bounded buffer, and a
// subscriber that falls behind is closed with ErrSlow rather than silently
// missing events. A live view that has missed something is wrong without
// knowing it; a closed one reconnects and reloads its state.
package live

import (
	"errors"
	"sync"
)

// Event types.
const (
	TypeReading = "reading"
	TypeAlarm   = "alarm"
)

// Event is one live event. Data is JSON and shared by every subscriber:
// nobody may modify it after Publish.
type Event struct {
	Type    string // TypeReading or TypeAlarm
	Patient string // "" for events about no patient (system alarms)
	Data    []byte
	// Notice marks an alarm addressed to named people rather than to the
	// patient's carers (such as the privacy officer's break-glass alert);
	// clinical staff's streams leave it out.
	Notice bool
}

// DefaultBuffer is the per-subscriber buffer of a Hub with Buffer 0.
const DefaultBuffer = 1024

// Reasons a subscription ends.
var (
	ErrSlow      = errors.New("live: the subscriber fell behind and missed events; reconnect and reload")
	ErrClosed    = errors.New("live: subscription closed")
	ErrHubClosed = errors.New("live: the server is shutting down")
)

// Hub distributes events to subscribers. The zero Hub is ready to use;
// it is safe for concurrent use.
type Hub struct {
	// Buffer is each subscriber's buffer (DefaultBuffer when 0). Set it
	// before the first Subscribe.
	Buffer int

	// mu guards subs and closed, and makes sending on a subscription's
	// channel exclusive with closing it.
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// Subscription receives the events its filter accepts.
type Subscription struct {
	hub    *Hub
	types  []string // nil: every type
	filter func(Event) bool
	c      chan Event
	err    error // why it ended; set under hub.mu before c is closed
}

// Subscribe registers a subscriber. A nil filter accepts every event. The
// filter runs inside Publish, so it must be quick and must not call the
// Hub.
func (h *Hub) Subscribe(filter func(Event) bool) *Subscription {
	return h.SubscribeTypes(nil, filter)
}

// SubscribeTypes is Subscribe for some event types only (nil: all). A
// publisher asks Wants before it encodes events of a type nobody takes.
func (h *Hub) SubscribeTypes(types []string, filter func(Event) bool) *Subscription {
	size := h.Buffer
	if size <= 0 {
		size = DefaultBuffer
	}
	s := &Subscription{hub: h, types: types, filter: filter, c: make(chan Event, size)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.endLocked(ErrHubClosed)
		return s
	}
	if h.subs == nil {
		h.subs = map[*Subscription]struct{}{}
	}
	h.subs[s] = struct{}{}
	return s
}

// Publish hands ev to every subscriber whose filter accepts it, without
// blocking: a subscriber whose buffer is full is closed with ErrSlow.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if !s.takes(ev.Type) || (s.filter != nil && !s.filter(ev)) {
			continue
		}
		select {
		case s.c <- ev:
		default:
			delete(h.subs, s)
			s.endLocked(ErrSlow)
		}
	}
}

// Wants reports whether any open subscription takes events of type typ.
func (h *Hub) Wants(typ string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.takes(typ) {
			return true
		}
	}
	return false
}

func (s *Subscription) takes(typ string) bool {
	if s.types == nil {
		return true
	}
	for _, t := range s.types {
		if t == typ {
			return true
		}
	}
	return false
}

// Len is the number of open subscriptions.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Close ends every subscription with ErrHubClosed (at shutdown, so that
// long-lived streams return); later subscriptions start closed.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.endLocked(ErrHubClosed)
	}
	h.subs = nil
}

func (s *Subscription) endLocked(err error) {
	s.err = err
	close(s.c)
}

// C delivers the events; it is closed when the subscription ends (see Err).
// Events buffered before the end are still delivered.
func (s *Subscription) C() <-chan Event { return s.c }

// Err says why the subscription ended: ErrSlow, ErrClosed or ErrHubClosed;
// nil while it is open.
func (s *Subscription) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Close ends the subscription; closing it again does nothing.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.err != nil {
		return
	}
	delete(h.subs, s)
	s.endLocked(ErrClosed)
}
