package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/sse"
)

// streamPing is how often an idle stream sends a comment, so proxies and
// clients see the connection is alive. A variable so tests can shorten it.
var streamPing = 15 * time.Second

// stream serves live readings and alarm changes as server-sent events,
// optionally for one patient (?patient=ID) and some event types
// (?events=alarm: an alarm board need not take every reading). Nothing is replayed: a client
// that connects or reconnects loads current state from the API first. When
// the server drops the subscription (the client fell behind, or shutdown)
// it writes an "error" event with the reason before it ends the response.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) error {
	patient := r.URL.Query().Get("patient")
	if patient != "" {
		if err := h.checkPatient(r, patient); err != nil {
			return err
		}
	}
	// Each subscriber gets only events of patients it may see (access.go).
	filter, err := h.streamFilter(r, patient)
	if err != nil {
		return err
	}
	types, err := eventTypes(r.URL.Query().Get("events"))
	if err != nil {
		return err
	}
	// Subscribe before answering, so nothing published after the client
	// saw the response is missed.
	sub := h.cfg.Live.SubscribeTypes(types, filter)
	defer sub.Close()

	out, err := sse.Start(w, "tend live stream", 3*time.Second)
	if err != nil {
		return nil // the client went away
	}

	ping := time.NewTicker(streamPing)
	defer ping.Stop()
	var id uint64
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-ping.C:
			out.Comment("ping")
		case ev, ok := <-sub.C():
			if !ok {
				reason, _ := json.Marshal(map[string]string{"reason": sub.Err().Error()})
				out.Event("error", 0, reason)
				out.Flush()
				return nil
			}
			id++
			out.Event(ev.Type, id, ev.Data)
		}
		if err := out.Flush(); err != nil {
			return nil
		}
	}
}

// eventTypes parses ?events=reading,alarm ("" means both).
func eventTypes(q string) ([]string, error) {
	if q == "" {
		return nil, nil
	}
	var types []string
	for _, t := range strings.Split(q, ",") {
		switch t = strings.TrimSpace(t); t {
		case live.TypeReading, live.TypeAlarm:
			types = append(types, t)
		default:
			return nil, &Error{Status: http.StatusBadRequest, Detail: fmt.Sprintf("events: %q is not reading or alarm", clipParam(t))}
		}
	}
	return types, nil
}

func clipParam(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
