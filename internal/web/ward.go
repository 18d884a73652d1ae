package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/sse"
)

type wardData struct {
	Tiles  []renderedTile
	ByName bool
	Live   bool
}

// renderedTile is a tile already rendered by the "tile" template (so
// escaped there); HTML is never built from data any other way.
type renderedTile struct {
	EventName string
	HTML      template.HTML
}

// ward is the overview: one tile per patient, most urgent first.
func (h *Handler) ward(w http.ResponseWriter, r *http.Request) error {
	m, err := h.loadWard(r.Context(), "")
	if err != nil {
		return err
	}
	byName := r.URL.Query().Get("sort") == "name"
	now := h.cfg.Now()
	tiles, err := h.renderTiles(m.views(now, byName), now)
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "ward", page{Title: "Ward overview", Nav: "ward", Session: sessionFrom(r.Context()), Now: now,
		Data: wardData{Tiles: tiles, ByName: byName, Live: h.cfg.Live != nil}})
	return nil
}

// renderTiles renders the tiles that changed since they were last
// rendered, on every core: template execution is most of the cost of a
// ward's page, and most tiles are the same as a moment ago.
func (h *Handler) renderTiles(rows []rowView, now time.Time) ([]renderedTile, error) {
	out := make([]renderedTile, len(rows))
	workers := min(runtime.GOMAXPROCS(0), 8, len(rows))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for i := wk; i < len(rows); i += workers {
				key := rows[i].fingerprint()
				if html, ok := h.tiles.get(rows[i].ID, key); ok {
					out[i] = renderedTile{EventName: rows[i].EventName, HTML: html}
					continue
				}
				buf.Reset()
				if err := h.renderPart(&buf, "tile", tileData{Row: rows[i], Now: now}); err != nil {
					errs[wk] = fmt.Errorf("render tile: %w", err)
					return
				}
				html := template.HTML(buf.String())
				h.tiles.put(rows[i].ID, key, html)
				out[i] = renderedTile{EventName: rows[i].EventName, HTML: html}
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// tileData is what the "tile" partial renders.
type tileData struct {
	Row rowView
	Now time.Time
}

// chartPoint is a reading sent to a patient page's charts.
type chartPoint struct {
	Code string  `json:"code"`
	T    float64 `json:"t"` // seconds since the epoch, as uPlot wants
	V    float64 `json:"v"`
}

// wardEvents streams rendered tiles of changed patients (all, or one with
// ?patient=ID, whose stream also carries chart points as "reading"
// events). A client that falls behind gets a "reload" event.
func (h *Handler) wardEvents(w http.ResponseWriter, r *http.Request) error {
	if h.cfg.Live == nil {
		return &pageError{Status: http.StatusNotFound, Message: "Live updates are not available."}
	}
	only := r.URL.Query().Get("patient")
	var filter func(live.Event) bool
	if only != "" {
		filter = func(ev live.Event) bool { return ev.Patient == only }
	}
	// Subscribe before loading, so nothing between the load and the
	// subscription is lost (an event applied twice changes nothing).
	sub := h.cfg.Live.SubscribeTypes([]string{live.TypeReading, live.TypeAlarm}, filter)
	defer sub.Close()
	m, err := h.loadWard(r.Context(), only)
	if err != nil {
		return err
	}
	out, err := sse.Start(w, "tend dashboard", 2*time.Second)
	if err != nil {
		return err
	}
	dirty := map[string]bool{}
	tick := time.NewTicker(coalesce)
	defer tick.Stop()
	ping := time.NewTicker(ssePing)
	defer ping.Stop()
	var buf bytes.Buffer
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-ping.C:
			out.Comment("ping")
		case ev, ok := <-sub.C():
			if !ok {
				out.Event("reload", 0, []byte(sub.Err().Error()))
				out.Flush()
				return nil
			}
			row := m.rows[ev.Patient]
			if row == nil {
				continue // a patient registered after the page loaded
			}
			switch ev.Type {
			case live.TypeReading:
				var rd reading.Reading
				if json.Unmarshal(ev.Data, &rd) != nil {
					continue
				}
				row.apply(rd)
				if only != "" {
					if v, ok := chartValue(rd); ok {
						b, _ := json.Marshal(chartPoint{Code: rd.Code, T: float64(rd.Time.UnixMilli()) / 1000, V: v})
						out.Event("reading", 0, b)
					}
				}
			case live.TypeAlarm:
				var change struct {
					Alarm alarm.Alarm `json:"alarm"`
				}
				if json.Unmarshal(ev.Data, &change) != nil {
					continue
				}
				row.applyAlarm(change.Alarm)
			}
			dirty[ev.Patient] = true
			continue // the tiles go out on the next tick
		case <-tick.C:
			now := h.cfg.Now()
			for id := range dirty {
				buf.Reset()
				v := m.rows[id].view(now)
				if err := h.renderPart(&buf, "tile", tileData{Row: v, Now: now}); err != nil {
					h.cfg.Logger.Error("render tile", "err", err)
					continue
				}
				out.Event(v.EventName, 0, buf.Bytes())
			}
			clear(dirty)
		}
		if err := out.Flush(); err != nil {
			return nil // the client went away
		}
	}
}

// chartValue is the number a chart plots for a reading: the value, or the
// first component of a panel (systolic of a blood pressure).
func chartValue(rd reading.Reading) (float64, bool) {
	if rd.HasValue {
		return rd.Value, true
	}
	if len(rd.Components) > 0 {
		return rd.Components[0].Value, true
	}
	return 0, false
}

// tileCache keeps each patient's last rendered tile with the fingerprint
// of what it showed.
type tileCache struct {
	mu sync.Mutex
	m  map[string]cachedTile
}

type cachedTile struct {
	key  uint64
	html template.HTML
}

func (c *tileCache) get(patient string, key uint64) (template.HTML, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[patient]
	return t.html, ok && t.key == key
}

func (c *tileCache) put(patient string, key uint64, html template.HTML) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedTile{}
	}
	if len(c.m) > 4*maxWardPatients { // patients come and go: start afresh rather than grow
		clear(c.m)
	}
	c.m[patient] = cachedTile{key, html}
}
