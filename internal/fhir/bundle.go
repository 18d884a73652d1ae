package fhir

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strconv"

	"github.com/tendhealth/tend/internal/store"
)

// Bundle is a searchset Bundle.
type Bundle struct {
	ResourceType string        `json:"resourceType"`
	Type         string        `json:"type"`
	Total        int           `json:"total"`
	Link         []BundleLink  `json:"link,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

// BundleLink is a paging link.
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is one search result or the outcome of the search.
type BundleEntry struct {
	FullURL string `json:"fullUrl,omitempty"`
	// Resource is a typed resource or its JSON (json.RawMessage); typed
	// values are encoded once, with the Bundle, rather than twice.
	Resource any          `json:"resource"`
	Search   *EntrySearch `json:"search,omitempty"`
}

// EntrySearch says why an entry is in a searchset.
type EntrySearch struct {
	Mode string `json:"mode"`
}

// baseURL is the absolute server root as the client addressed it. Only
// r.Host and r.TLS are trusted; forwarded headers are not, since the proxy
// setup is unknown here.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// searchset builds a Bundle with paging links for a page at offset of
// count entries out of total. A search that pages by cursor gets a next
// link carrying nextCursor (the last id of this page; "" on the last page)
// and no previous link.
// Ignored parameters are left out of the links, which show the search as
// it was actually performed.
func searchset(r *http.Request, total int, p ResultParams, nextCursor string) Bundle {
	b := Bundle{ResourceType: "Bundle", Type: "searchset", Total: total}
	used := r.URL.Query()
	for _, name := range p.Ignored {
		used.Del(name)
	}
	page := func(off int) string {
		q := maps.Clone(used)
		q.Set("_count", strconv.Itoa(p.Count))
		q.Set("_offset", strconv.Itoa(off))
		return baseURL(r) + r.URL.Path + "?" + q.Encode()
	}
	self := func() string {
		q := maps.Clone(used)
		q.Set("_count", strconv.Itoa(p.Count))
		return baseURL(r) + r.URL.Path + "?" + q.Encode()
	}
	cursor := func(c string) string {
		q := maps.Clone(used)
		q.Del("_offset")
		q.Set("_count", strconv.Itoa(p.Count))
		q.Set("_cursor", c)
		return baseURL(r) + r.URL.Path + "?" + q.Encode()
	}
	switch {
	case p.CountOnly:
		b.Link = []BundleLink{{Relation: "self", URL: baseURL(r) + r.URL.Path + "?" + used.Encode()}}
	case p.keyset && (p.Cursor != "" || p.Offset == 0):
		b.Link = []BundleLink{{Relation: "self", URL: self()}}
		if nextCursor != "" {
			b.Link = append(b.Link, BundleLink{Relation: "next", URL: cursor(nextCursor)})
		}
	case p.keyset:
		// An explicit _offset: the next page continues by cursor.
		b.Link = []BundleLink{{Relation: "self", URL: page(p.Offset)}}
		if nextCursor != "" {
			b.Link = append(b.Link, BundleLink{Relation: "next", URL: cursor(nextCursor)})
		}
		if p.Count > 0 {
			b.Link = append(b.Link, BundleLink{Relation: "previous", URL: page(max(0, p.Offset-p.Count))})
		}
	default:
		b.Link = []BundleLink{{Relation: "self", URL: page(p.Offset)}}
		if p.Count > 0 && p.Offset+p.Count < total {
			b.Link = append(b.Link, BundleLink{Relation: "next", URL: page(p.Offset + p.Count)})
		}
		if p.Offset > 0 && p.Count > 0 {
			b.Link = append(b.Link, BundleLink{Relation: "previous", URL: page(max(0, p.Offset-p.Count))})
		}
	}
	if len(p.Warnings) > 0 {
		oo := OperationOutcome{ResourceType: "OperationOutcome"}
		for _, w := range p.Warnings {
			oo.Issue = append(oo.Issue, Issue{Severity: "warning", Code: "not-supported", Diagnostics: w})
		}
		raw, _ := json.Marshal(oo)
		b.Entry = append(b.Entry, BundleEntry{Resource: json.RawMessage(raw), Search: &EntrySearch{Mode: "outcome"}})
	}
	return b
}

func (b *Bundle) addMatch(fullURL string, resource any) {
	if raw, ok := resource.([]byte); ok {
		resource = json.RawMessage(raw)
	}
	b.Entry = append(b.Entry, BundleEntry{FullURL: fullURL, Resource: resource, Search: &EntrySearch{Mode: "match"}})
}

func (h *handler) readObservation(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "Observation")
	if err != nil {
		return err
	}
	s, err := h.store.Sample(r.Context(), id)
	if err == nil {
		err = checkPatientID(r.Context(), h.store, s.Patient)
	}
	if err != nil {
		return fmt.Errorf("read observation: %w", err)
	}
	writeJSON(w, http.StatusOK, RenderObservation(s))
	return nil
}

func (h *handler) searchPatients(w http.ResponseWriter, r *http.Request) error {
	s, err := ParsePatientSearch(r.URL.Query(), strictHandling(r))
	if err != nil {
		return err
	}
	limit := s.Count
	if s.CountOnly {
		// The store has no count-only call for patients; ask for one row.
		limit = 1
	}
	var patients []store.Patient
	var total int
	if sc := scopeOf(r.Context()); sc != nil {
		// Only the caller's patients are read and counted (scope.go).
		f := sc.PatientFilter()
		f.Identifier, f.Limit, f.Offset = s.Identifier, limit, s.Offset
		patients, total, err = h.store.SearchPatients(r.Context(), f)
	} else {
		patients, total, err = h.store.Patients(r.Context(), s.Identifier, limit, s.Offset)
	}
	if err != nil {
		return fmt.Errorf("search patients: %w", err)
	}
	b := searchset(r, total, s.ResultParams, "")
	if !s.CountOnly {
		for _, p := range patients {
			raw, err := renderStored("Patient", p.ID, p.Resource, p.Version, p.Updated)
			if err != nil {
				return err
			}
			b.addMatch(baseURL(r)+"/fhir/Patient/"+p.ID, raw)
		}
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}
