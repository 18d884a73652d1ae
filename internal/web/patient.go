package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/codes"
)

// chartRanges are the windows a patient's charts offer, with the bucket
// width that keeps each chart near 360 points whatever the window.
var chartRanges = []struct {
	Name string
	Span time.Duration
	Step time.Duration
}{
	{"1h", time.Hour, 10 * time.Second},
	{"24h", 24 * time.Hour, 4 * time.Minute},
	{"7d", 7 * 24 * time.Hour, 30 * time.Minute},
	{"30d", 30 * 24 * time.Hour, 2 * time.Hour},
}

type chartView struct {
	Code, Label, Unit string
}

type boundDevice struct {
	ID       string
	LastSeen time.Time
}

type patientData struct {
	Row         rowView
	Range       string
	SpanSeconds int
	Ranges      []string
	Charts      []chartView
	History     []alarm.Alarm
	Devices     []boundDevice
	Live        bool
	Extra       patientExtra // notes and break-glass status (notes.go)
	// Adherence is pill dispenser doses (adherence.go); nil without any.
	Adherence *adherenceView
}

// patient shows one patient: live vitals, charts, alarm history and the
// devices bound now.
func (h *Handler) patient(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	m, err := h.loadWard(ctx, id)
	if err != nil {
		return err
	}
	rng := r.URL.Query().Get("range")
	span, _, ok := chartRange(rng)
	if !ok {
		rng, span = "1h", time.Hour
	}
	now := h.cfg.Now()
	row := m.rows[id]
	d := patientData{Row: row.view(now), Range: rng, SpanSeconds: int(span / time.Second), Live: h.cfg.Live != nil}
	for _, cr := range chartRanges {
		d.Ranges = append(d.Ranges, cr.Name)
	}
	codesSeen := make([]string, 0, len(row.latest))
	for c := range row.latest {
		codesSeen = append(codesSeen, c)
	}
	sort.Strings(codesSeen)
	devices := map[string]time.Time{}
	for _, c := range codesSeen {
		rd := row.latest[c]
		if rd.Time.After(devices[rd.Device]) {
			devices[rd.Device] = rd.Time
		}
		if _, ok := chartValue(rd); !ok || rd.Unit == "{flag}" { // events (falls, lead off) are alarms, not curves
			continue
		}
		cv := chartView{Code: c, Label: c, Unit: displayUnit(rd)}
		if info, ok := codes.ByLOINC(c); ok {
			cv.Label = info.Display
		}
		d.Charts = append(d.Charts, cv)
	}
	// Devices that sent this patient's latest readings and are bound to
	// the patient now (the store has no per-patient device index yet).
	for dev, seen := range devices {
		got, err := h.cfg.Store.Device(ctx, dev)
		if err != nil || got.Patient != id {
			continue
		}
		d.Devices = append(d.Devices, boundDevice{ID: dev, LastSeen: seen})
	}
	sort.Slice(d.Devices, func(i, j int) bool { return d.Devices[i].ID < d.Devices[j].ID })
	if h.cfg.AlarmStore != nil {
		if d.History, err = h.cfg.AlarmStore.Alarms(ctx, alarm.Filter{Patient: id, Limit: 50}); err != nil {
			return fmt.Errorf("alarm history: %w", err)
		}
	}
	if d.Extra, err = h.patientExtras(ctx, id); err != nil {
		return err
	}
	if d.Adherence, err = h.loadAdherence(ctx, id, now); err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "patient", page{Title: row.Name, Nav: "ward", Session: sessionFrom(ctx), Now: now, Data: d})
	return nil
}

func chartRange(name string) (span, step time.Duration, ok bool) {
	for _, cr := range chartRanges {
		if cr.Name == name {
			return cr.Span, cr.Step, true
		}
	}
	return 0, 0, false
}

// seriesJSON is one chart's data in uPlot's column layout.
type seriesJSON struct {
	Code string    `json:"code"`
	T    []float64 `json:"t"`
	Min  []float64 `json:"min"`
	Mean []float64 `json:"mean"`
	Max  []float64 `json:"max"`
}

// series serves a downsampled series: ?code=LOINC&range=1h|24h|7d|30d.
func (h *Handler) series(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	if _, err := h.visiblePatient(ctx, id); err != nil {
		return err
	}
	q := r.URL.Query()
	span, step, ok := chartRange(q.Get("range"))
	code := q.Get("code")
	if !ok || code == "" || len(code) > 64 {
		return &pageError{Status: http.StatusBadRequest, Message: "Give code and a range of 1h, 24h, 7d or 30d."}
	}
	to := h.cfg.Now().Add(step) // the current bucket too
	bs, err := h.cfg.Store.Downsample(ctx, id, code, to.Add(-span-step), to, step)
	if err != nil {
		return fmt.Errorf("downsample: %w", err)
	}
	out := seriesJSON{Code: code, T: []float64{}, Min: []float64{}, Mean: []float64{}, Max: []float64{}}
	for _, b := range bs {
		out.T = append(out.T, float64(b.Start.Add(step/2).UnixMilli())/1000)
		out.Min = append(out.Min, b.Min)
		out.Mean = append(out.Mean, b.Mean)
		out.Max = append(out.Max, b.Max)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(out)
}
