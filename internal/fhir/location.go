package fhir

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/tendhealth/tend/internal/store"
)

// Location is a read-only view of the places Tend knows: the locations of
// patients' stays (HL7 ADT PV1-3) and the locations devices are installed
// at (identifier system store.LocationSystem). A location is visible when
// one of the caller's patients stayed there or one of the devices the
// caller may see is installed there. Tend keeps no record per location, so
// the resource carries only what the location string says.
type Location struct {
	ResourceType         string             `json:"resourceType"`
	ID                   string             `json:"id"`
	Identifier           []store.Identifier `json:"identifier"`
	Status               string             `json:"status"`
	Name                 string             `json:"name"`
	Mode                 string             `json:"mode"`
	ManagingOrganization *orgRef            `json:"managingOrganization,omitempty"`
}

func renderLocation(loc, org string) (Location, bool) {
	id, ok := encodeLocationID(loc)
	if !ok {
		return Location{}, false
	}
	ref := orgReference(org)
	return Location{ResourceType: "Location", ID: id, Identifier: []store.Identifier{{System: store.LocationSystem, Value: loc}},
		Status: "active", Name: loc, Mode: "instance", ManagingOrganization: &ref}, true
}

// encodeLocationID extends the record id codec (fhirid.go) to location
// strings, which hold '/' and may hold other characters: '.' is ".0", '_'
// is ".1", '/' is ".2" and any other byte outside [A-Za-z0-9-] is ".x"
// and two lowercase hex digits. Locations without such bytes keep their
// record-codec id. False when the id would exceed 64 characters.
func encodeLocationID(loc string) (string, bool) {
	if loc == "" {
		return "", false
	}
	const hexDigits = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(loc); i++ {
		switch c := loc[i]; {
		case c == '.':
			b.WriteString(".0")
		case c == '_':
			b.WriteString(".1")
		case c == '/':
			b.WriteString(".2")
		case plainIDByte(c):
			b.WriteByte(c)
		default:
			b.WriteString(".x")
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
	}
	out := b.String()
	return out, len(out) <= 64
}

// decodeLocationID inverts encodeLocationID, accepting only canonical ids.
func decodeLocationID(fid string) (string, bool) {
	if !validID(fid) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(fid); i++ {
		c := fid[i]
		if c != '.' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(fid) {
			return "", false
		}
		i++
		switch fid[i] {
		case '0':
			b.WriteByte('.')
		case '1':
			b.WriteByte('_')
		case '2':
			b.WriteByte('/')
		case 'x':
			if i+2 >= len(fid) {
				return "", false
			}
			v, ok := lowerHexByte(fid[i+1], fid[i+2])
			if !ok || v == '.' || v == '_' || v == '/' || plainIDByte(v) {
				return "", false // not canonical: that byte has a shorter form
			}
			b.WriteByte(v)
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), b.Len() > 0
}

func plainIDByte(c byte) bool {
	return c == '-' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
}

func lowerHexByte(hi, lo byte) (byte, bool) {
	h, ok1 := lowerHexDigit(hi)
	l, ok2 := lowerHexDigit(lo)
	return h<<4 | l, ok1 && ok2
}

func lowerHexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// visibleLocations lists, sorted, every location the caller may see. Tend
// indexes stays by patient only, so this reads the stays of each of the
// caller's patients: one query per patient.
func (h *handler) visibleLocations(ctx context.Context) ([]string, error) {
	pf := store.PatientFilter{Org: callerOrg(ctx)}
	df := store.DeviceFilter{Org: callerOrg(ctx)}
	if sc := scopeOf(ctx); sc != nil {
		pf, df = sc.PatientFilter(), sc.DeviceFilter()
	}
	seen := map[string]bool{}
	patients, _, err := h.store.SearchPatients(ctx, pf)
	if err != nil {
		return nil, fmt.Errorf("list patients for locations: %w", err)
	}
	for _, p := range patients {
		stays, err := h.store.Locations(ctx, p.ID)
		if err != nil {
			return nil, fmt.Errorf("list locations of a patient: %w", err)
		}
		for _, s := range stays {
			if s.Location != "" {
				seen[s.Location] = true
			}
		}
	}
	devices, _, err := h.store.SearchDevices(ctx, df)
	if err != nil {
		return nil, fmt.Errorf("list devices for locations: %w", err)
	}
	for _, d := range devices {
		for _, id := range d.Identifiers {
			if id.System == store.LocationSystem && id.Value != "" {
				seen[id.Value] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for loc := range seen {
		out = append(out, loc)
	}
	slices.Sort(out)
	return out, nil
}

func (h *handler) readLocation(w http.ResponseWriter, r *http.Request) error {
	loc, ok := decodeLocationID(r.PathValue("id"))
	if !ok {
		return notFound("Location")
	}
	locs, err := h.visibleLocations(r.Context())
	if err != nil {
		return fmt.Errorf("read location: %w", err)
	}
	if _, found := slices.BinarySearch(locs, loc); !found {
		return notFound("Location")
	}
	res, _ := renderLocation(loc, callerOrg(r.Context()))
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (h *handler) searchLocations(w http.ResponseWriter, r *http.Request) error {
	s, err := parseOrgSearch(r.URL.Query(), strictHandling(r), map[string]string{"name": "string", "identifier": "identifier"})
	if err != nil {
		return err
	}
	locs, err := h.visibleLocations(r.Context())
	if err != nil {
		return fmt.Errorf("search locations: %w", err)
	}
	var matches []Location
	for _, loc := range locs {
		res, ok := renderLocation(loc, callerOrg(r.Context()))
		if ok && s.matchLocationName(loc) && s.matchIdentifier(store.LocationSystem, loc) {
			matches = append(matches, res)
		}
	}
	b := searchset(r, len(matches), s.ResultParams, "")
	if !s.CountOnly {
		page := matches[min(s.Offset, len(matches)):]
		for _, m := range page[:min(s.Count, len(page))] {
			b.addMatch(baseURL(r)+"/fhir/Location/"+m.ID, m)
		}
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// matchLocationName is string search on the name, where the parts of a
// location ("WEST/ICU/12/A") count as its words.
func (s orgSearch) matchLocationName(loc string) bool {
	return s.matchString("name", loc+" "+strings.ReplaceAll(loc, "/", " "))
}

func (h *handler) locationRoutes() {
	h.route("/fhir/Location", map[string]handlerFunc{http.MethodGet: h.searchLocations})
	h.route("/fhir/Location/{id}", map[string]handlerFunc{http.MethodGet: h.readLocation})
}

// locationCapabilities declares the above for the CapabilityStatement.
func locationCapabilities(paging []capSearchParam) []capResource {
	return []capResource{{
		Type: "Location",
		Documentation: "read-only view of the locations Tend keeps (patient stays from HL7 ADT PV1-3, devices' " + store.LocationSystem + " identifiers); " +
			"only those of the caller's patients and visible devices; the id is the location with '.', '_', '/' escaped as .0, .1, .2 and other characters as .x and two hex digits",
		Interaction: interactions("read", "search-type"),
		Versioning:  "no-version",
		SearchParam: append([]capSearchParam{
			{Name: "name", Type: "string", Documentation: "the location or one of its parts (split at '/' and spaces) starts with the value, ignoring case"},
			{Name: "identifier", Type: "token", Documentation: "[" + store.LocationSystem + "|]location; exact"},
		}, paging...),
	}}
}
