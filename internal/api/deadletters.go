package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tendhealth/tend/internal/ingest"
	"github.com/tendhealth/tend/internal/store"
)

type deadLetterJSON struct {
	ID              int64      `json:"id"`
	Received        time.Time  `json:"received"`
	Source          string     `json:"source"`
	Device          string     `json:"device"`
	ContentType     string     `json:"content_type,omitempty"`
	Reason          string     `json:"reason"`
	Payload         string     `json:"payload"`
	PayloadEncoding string     `json:"payload_encoding"` // "utf-8" or "base64"
	Replayed        *time.Time `json:"replayed,omitempty"`
}

func toDeadLetterJSON(d store.DeadLetter) deadLetterJSON {
	j := deadLetterJSON{ID: d.ID, Received: d.Received, Source: d.Source, Device: d.Device,
		ContentType: d.ContentType, Reason: d.Reason, Payload: string(d.Payload), PayloadEncoding: "utf-8"}
	if !utf8.Valid(d.Payload) {
		j.Payload, j.PayloadEncoding = base64.StdEncoding.EncodeToString(d.Payload), "base64"
	}
	if !d.Replayed.IsZero() {
		t := d.Replayed
		j.Replayed = &t
	}
	return j
}

// listDeadLetters pages newest first: ?limit=N&before=ID.
func (h *Handler) listDeadLetters(w http.ResponseWriter, r *http.Request) error {
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	before, err := intParam(r, "before", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	ds, err := h.cfg.Store.DeadLetters(r.Context(), limit, int64(before))
	if err != nil {
		return fmt.Errorf("list dead letters: %w", err)
	}
	out := make([]deadLetterJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, toDeadLetterJSON(d))
	}
	doc := map[string]any{"deadletters": out}
	if len(ds) == limit {
		doc["next"] = fmt.Sprintf("/api/v1/deadletters?limit=%d&before=%d", limit, ds[len(ds)-1].ID)
	}
	return writeJSON(w, http.StatusOK, doc)
}

func (h *Handler) getDeadLetter(w http.ResponseWriter, r *http.Request) error {
	d, err := h.deadLetter(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toDeadLetterJSON(d))
}

// replayDeadLetter runs a kept payload through ingest again, e.g. after the
// device was bound. Success marks it replayed; a refusal says why (again).
func (h *Handler) replayDeadLetter(w http.ResponseWriter, r *http.Request) error {
	d, err := h.deadLetter(r)
	if err != nil {
		return err
	}
	if !d.Replayed.IsZero() {
		return &Error{Status: http.StatusConflict, Detail: fmt.Sprintf("dead letter %d was already replayed at %s", d.ID, d.Replayed.Format(time.RFC3339))}
	}
	if d.Source == ingest.SourceUnauthenticated {
		return &Error{Status: http.StatusConflict, Detail: "a payload whose sender failed authentication cannot be replayed; the device must send it again with its secret"}
	}
	n, err := h.cfg.Ingest.Replay(r.Context(), ingest.Request{Source: d.Source, Device: d.Device, ContentType: d.ContentType, Payload: d.Payload})
	var rej *ingest.Rejection
	if errors.As(err, &rej) {
		return &Error{Status: http.StatusUnprocessableEntity, Detail: "replay refused: " + rej.Reason}
	}
	if err != nil {
		return err
	}
	if err := h.cfg.Store.MarkReplayed(r.Context(), d.ID, h.cfg.Now().UTC()); err != nil {
		return fmt.Errorf("mark dead letter replayed: %w", err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"id": d.ID, "accepted": n})
}

func (h *Handler) deadLetter(r *http.Request) (store.DeadLetter, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return store.DeadLetter{}, &Error{Status: http.StatusNotFound, Detail: "no such dead letter"}
	}
	d, err := h.cfg.Store.DeadLetter(r.Context(), id)
	if err != nil {
		return d, fmt.Errorf("load dead letter: %w", err)
	}
	return d, nil
}

func intParam(r *http.Request, name string, def, min, max int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, &Error{Status: http.StatusBadRequest, Detail: fmt.Sprintf("%s must be an integer from %d to %d", name, min, max)}
	}
	return n, nil
}
