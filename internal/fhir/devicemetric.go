package fhir

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/store"
)

// DeviceMetric is a read-only view of what a device measures, derived from
// the codes its stored readings carry: one metric per device and code.
// Tend keeps no metric records (no calibration, colour or operational
// state), so a metric exists exactly while a reading of it does.
type DeviceMetric struct {
	ResourceType string    `json:"resourceType"`
	ID           string    `json:"id"`
	Type         Concept   `json:"type"`
	Unit         *Concept  `json:"unit,omitempty"`
	Source       Reference `json:"source"`
	Category     string    `json:"category"`
}

// metricSep joins the escaped device id and code in a metric id: ".2"
// never occurs in an id escaped by encodeID (fhirid.go), so the split is
// unambiguous.
const metricSep = ".2"

func metricID(device, code string) (string, bool) {
	d, ok1 := encodeID(device)
	c, ok2 := encodeID(code)
	id := d + metricSep + c
	return id, ok1 && ok2 && len(id) <= 64
}

func parseMetricID(fid string) (device, code string, ok bool) {
	d, c, found := strings.Cut(fid, metricSep)
	if !found {
		return "", "", false
	}
	device, ok1 := decodeID(d)
	code, ok2 := decodeID(c)
	if !ok1 || !ok2 {
		return "", "", false
	}
	if canon, ok := metricID(device, code); !ok || canon != fid {
		return "", "", false
	}
	return device, code, true
}

func renderMetric(device string, c codes.Code) (DeviceMetric, bool) {
	id, ok := metricID(device, c.LOINC)
	if !ok {
		return DeviceMetric{}, false
	}
	m := DeviceMetric{ResourceType: "DeviceMetric", ID: id, Type: concept(c.LOINC),
		Source: Reference{Reference: "Device/" + device}, Category: "measurement"}
	if c.Unit != "" {
		m.Unit = &Concept{Coding: []Coding{{System: systemUCUM, Code: c.Unit}}}
	}
	return m, true
}

// visibleDevice reads a device in the caller's scope.
func (h *handler) visibleDevice(ctx context.Context, id string) (store.Device, error) {
	d, err := h.store.Device(ctx, id)
	if err == nil {
		err = checkDevice(ctx, d)
	}
	return d, err
}

// deviceMetrics lists the metrics of a visible device in the order of the
// code table. Readings are found through the patients the device has been
// bound to, and only those the caller may see: one indexed lookup per
// patient and known code.
func (h *handler) deviceMetrics(ctx context.Context, d store.Device) ([]DeviceMetric, error) {
	bindings, err := h.store.Bindings(ctx, d.ID)
	if err != nil {
		return nil, fmt.Errorf("device bindings: %w", err)
	}
	var patients []string
	seen := map[string]bool{}
	for _, b := range bindings {
		if b.Patient == "" || slices.Contains(patients, b.Patient) {
			continue
		}
		ok, err := sampleVisible(ctx, h.store, b.Patient, seen)
		if err != nil {
			return nil, err
		}
		if ok {
			patients = append(patients, b.Patient)
		}
	}
	var out []DeviceMetric
	for _, c := range codes.All() {
		for _, p := range patients {
			ss, err := h.store.Samples(ctx, store.Query{Patient: p, Codes: []string{c.LOINC}, Devices: []string{d.ID}, Limit: 1})
			if err != nil {
				return nil, fmt.Errorf("device metrics: %w", err)
			}
			if len(ss) > 0 {
				if m, ok := renderMetric(d.ID, c); ok {
					out = append(out, m)
				}
				break
			}
		}
	}
	return out, nil
}

func (h *handler) readDeviceMetric(w http.ResponseWriter, r *http.Request) error {
	device, _, ok := parseMetricID(r.PathValue("id"))
	if !ok {
		return notFound("DeviceMetric")
	}
	d, err := h.visibleDevice(r.Context(), device)
	if err != nil {
		return fmt.Errorf("read device metric: %w", err)
	}
	ms, err := h.deviceMetrics(r.Context(), d)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.ID == r.PathValue("id") {
			writeJSON(w, http.StatusOK, m)
			return nil
		}
	}
	return notFound("DeviceMetric")
}

func (h *handler) searchDeviceMetrics(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	sources, err := parseSources(q["source"])
	if err != nil {
		return err
	}
	delete(q, "source")
	s, err := parseOrgSearch(q, strictHandling(r), map[string]string{})
	if err != nil {
		return err
	}
	var devices []store.Device
	if sources != nil {
		for _, id := range sources {
			d, err := h.visibleDevice(r.Context(), id)
			if isNotFound(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("search device metrics: %w", err)
			}
			devices = append(devices, d)
		}
	} else {
		df := store.DeviceFilter{Org: callerOrg(r.Context())}
		if sc := scopeOf(r.Context()); sc != nil {
			df = sc.DeviceFilter()
		}
		if devices, _, err = h.store.SearchDevices(r.Context(), df); err != nil {
			return fmt.Errorf("search device metrics: %w", err)
		}
	}
	var matches []DeviceMetric
	for _, d := range devices {
		ms, err := h.deviceMetrics(r.Context(), d)
		if err != nil {
			return err
		}
		matches = append(matches, ms...)
	}
	b := searchset(r, len(matches), s.ResultParams, "")
	if !s.CountOnly {
		page := matches[min(s.Offset, len(matches)):]
		for _, m := range page[:min(s.Count, len(page))] {
			b.addMatch(baseURL(r)+"/fhir/DeviceMetric/"+m.ID, m)
		}
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// parseSources reads source parameters (Device/{id} or {id}, comma
// means OR; repeated parameters AND): nil when there are none, else the
// device ids that satisfy all of them, sorted and unique (maybe none).
func parseSources(vs []string) ([]string, error) {
	if len(vs) == 0 {
		return nil, nil
	}
	var out []string
	for i, v := range vs {
		toks := strings.Split(v, ",")
		if len(toks) > maxCodes {
			return nil, errorf(http.StatusBadRequest, "too-costly", "at most %d source values may be searched at once", maxCodes)
		}
		var set []string
		for _, tok := range toks {
			id := strings.TrimPrefix(tok, "Device/")
			if !validID(id) {
				return nil, invalid("source must be a device id or Device/{id}")
			}
			set = append(set, id)
		}
		if i == 0 {
			out = set
		} else {
			out = slices.DeleteFunc(out, func(id string) bool { return !slices.Contains(set, id) })
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (h *handler) deviceMetricRoutes() {
	h.route("/fhir/DeviceMetric", map[string]handlerFunc{http.MethodGet: h.searchDeviceMetrics})
	h.route("/fhir/DeviceMetric/{id}", map[string]handlerFunc{http.MethodGet: h.readDeviceMetric})
}

// deviceMetricCapabilities declares the above for the CapabilityStatement.
func deviceMetricCapabilities(paging []capSearchParam) []capResource {
	return []capResource{{
		Type: "DeviceMetric",
		Documentation: "read-only view of what each device measures: one metric per device and code of Tend's code table found in its stored readings " +
			"(of the patients it has been bound to that the caller may see); type is the LOINC code with its MDC code, unit the UCUM unit, category measurement. " +
			"Only for devices the caller may see; the id is the device id and the code, escaped as for Organization, joined by .2",
		Interaction: interactions("read", "search-type"),
		Versioning:  "no-version",
		SearchParam: append([]capSearchParam{
			{Name: "source", Type: "reference", Documentation: "Device/{id} or {id}; comma means OR; without it, every device the caller may see"},
		}, paging...),
	}}
}
