package fhir

import (
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/store"
)

// Code systems accepted in token searches.
const (
	systemLOINC    = "http://loinc.org"
	systemMDC      = "urn:iso:std:iso:11073:10101"
	systemUCUM     = "http://unitsofmeasure.org"
	systemCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
)

// Paging limits.
const (
	DefaultCount = 50
	MaxCount     = 1000
	// maxCodes bounds one search's code list, which becomes query
	// parameters in the store.
	maxCodes = 100
)

// ObservationSearch is a parsed Observation search, ready for the store.
type ObservationSearch struct {
	Patient string
	Codes   []string  // LOINC codes; empty means every code (unless NoMatch)
	From    time.Time // inclusive; zero means unbounded
	To      time.Time // exclusive; zero means unbounded
	// Excluded are the windows date=ne takes out of [From, To).
	Excluded []Window
	// IDs (_id) fetches these observations only; Patient is then optional.
	IDs     []string
	Devices []string // device ids; empty means any device
	Oldest  bool
	// IncludeDevices is _include=Observation:device.
	IncludeDevices bool
	// Elements (_elements) lists the top-level elements to return; the
	// mandatory ones are always returned.
	Elements []string
	// NoMatch is set when the criteria can match nothing (an unknown code
	// system, disjoint date ranges, another category); the store is not
	// asked, because an empty Codes list there means "every code".
	NoMatch bool
	ResultParams
}

// ResultParams are the result and paging parameters every search shares.
type ResultParams struct {
	Count  int
	Offset int
	// CountOnly is _summary=count (or _count=0): the total and no entries.
	CountOnly bool
	// Cursor (_cursor) is the id of the last result of the previous page.
	// Searches that page by cursor stay correct while data arrives; their
	// next links carry one instead of _offset.
	Cursor string
	keyset bool
	// Warnings explain, and Ignored names, the parameters that were
	// ignored under lenient handling.
	Warnings []string
	Ignored  []string
}

// parse takes a parameter no resource-specific case claimed: _count,
// _offset, _summary, _format, or an unknown one (an error when strict).
func (p *ResultParams) parse(name string, vs []string, strict bool) error {
	switch name {
	case "_count":
		n, err := singleInt(name, vs)
		if err != nil {
			return err
		}
		if n == 0 {
			p.CountOnly = true
		}
		p.Count = min(n, MaxCount)
	case "_offset":
		n, err := singleInt(name, vs)
		if err != nil {
			return err
		}
		p.Offset = n
	case "_cursor":
		if !p.keyset {
			return p.unknown(name, strict)
		}
		if len(vs) != 1 {
			return invalid("_cursor may be given once")
		}
		if _, _, err := store.ParseObservationID(vs[0]); err != nil {
			return invalid("_cursor is not valid; follow the Bundle's next link")
		}
		p.Cursor = vs[0]
	case "_summary":
		for _, v := range vs {
			switch v {
			case "count":
				p.CountOnly = true
			case "false":
			default:
				return errorf(http.StatusBadRequest, "not-supported", "_summary supports only count and false")
			}
		}
	case "_format":
		return checkFormat(vs)
	default:
		return p.unknown(name, strict)
	}
	return nil
}

// unknown handles a parameter this server does not know: an error under
// handling=strict, else a warning in the Bundle and the parameter left out
// of its links.
func (p *ResultParams) unknown(name string, strict bool) error {
	if strict {
		return errorf(http.StatusBadRequest, "not-supported", "unknown search parameter %q", clip(name))
	}
	p.Warnings = append(p.Warnings, "search parameter "+strconv.Quote(clip(name))+" is not supported and was ignored")
	p.Ignored = append(p.Ignored, name)
	return nil
}

