package fhir

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/tendhealth/tend/internal/store"
)

// obsPage is one page of an Observation search.
type obsPage struct {
	samples []store.Sample
	total   int
	next    string // cursor of the next page; "" on the last page
}

func (h *handler) searchObservations(w http.ResponseWriter, r *http.Request) error {
	s, err := ParseObservationSearch(r.URL.Query(), strictHandling(r), h.now())
	if err != nil {
		return err
	}
	if err := h.scopeSearch(r.Context(), &s); err != nil {
		return err
	}
	page, err := h.findObservations(r.Context(), s)
	if err != nil {
		return err
	}
	b := searchset(r, page.total, s.ResultParams, page.next)
	if err := h.addObservations(r, &b, page.samples, s.Elements, s.IncludeDevices); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// findObservations runs a parsed search: the total over every window the
// date criteria leave, then one page (Count+1 rows, to know whether there
// is a next page) walking the windows in result order.
func (h *handler) findObservations(ctx context.Context, s ObservationSearch) (obsPage, error) {
	if s.NoMatch {
		return obsPage{}, nil
	}
	if len(s.IDs) > 0 {
		return h.findObservationsByID(ctx, s)
	}
	var page obsPage
	windows := s.Windows()
	counts := make([]int, len(windows))
	for i, win := range windows {
		q := s.Query()
		q.From, q.To = win.From, win.To
		n, err := h.store.CountSamples(ctx, q)
		if err != nil {
			return obsPage{}, fmt.Errorf("count observations: %w", err)
		}
		counts[i] = n
		page.total += n
	}
	if s.CountOnly || s.Count == 0 {
		return page, nil
	}
	skip := s.Offset
	want := s.Count + 1
	for i, win := range windows {
		if want == 0 {
			break
		}
		if s.Cursor == "" && skip >= counts[i] {
			skip -= counts[i]
			continue
		}
		q := s.Query()
		q.From, q.To = win.From, win.To
		q.Limit, q.Offset = want, skip
		skip = 0
		got, err := h.store.Samples(ctx, q)
		if err != nil {
			return obsPage{}, fmt.Errorf("search observations: %w", err)
		}
		page.samples = append(page.samples, got...)
		want -= len(got)
	}
	if len(page.samples) > s.Count {
		page.samples = page.samples[:s.Count]
		page.next = page.samples[len(page.samples)-1].ID
	}
	return page, nil
}

// findObservationsByID serves _id: each id is read directly and the other
// criteria are applied here, at most maxCodes samples.
func (h *handler) findObservationsByID(ctx context.Context, s ObservationSearch) (obsPage, error) {
	windows := s.Windows()
	var matched []store.Sample
	seen := map[string]bool{}
	for _, id := range s.IDs {
		smp, err := h.store.Sample(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return obsPage{}, fmt.Errorf("read observation: %w", err)
		}
		if ok, err := sampleVisible(ctx, h.store, smp.Patient, seen); err != nil {
			return obsPage{}, fmt.Errorf("read observation: %w", err)
		} else if !ok {
			continue // outside the caller's scope: as if it did not exist
		}
		if (s.Patient != "" && smp.Patient != s.Patient) ||
			(len(s.Codes) > 0 && !slices.Contains(s.Codes, smp.Code)) ||
			(len(s.Devices) > 0 && !slices.Contains(s.Devices, smp.Device)) ||
			!slices.ContainsFunc(windows, func(w Window) bool { return w.contains(smp.Time) }) ||
			slices.ContainsFunc(matched, func(m store.Sample) bool { return m.ID == smp.ID }) {
			continue
		}
		matched = append(matched, smp)
	}
	// The store's order: time, then series, both reversed for newest first.
	order := func(id string) (int64, int64) {
		series, t, _ := store.ParseObservationID(id)
		return t, series
	}
	compare := func(a, b string) int {
		ta, sa := order(a)
		tb, sb := order(b)
		c := cmp.Compare(ta, tb)
		if c == 0 {
			c = cmp.Compare(sa, sb)
		}
		if !s.Oldest {
			c = -c
		}
		return c
	}
	slices.SortFunc(matched, func(a, b store.Sample) int { return compare(a.ID, b.ID) })
	page := obsPage{total: len(matched)}
	if s.CountOnly || s.Count == 0 {
		return page, nil
	}
	if s.Cursor != "" {
		matched = slices.DeleteFunc(matched, func(m store.Sample) bool { return compare(m.ID, s.Cursor) <= 0 })
	}
	lo := min(s.Offset, len(matched))
	hi := min(lo+s.Count, len(matched))
	page.samples = matched[lo:hi]
	if hi < len(matched) && hi > lo {
		page.next = matched[hi-1].ID
	}
	return page, nil
}

// addObservations renders samples as match entries, trimmed to elements
// when asked, and with the Devices they reference as include entries.
func (h *handler) addObservations(r *http.Request, b *Bundle, samples []store.Sample, elements []string, includeDevices bool) error {
	var devices []string
	for _, sm := range samples {
		raw, err := renderObservationJSON(sm, elements)
		if err != nil {
			return err
		}
		b.addMatch(baseURL(r)+"/fhir/Observation/"+sm.ID, raw)
		if includeDevices && sm.Device != "" && !slices.Contains(devices, sm.Device) {
			devices = append(devices, sm.Device)
		}
	}
	for _, id := range devices {
		d, err := h.store.Device(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			continue // a reading may outlive its device's record
		}
		if err != nil {
			return fmt.Errorf("include device: %w", err)
		}
		if checkDevice(r.Context(), d) != nil {
			continue // now of another patient or organisation
		}
		raw, err := renderStored("Device", d.ID, d.Resource, d.Version, d.Updated)
		if err != nil {
			return err
		}
		b.Entry = append(b.Entry, BundleEntry{FullURL: baseURL(r) + "/fhir/Device/" + d.ID, Resource: json.RawMessage(raw), Search: &EntrySearch{Mode: "include"}})
	}
	return nil
}

// subsetted marks a resource trimmed by _elements, as the spec requires.
var subsetted = map[string]string{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}

// renderObservationJSON renders a sample: the typed Observation, or when
// elements is non-empty its JSON with only the listed top-level elements
// plus the mandatory ones.
func renderObservationJSON(s store.Sample, elements []string) (any, error) {
	obs := RenderObservation(s)
	if len(elements) == 0 {
		return obs, nil
	}
	raw, err := json.Marshal(obs)
	if err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil, fmt.Errorf("render observation: %w", err)
	}
	keep := map[string]bool{"resourceType": true, "id": true, "meta": true, "status": true, "code": true}
	for _, e := range elements {
		keep[e] = true
	}
	for k := range all {
		if !keep[k] {
			delete(all, k)
		}
	}
	var meta map[string]any
	json.Unmarshal(all["meta"], &meta)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["tag"] = []any{subsetted}
	all["meta"], _ = json.Marshal(meta)
	// Keep the element order of the full rendering.
	var buf bytes.Buffer
	buf.WriteByte('{')
	for _, k := range observationElements {
		v, ok := all[k]
		if !ok {
			continue
		}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.WriteString(strconv.Quote(k))
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return json.RawMessage(buf.Bytes()), nil
}

// observationElements is the element order of Observation as rendered.
var observationElements = []string{"resourceType", "id", "meta", "status", "category", "code", "subject",
	"effectiveDateTime", "issued", "valueQuantity", "device", "component"}

// lastnMax bounds $lastn's max: it is per code, and a patient has few codes.
const lastnMax = 100

// lastn serves Observation/$lastn: the newest max observations of each
// code for one patient, newest first within a code, codes in code order.
func (h *handler) lastn(w http.ResponseWriter, r *http.Request) error {
	values := r.URL.Query()
	maxN := 1
	if v := values.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return invalid("max must be a positive integer")
		}
		maxN = min(n, lastnMax)
	}
	values.Del("max")
	s, err := ParseObservationSearch(values, strictHandling(r), h.now())
	if err != nil {
		return err
	}
	if s.Patient == "" || len(s.IDs) > 0 || s.Cursor != "" || s.Offset != 0 {
		return invalid("$lastn needs patient and takes no _id, _cursor or _offset")
	}
	if err := h.scopeSearch(r.Context(), &s); err != nil {
		return err
	}
	var samples []store.Sample
	if !s.NoMatch {
		latest, err := h.store.Latest(r.Context(), s.Patient)
		if err != nil {
			return fmt.Errorf("lastn: %w", err)
		}
		for _, head := range latest {
			if len(s.Codes) > 0 && !slices.Contains(s.Codes, head.Code) {
				continue
			}
			q := s.Query()
			q.Codes, q.Limit, q.Offset, q.Oldest, q.After = []string{head.Code}, maxN, 0, false, ""
			if maxN == 1 && len(s.Excluded) == 0 && s.From.IsZero() && s.To.IsZero() && len(s.Devices) == 0 {
				samples = append(samples, head)
				continue
			}
			got, err := h.store.Samples(r.Context(), q)
			if err != nil {
				return fmt.Errorf("lastn: %w", err)
			}
			for _, g := range got {
				if slices.ContainsFunc(s.Windows(), func(w Window) bool { return w.contains(g.Time) }) {
					samples = append(samples, g)
				}
			}
		}
	}
	p := s.ResultParams
	p.Count, p.keyset = len(samples), true
	b := searchset(r, len(samples), p, "")
	if !s.CountOnly {
		if err := h.addObservations(r, &b, samples, s.Elements, s.IncludeDevices); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// everything serves Patient/{id}/$everything, bounded: the Patient, a page
// of its Observations (newest first, _count per page, next link by cursor)
// and the Devices those name.
func (h *handler) everything(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "Patient")
	if err != nil {
		return err
	}
	p, err := visiblePatient(r.Context(), h.store, id)
	if err != nil {
		return fmt.Errorf("everything: %w", err)
	}
	values := r.URL.Query()
	for _, name := range sortedNames(values) {
		switch name {
		case "_count", "_cursor":
		case "start", "end", "_since", "_type":
			return errorf(http.StatusBadRequest, "not-supported", "$everything supports only _count")
		default:
			if strictHandling(r) {
				return errorf(http.StatusBadRequest, "not-supported", "unknown parameter %q", clip(name))
			}
			values.Del(name)
		}
	}
	values.Set("patient", id)
	s, err := ParseObservationSearch(values, true, h.now())
	if err != nil {
		return err
	}
	page, err := h.findObservations(r.Context(), s)
	if err != nil {
		return err
	}
	b := searchset(r, page.total+1, s.ResultParams, page.next)
	raw, err := renderStored("Patient", p.ID, p.Resource, p.Version, p.Updated)
	if err != nil {
		return err
	}
	b.addMatch(baseURL(r)+"/fhir/Patient/"+p.ID, raw)
	if err := h.addObservations(r, &b, page.samples, nil, true); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}
