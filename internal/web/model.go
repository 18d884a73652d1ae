package web

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/news2"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
)

// vital is one column of the overview: a code, or a component of a panel.
type vital struct {
	Label string
	Codes []string // first one present wins (heart rate or pulse rate)
	Unit  string
}

// wardVitals are the columns of the overview, in the NEWS2 chart's order.
var wardVitals = []vital{
	{"HR", []string{codes.HeartRate, codes.PulseRate}, "/min"},
	{"SpO₂", []string{codes.OxygenSaturation}, "%"},
	{"RR", []string{codes.RespiratoryRate}, "/min"},
	{"BP", []string{codes.BloodPressurePanel}, "mmHg"},
	{"Temp", []string{codes.BodyTemperature}, "°C"},
	{"Glucose", []string{codes.CapillaryGlucose, codes.InterstitialGlucose}, "mmol/L"},
}

// patientRow is what the overview shows of one patient. It is built from
// the store once and then kept current from live events, so a stream of
// readings costs no queries.
type patientRow struct {
	ID     string
	Name   string
	MRN    string
	latest map[string]reading.Reading // newest per code
	alarms map[string]alarm.Alarm     // open episodes by id
	scale  news2.Scale
	stale  time.Duration
}

// rowView is the rendered state of a row (what templates read).
type rowView struct {
	ID, Name, MRN string
	EventName     string // SSE event that carries this row's updates
	Vitals        []vitalView
	NEWS2         *news2.Result
	NEWS2Band     string
	Alarms        []alarm.Alarm // open, most urgent first
	TopPriority   string
	Battery       *vitalView
	Acuity        int // sort key: higher is more urgent
}

// vitalView carries its times already formatted: a ward is a thousand
// vitals, and template function calls are the costly part of rendering.
type vitalView struct {
	Label, Value, Unit string
	Time               time.Time
	ISO, Clock, Short  string
	Stale              bool
	StaleAfterSeconds  int
	Present            bool
}

// eventName is the SSE event name of a patient's row: a hash, because ids
// are data and event names are protocol.
func eventName(patient string) string {
	h := fnv.New64a()
	h.Write([]byte(patient))
	return "p" + strconv.FormatUint(h.Sum64(), 36)
}

// patientName reads a display name from the FHIR Patient resource:
// name[0].text, else given names and family.
func patientName(p store.Patient) string {
	var res struct {
		Name []struct {
			Text   string   `json:"text"`
			Given  []string `json:"given"`
			Family string   `json:"family"`
		} `json:"name"`
	}
	if json.Unmarshal(p.Resource, &res) == nil && len(res.Name) > 0 {
		n := res.Name[0]
		if n.Text != "" {
			return n.Text
		}
		if s := strings.TrimSpace(strings.Join(append(append([]string{}, n.Given...), n.Family), " ")); s != "" {
			return s
		}
	}
	return "Patient " + p.ID
}

func patientMRN(p store.Patient) string {
	if len(p.Identifiers) > 0 {
		return p.Identifiers[0].Value
	}
	return ""
}

func newRow(p store.Patient, latest map[string]reading.Reading, open []alarm.Alarm, scale news2.Scale, stale time.Duration) *patientRow {
	r := &patientRow{ID: p.ID, Name: patientName(p), MRN: patientMRN(p), latest: latest,
		alarms: map[string]alarm.Alarm{}, scale: scale, stale: stale}
	for _, a := range open {
		r.alarms[a.ID] = a
	}
	return r
}

// apply takes a new reading; an older one than what is shown is ignored.
func (r *patientRow) apply(rd reading.Reading) {
	if cur, ok := r.latest[rd.Code]; ok && cur.Time.After(rd.Time) {
		return
	}
	r.latest[rd.Code] = rd
}

// applyAlarm takes an alarm change: resolved episodes leave the row.
func (r *patientRow) applyAlarm(a alarm.Alarm) {
	if a.Open() {
		if cur, ok := r.alarms[a.ID]; !ok || cur.Version <= a.Version {
			r.alarms[a.ID] = a
		}
		return
	}
	delete(r.alarms, a.ID)
}

