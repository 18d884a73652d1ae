package api

import (
	"fmt"
	"net/http"
	"time"
)

// locationJSON is one stay of a patient at a location; To is absent while
// the patient is still there.
type locationJSON struct {
	Location string     `json:"location"`
	From     time.Time  `json:"from"`
	To       *time.Time `json:"to,omitempty"`
}

// locations serves GET /api/v1/patients/{id}/locations: the patient's
// location history (HL7 ADT PV1-3), oldest first.
func (h *Handler) locations(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := h.cfg.Store.Patient(r.Context(), id); err != nil {
		return fmt.Errorf("load patient: %w", err)
	}
	stays, err := h.cfg.Store.Locations(r.Context(), id)
	if err != nil {
		return fmt.Errorf("location history: %w", err)
	}
	out := make([]locationJSON, 0, len(stays))
	for _, s := range stays {
		l := locationJSON{Location: s.Location, From: s.From.UTC()}
		if !s.To.IsZero() {
			to := s.To.UTC()
			l.To = &to
		}
		out = append(out, l)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"patient": id, "locations": out})
}
