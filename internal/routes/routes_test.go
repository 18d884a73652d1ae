package routes

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestMuxRecordsAndServes(t *testing.T) {
	m := New()
	m.HandleFunc("GET /a/{id}", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a" + r.PathValue("id"))) })
	m.Handle("POST /b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	if got, want := m.Patterns(), []string{"GET /a/{id}", "POST /b"}; !slices.Equal(got, want) {
		t.Fatalf("patterns %v, want %v", got, want)
	}
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/a/7", nil))
	if rec.Body.String() != "a7" {
		t.Errorf("GET /a/7 answered %q", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("POST", "/b", nil))
	if rec.Code != http.StatusAccepted {
		t.Errorf("POST /b answered %d", rec.Code)
	}
}