// view computes what to show at now.
func (r *patientRow) view(now time.Time) rowView {
	v := rowView{ID: r.ID, Name: r.Name, MRN: r.MRN, EventName: eventName(r.ID)}
	for _, vt := range wardVitals {
		vv := vitalView{Label: vt.Label, Unit: vt.Unit, StaleAfterSeconds: int(r.stale / time.Second)}
		for _, c := range vt.Codes {
			if rd, ok := r.latest[c]; ok {
				vv = r.vitalOf(vt.Label, rd, now)
				break
			}
		}
		v.Vitals = append(v.Vitals, vv)
	}
	if b, ok := r.latest[codes.Battery]; ok {
		bv := r.vitalOf("Battery", b, now)
		v.Battery = &bv
	}
	// NEWS2 as GET /api/v1/patients/{id}/news2 computes it.
	in := rules.NEWS2Input(func(code string) (float64, time.Time, bool) {
		if rd, ok := r.latest[code]; ok && rd.HasValue {
			return rd.Value, rd.Time, true
		}
		for _, rd := range r.latest { // systolic inside a blood-pressure panel
			for _, c := range rd.Components {
				if c.Code == code {
					return c.Value, rd.Time, true
				}
			}
		}
		return 0, time.Time{}, false
	})
	res := news2.Score(in, news2.Config{Scale: r.scale, Fresh: news2.DefaultFreshness()}, now)
	if res.Scored.Len() > 0 {
		v.NEWS2, v.NEWS2Band = &res, res.Band.String()
	}
	for _, a := range r.alarms {
		v.Alarms = append(v.Alarms, a)
	}
	sortAlarms(v.Alarms)
	top := 0
	if len(v.Alarms) > 0 {
		v.TopPriority = string(v.Alarms[0].Priority)
		top = v.Alarms[0].Priority.Rank()
	}
	// Acuity: the most urgent open alarm first, then the NEWS2 total.
	v.Acuity = top * 100
	if v.NEWS2 != nil {
		v.Acuity += v.NEWS2.Total
	}
	return v
}

func (r *patientRow) vitalOf(label string, rd reading.Reading, now time.Time) vitalView {
	return vitalView{Label: label, Value: formatValue(rd), Unit: displayUnit(rd), Time: rd.Time, Present: true,
		ISO: rd.Time.UTC().Format(time.RFC3339), Clock: rd.Time.UTC().Format(clockLayout), Short: rd.Time.UTC().Format("15:04:05"),
		Stale: now.Sub(rd.Time) > r.stale, StaleAfterSeconds: int(r.stale / time.Second)}
}

// formatValue shows a value with the precision a clinician reads it at.
func formatValue(rd reading.Reading) string {
	if !rd.HasValue && len(rd.Components) >= 2 { // blood pressure: systolic/diastolic
		return trimFloat(rd.Components[0].Value) + "/" + trimFloat(rd.Components[1].Value)
	}
	if !rd.HasValue && len(rd.Components) == 1 {
		return trimFloat(rd.Components[0].Value)
	}
	return trimFloat(rd.Value)
}

func trimFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0")
}

var unitNames = map[string]string{"/min": "/min", "%": "%", "mm[Hg]": "mmHg", "Cel": "°C", "mmol/L": "mmol/L", "mg/dL": "mg/dL", "kg": "kg"}

func displayUnit(rd reading.Reading) string {
	if n, ok := unitNames[rd.Unit]; ok {
		return n
	}
	if rd.Unit == "" && len(rd.Components) > 0 {
		return displayUnit(reading.Reading{Unit: rd.Components[0].Unit})
	}
	if strings.HasPrefix(rd.Unit, "{") { // a UCUM annotation such as {score} is no unit to a reader
		return ""
	}
	return rd.Unit
}

// sortAlarms orders open alarms most urgent first: priority, then active
// before acknowledged, then oldest first.
func sortAlarms(as []alarm.Alarm) {
	sort.SliceStable(as, func(i, j int) bool {
		a, b := as[i], as[j]
		if a.Priority.Rank() != b.Priority.Rank() {
			return a.Priority.Rank() > b.Priority.Rank()
		}
		if (a.State == alarm.Active) != (b.State == alarm.Active) {
			return a.State == alarm.Active
		}
		if !a.Raised.Equal(b.Raised) {
			return a.Raised.Before(b.Raised)
		}
		return a.ID < b.ID
	})
}

