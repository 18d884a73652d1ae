package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
)

type latestJSON struct {
	Code       string              `json:"code"`
	Display    string              `json:"display,omitempty"`
	MDC        string              `json:"mdc,omitempty"`
	Value      *float64            `json:"value,omitempty"`
	Unit       string              `json:"unit"`
	Components []reading.Component `json:"components,omitempty"`
	Time       time.Time           `json:"time"`
	Age        string              `json:"age"`
	Device     string              `json:"device"`
	ID         string              `json:"observation"`
}

// latest returns the newest value per code of a patient.
func (h *Handler) latest(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := h.cfg.Store.Patient(r.Context(), id); err != nil {
		return fmt.Errorf("load patient: %w", err)
	}
	ss, err := h.cfg.Store.Latest(r.Context(), id)
	if err != nil {
		return fmt.Errorf("latest readings: %w", err)
	}
	now := h.cfg.Now()
	out := make([]latestJSON, 0, len(ss))
	for _, s := range ss {
		l := latestJSON{Code: s.Code, MDC: s.MDC, Unit: s.Unit, Components: s.Components, Time: s.Time,
			Age: now.Sub(s.Time).Round(time.Second).String(), Device: s.Device, ID: s.ID}
		if c, ok := codes.ByLOINC(s.Code); ok {
			l.Display = c.Display
		}
		if s.HasValue {
			v := s.Value
			l.Value = &v
		}
		out = append(out, l)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"patient": id, "latest": out})
}
