// Package routes is an http.ServeMux that remembers the patterns it was
// given, so the security tests can walk every route a handler serves and
// prove that none of them answers without credentials by accident.
package routes

import (
	"net/http"
	"slices"
	"sync"
)

// Mux is an http.ServeMux recording its patterns.
type Mux struct {
	*http.ServeMux
	mu       sync.Mutex
	patterns []string
}

// New returns an empty Mux.
func New() *Mux { return &Mux{ServeMux: http.NewServeMux()} }

// Handle registers handler for pattern, as http.ServeMux.Handle does.
func (m *Mux) Handle(pattern string, handler http.Handler) {
	m.ServeMux.Handle(pattern, handler)
	m.record(pattern)
}

// HandleFunc registers fn for pattern, as http.ServeMux.HandleFunc does.
func (m *Mux) HandleFunc(pattern string, fn func(http.ResponseWriter, *http.Request)) {
	m.ServeMux.HandleFunc(pattern, fn)
	m.record(pattern)
}

func (m *Mux) record(pattern string) {
	m.mu.Lock()
	m.patterns = append(m.patterns, pattern)
	m.mu.Unlock()
}

// Patterns returns the registered patterns in registration order.
func (m *Mux) Patterns() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.patterns)
}