// wardModel loads every patient's row: one query for patients, one for
// open alarms, and one Latest per patient.
type wardModel struct {
	rows  map[string]*patientRow
	order []string
}

// maxWardPatients bounds one overview; a larger organisation needs care
// teams (a separate issue) to split it.
const maxWardPatients = 1000

func (h *Handler) loadWard(ctx context.Context, only string) (*wardModel, error) {
	var ps []store.Patient
	if only != "" {
		p, err := h.visiblePatient(ctx, only) // access.go
		if err != nil {
			return nil, err
		}
		ps = []store.Patient{p}
	} else {
		sc, err := h.scope(ctx)
		if err != nil {
			return nil, err
		}
		if ps, err = h.patients.get(ctx, sc.PatientFilter()); err != nil {
			return nil, err
		}
	}
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	open, err := h.openAlarms(ctx, ids)
	if err != nil {
		return nil, err
	}
	byPatient := map[string][]alarm.Alarm{}
	for _, a := range open {
		byPatient[a.Patient] = append(byPatient[a.Patient], a)
	}
	m := &wardModel{rows: make(map[string]*patientRow, len(ps))}
	for _, p := range ps {
		latest, err := h.latest.latest(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		scale, err := h.news2Scale(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		m.rows[p.ID] = newRow(p, latest, byPatient[p.ID], scale, h.cfg.StaleAfter)
		m.order = append(m.order, p.ID)
	}
	return m, nil
}

// openAlarms lists the open alarms of the patients on show, for their
// tiles. Notices (such as a break-glass alert to the privacy officer) are
// not about the patient's condition and stay off the tiles.
func (h *Handler) openAlarms(ctx context.Context, patients []string) ([]alarm.Alarm, error) {
	if h.cfg.AlarmStore == nil || len(patients) == 0 {
		return nil, nil
	}
	as, err := h.cfg.AlarmStore.Alarms(ctx, alarm.Filter{Restrict: true, Patients: patients, NoNotices: true,
		States: []alarm.State{alarm.Active, alarm.Acknowledged}, Limit: 5000})
	if err != nil {
		return nil, fmt.Errorf("list open alarms: %w", err)
	}
	return as, nil
}

// news2Scale is the SpO2 scale the patient's effective rules ask for.
func (h *Handler) news2Scale(ctx context.Context, patient string) (news2.Scale, error) {
	if h.cfg.Profiles == nil {
		return news2.Scale1, nil
	}
	eff, err := h.cfg.Profiles.Rules(ctx, patient)
	if err != nil {
		return 0, fmt.Errorf("effective rules: %w", err)
	}
	for _, rule := range eff {
		if rule.Kind == rules.KindNEWS2 && rule.Scale == 2 {
			return news2.Scale2, nil
		}
	}
	return news2.Scale1, nil
}

// views returns the rows sorted by acuity (most urgent first) or by name.
func (m *wardModel) views(now time.Time, byName bool) []rowView {
	out := make([]rowView, 0, len(m.order))
	for _, id := range m.order {
		out = append(out, m.rows[id].view(now))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !byName && out[i].Acuity != out[j].Acuity {
			return out[i].Acuity > out[j].Acuity
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// fingerprint hashes everything a tile shows. Ages are not in it: the
// tile shows reading times and the browser counts the age (app.js), so a
// tile changes only with its data or when a value turns stale.
func (v *rowView) fingerprint() uint64 {
	h := fnv.New64a()
	w := func(parts ...string) {
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
	}
	w(v.ID, v.Name, v.MRN, v.TopPriority, v.NEWS2Band, strconv.Itoa(v.Acuity))
	if v.NEWS2 != nil {
		w(strconv.Itoa(v.NEWS2.Total), strconv.FormatBool(v.NEWS2.Complete))
	}
	vitals := v.Vitals
	if v.Battery != nil {
		vitals = append(vitals[:len(vitals):len(vitals)], *v.Battery)
	}
	for _, vt := range vitals {
		w(vt.Label, vt.Value, vt.Unit, vt.ISO, strconv.FormatBool(vt.Stale), strconv.FormatBool(vt.Present))
	}
	for _, a := range v.Alarms {
		w(a.ID, strconv.Itoa(a.Version), string(a.State), string(a.Priority), a.Name)
	}
	return h.Sum64()
}