// sortedNames lists the parameter names in order, so errors and warnings
// are deterministic.
func sortedNames(values url.Values) []string {
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Query is the store query for s over its whole window [From, To); see
// Windows for the parts date=ne leaves.
func (s ObservationSearch) Query() store.Query {
	return store.Query{Patient: s.Patient, Codes: s.Codes, From: s.From, To: s.To, Devices: s.Devices,
		Limit: s.Count, Offset: s.Offset, Oldest: s.Oldest, After: s.Cursor}
}

// Window is a half-open time range [From, To); a zero bound is unbounded.
type Window struct {
	From, To time.Time
}

// contains reports whether t lies in w.
func (w Window) contains(t time.Time) bool {
	return (w.From.IsZero() || !t.Before(w.From)) && (w.To.IsZero() || t.Before(w.To))
}

// Windows returns the disjoint windows left of [From, To) once the
// excluded ones are taken out, in the order results are returned (newest
// first unless Oldest).
func (s ObservationSearch) Windows() []Window {
	ws := []Window{{s.From, s.To}}
	for _, ex := range s.Excluded {
		var next []Window
		for _, w := range ws {
			// The part before ex, then the part after it.
			if !ex.From.IsZero() && (w.From.IsZero() || w.From.Before(ex.From)) {
				to := ex.From
				if !w.To.IsZero() && w.To.Before(to) {
					to = w.To
				}
				next = append(next, Window{w.From, to})
			}
			if !ex.To.IsZero() && (w.To.IsZero() || ex.To.Before(w.To)) {
				from := ex.To
				if !w.From.IsZero() && w.From.After(from) {
					from = w.From
				}
				next = append(next, Window{from, w.To})
			}
		}
		ws = next
	}
	if !s.Oldest {
		for i, j := 0, len(ws)-1; i < j; i, j = i+1, j-1 {
			ws[i], ws[j] = ws[j], ws[i]
		}
	}
	return ws
}

// ParseObservationSearch parses the query parameters of
// GET /fhir/Observation. Unknown parameters are ignored with a warning, or
// rejected when strict (Prefer: handling=strict). Known parameters with
// values this server cannot honour are always rejected: silently widening a
// clinical query is worse than failing it.
//
// now anchors the ap (approximately) date prefix.
func ParseObservationSearch(values url.Values, strict bool, now time.Time) (ObservationSearch, error) {
	s := ObservationSearch{ResultParams: ResultParams{Count: DefaultCount, keyset: true}}
	var codeSets, deviceSets [][]string
	for _, name := range sortedNames(values) {
		vs := values[name]
		switch name {
		case "patient", "subject":
			for _, v := range vs {
				id, err := parsePatientRef(name, v)
				if err != nil {
					return ObservationSearch{}, err
				}
				if s.Patient != "" && s.Patient != id {
					return ObservationSearch{}, invalid("only one patient may be searched at a time")
				}
				s.Patient = id
			}
		case "code":
			for _, v := range vs {
				set, err := parseCodes(v)
				if err != nil {
					return ObservationSearch{}, err
				}
				codeSets = append(codeSets, set)
			}
		case "category":
			for _, v := range vs {
				if !matchesVitalSigns(v) {
					s.NoMatch = true
				}
			}
		case "status":
			// Every stored reading is a final result.
			for _, v := range vs {
				if !tokenListHas(v, "http://hl7.org/fhir/observation-status", "final") {
					s.NoMatch = true
				}
			}
		case "identifier":
			// Readings keep no business identifiers, so none matches.
			s.NoMatch = true
		case "_id":
			if len(vs) != 1 {
				return ObservationSearch{}, invalid("_id may be given once (a comma-separated list)")
			}
			for _, id := range strings.Split(vs[0], ",") {
				if !validID(id) {
					return ObservationSearch{}, invalid("_id must list observation ids")
				}
				s.IDs = append(s.IDs, id)
			}
			if len(s.IDs) > maxCodes {
				return ObservationSearch{}, errorf(http.StatusBadRequest, "too-costly", "at most %d ids may be searched at once", maxCodes)
			}
		case "device":
			for _, v := range vs {
				set, err := parseRefList(name, "Device", v)
				if err != nil {
					return ObservationSearch{}, err
				}
				deviceSets = append(deviceSets, set)
			}
		case "_include":
			for _, v := range vs {
				if v != "Observation:device" {
					return ObservationSearch{}, errorf(http.StatusBadRequest, "not-supported", "_include supports only Observation:device")
				}
				s.IncludeDevices = true
			}
		case "_elements":
			for _, v := range vs {
				for _, e := range strings.Split(v, ",") {
					if !elementPattern.MatchString(e) {
						return ObservationSearch{}, invalid("_elements must list element names")
					}
					s.Elements = append(s.Elements, e)
				}
			}
		case "date":
			for _, v := range vs {
				if rest, ok := strings.CutPrefix(v, "ne"); ok {
					lo, hi, err := parseFHIRDate(rest)
					if err != nil {
						return ObservationSearch{}, err
					}
					s.Excluded = append(s.Excluded, Window{lo, hi})
					continue
				}
				from, to, err := parseDateParam(v, now)
				if err != nil {
					return ObservationSearch{}, err
				}
				if !from.IsZero() && (s.From.IsZero() || from.After(s.From)) {
					s.From = from
				}
				if !to.IsZero() && (s.To.IsZero() || to.Before(s.To)) {
					s.To = to
				}
			}
		case "_sort":
			if len(vs) != 1 {
				return ObservationSearch{}, invalid("_sort may be given once")
			}
			switch vs[0] {
			case "date":
				s.Oldest = true
			case "-date":
				s.Oldest = false
			default:
				return ObservationSearch{}, errorf(http.StatusBadRequest, "not-supported", "_sort supports only date and -date")
			}
		default:
			if err := s.ResultParams.parse(name, vs, strict); err != nil {
				return ObservationSearch{}, err
			}
		}
	}
	if s.Patient == "" && len(s.IDs) == 0 {
		return ObservationSearch{}, invalid("patient (or subject=Patient/{id}) is required")
	}
	if len(deviceSets) > 0 {
		s.Devices = intersect(deviceSets)
		if len(s.Devices) == 0 {
			s.NoMatch = true
		}
	}
	if s.Cursor != "" && s.Offset != 0 {
		return ObservationSearch{}, invalid("_cursor and _offset cannot be combined")
	}
	if len(s.Excluded) > maxCodes {
		return ObservationSearch{}, errorf(http.StatusBadRequest, "too-costly", "at most %d date=ne values may be given", maxCodes)
	}
	if len(codeSets) > 0 {
		s.Codes = intersect(codeSets)
		if len(s.Codes) > maxCodes {
			return ObservationSearch{}, errorf(http.StatusBadRequest, "too-costly", "at most %d codes may be searched at once", maxCodes)
		}
		if len(s.Codes) == 0 {
			s.NoMatch = true
		}
	}
	if !s.From.IsZero() && !s.To.IsZero() && !s.From.Before(s.To) {
		// Disjoint date criteria: keep From <= To and answer nothing.
		s.To = s.From
		s.NoMatch = true
	}
	return s, nil
}

// PatientSearch is a parsed Patient search.
type PatientSearch struct {
	Identifier *store.Identifier
	ResultParams
}

// ParsePatientSearch parses the query parameters of GET /fhir/Patient.
func ParsePatientSearch(values url.Values, strict bool) (PatientSearch, error) {
	s := PatientSearch{ResultParams: ResultParams{Count: DefaultCount}}
	for _, name := range sortedNames(values) {
		vs := values[name]
		switch name {
		case "identifier":
			if len(vs) != 1 || strings.Contains(vs[0], ",") {
				return PatientSearch{}, errorf(http.StatusBadRequest, "not-supported", "identifier supports a single [system|]value")
			}
			v := vs[0]
			id := &store.Identifier{Value: v}
			if i := strings.IndexByte(v, '|'); i >= 0 {
				id.System, id.Value = v[:i], v[i+1:]
			}
			if id.Value == "" {
				return PatientSearch{}, invalid("identifier needs a value")
			}
			s.Identifier = id
		default:
			if err := s.ResultParams.parse(name, vs, strict); err != nil {
				return PatientSearch{}, err
			}
		}
	}
	return s, nil
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// validID reports whether s is a FHIR logical id.
func validID(s string) bool { return idPattern.MatchString(s) }

var elementPattern = regexp.MustCompile(`^[a-z][A-Za-z0-9]{0,63}$`)

// tokenListHas reports whether a token parameter (comma means OR) names
// code, with no system or the given one.
func tokenListHas(v, system, code string) bool {
	for _, tok := range strings.Split(v, ",") {
		sys, c, hasSystem := strings.Cut(tok, "|")
		if !hasSystem {
			c = tok
		} else if sys != "" && sys != system {
			continue
		}
		if c == code {
			return true
		}
	}
	return false
}

// parseRefList reads a reference parameter: {id} or {Type}/{id}, comma
// meaning OR.
func parseRefList(name, resourceType, v string) ([]string, error) {
	var out []string
	for _, tok := range strings.Split(v, ",") {
		id := strings.TrimPrefix(tok, resourceType+"/")
		if !validID(id) {
			return nil, invalid("%s must be a %s id or %s/{id}", name, strings.ToLower(resourceType), resourceType)
		}
		out = append(out, id)
	}
	if len(out) > maxCodes {
		return nil, errorf(http.StatusBadRequest, "too-costly", "at most %d %s values may be searched at once", maxCodes, name)
	}
	return out, nil
}

func parsePatientRef(name, v string) (string, error) {
	if strings.Contains(v, ",") {
		return "", errorf(http.StatusBadRequest, "not-supported", "%s supports a single patient", name)
	}
	id := v
	if rest, ok := strings.CutPrefix(v, "Patient/"); ok {
		id = rest
	}
	if !validID(id) {
		return "", invalid("%s must be a patient id or Patient/{id}", name)
	}
	return id, nil
}

// parseCodes resolves one code parameter (a comma-separated OR list) to
// LOINC codes. A code of an unknown system matches nothing rather than
// failing, as FHIR token search prescribes.
func parseCodes(v string) ([]string, error) {
	var out []string
	for _, tok := range strings.Split(v, ",") {
		system, code, hasSystem := strings.Cut(tok, "|")
		if !hasSystem {
			system, code = systemLOINC, tok
		}
		if code == "" {
			return nil, invalid("code needs [system|]code")
		}
		switch system {
		case systemLOINC:
			if c, ok := codes.ByLOINC(code); ok {
				out = append(out, c.LOINC)
			} else if c, ok := codes.Lookup(code); ok && loincLike(code) {
				// A LOINC code the table accepts as a synonym (e.g. 2708-6).
				out = append(out, c.LOINC)
			} else {
				out = append(out, code)
			}
		case systemMDC:
			n, err := strconv.Atoi(code)
			if err != nil {
				continue
			}
			if c, ok := codes.Lookup(code); ok && c.MDCCode == n {
				out = append(out, c.LOINC)
			}
		}
	}
	return out, nil
}

var loincPattern = regexp.MustCompile(`^[0-9]{1,7}-[0-9]$`)

func loincLike(s string) bool { return loincPattern.MatchString(s) }

func matchesVitalSigns(v string) bool {
	for _, tok := range strings.Split(v, ",") {
		system, code, hasSystem := strings.Cut(tok, "|")
		if !hasSystem {
			code = tok
		} else if system != "" && system != systemCategory {
			continue
		}
		if code == "vital-signs" {
			return true
		}
	}
	return false
}

func intersect(sets [][]string) []string {
	out := append([]string(nil), sets[0]...)
	for _, set := range sets[1:] {
		keep := out[:0]
		for _, c := range out {
			for _, d := range set {
				if c == d {
					keep = append(keep, c)
					break
				}
			}
		}
		out = keep
	}
	// Deduplicate, keeping the order given.
	seen := map[string]bool{}
	uniq := out[:0]
	for _, c := range out {
		if !seen[c] {
			seen[c] = true
			uniq = append(uniq, c)
		}
	}
	return uniq
}

func singleInt(name string, vs []string) (int, error) {
	if len(vs) != 1 {
		return 0, invalid("%s may be given once", name)
	}
	n, err := strconv.Atoi(vs[0])
	if err != nil || n < 0 {
		return 0, invalid("%s must be a non-negative integer", name)
	}
	return n, nil
}

func checkFormat(vs []string) error {
	for _, v := range vs {
		switch v {
		case "json", "application/json", "application/fhir+json":
		default:
			return errorf(http.StatusNotAcceptable, "not-supported", "only JSON is supported")
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// parseDateParam turns one date parameter into a half-open window: From
// inclusive, To exclusive, either zero when unbounded. The value's implicit
// range follows its precision (2026 is the whole year); a value without a
// zone, including a date alone, is taken as UTC so that results do not depend
// on where the server runs. Effective times are instants, so sa and eb mean
// the same as gt and lt. ap widens the value's range by a tenth of its
// distance from now, as the FHIR search page suggests. ne is handled by the
// caller, since it leaves two windows.
func parseDateParam(v string, now time.Time) (from, to time.Time, err error) {
	prefix := "eq"
	if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
	}
	lo, hi, err := parseFHIRDate(v)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	switch prefix {
	case "eq":
		return lo, hi, nil
	case "ge":
		return lo, time.Time{}, nil
	case "gt", "sa":
		return hi, time.Time{}, nil
	case "lt", "eb":
		return time.Time{}, lo, nil
	case "le":
		return time.Time{}, hi, nil
	case "ap":
		gap := now.Sub(lo)
		if gap < 0 {
			gap = -gap
		}
		return lo.Add(-gap / 10), hi.Add(gap / 10), nil
	default:
		return time.Time{}, time.Time{}, invalid("unknown date prefix %q", clip(prefix))
	}
}

var datePattern = regexp.MustCompile(`^([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$`)

// parseFHIRDate parses a FHIR date, dateTime or instant of any precision and
// returns the range it denotes.
func parseFHIRDate(v string) (lo, hi time.Time, err error) {
	m := datePattern.FindStringSubmatch(v)
	if m == nil {
		return time.Time{}, time.Time{}, invalid("date must be a FHIR date or dateTime, e.g. 2026-11-23 or 2026-11-23T10:00:00Z")
	}
	atoi := func(s string, def int) int {
		if s == "" {
			return def
		}
		n, _ := strconv.Atoi(s) // the pattern admits digits only
		return n
	}
	year, month, day := atoi(m[1], 0), atoi(m[2], 1), atoi(m[3], 1)
	hour, minute, sec := atoi(m[4], 0), atoi(m[5], 0), atoi(m[6], 0)
	if year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, time.Time{}, invalid("date is out of range")
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		zh, zm := atoi(z[1:3], 0), atoi(z[4:6], 0)
		if zh > 14 || zm > 59 {
			return time.Time{}, time.Time{}, invalid("date zone offset is out of range")
		}
		off := zh*3600 + zm*60
		if z[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	nanos := 0
	step := time.Second
	if f := m[7]; f != "" {
		nanos = atoi((f + "000000000")[:9], 0)
		step = time.Duration(1)
		for range 9 - len(f) {
			step *= 10
		}
	}
	lo = time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc)
	switch {
	case m[2] == "":
		hi = lo.AddDate(1, 0, 0)
	case m[3] == "":
		hi = lo.AddDate(0, 1, 0)
	case m[4] == "":
		hi = lo.AddDate(0, 0, 1)
	case m[6] == "":
		hi = lo.Add(time.Minute)
	default:
		hi = lo.Add(step)
	}
	return lo.UTC(), hi.UTC(), nil
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
