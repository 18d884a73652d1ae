package fhir

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Instance history of Patient and Device. The store keeps only the
// current version of each, so a history Bundle holds that one version:
// what is kept, and nothing pretends to be more. Earlier versions cannot
// be read (vread answers 404 for them), so readHistory stays false in the
// CapabilityStatement, which says the same.

// historyBundle is a Bundle of type history.
type historyBundle struct {
	ResourceType string         `json:"resourceType"`
	Type         string         `json:"type"`
	Total        int            `json:"total"`
	Link         []BundleLink   `json:"link"`
	Entry        []historyEntry `json:"entry,omitempty"`
}

type historyEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource any             `json:"resource"`
	Request  historyRequest  `json:"request"`
	Response historyResponse `json:"response"`
}

type historyRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type historyResponse struct {
	Status       string `json:"status"`
	Etag         string `json:"etag"`
	LastModified string `json:"lastModified"`
}

// historyParams are the parameters of an instance history: _since and
// _count. Others are ignored (left out of the self link, which shows what
// was done) or, under Prefer: handling=strict, refused.
type historyParams struct {
	since     time.Time
	countOnly bool
	used      url.Values
}

func parseHistoryParams(values url.Values, strict bool) (historyParams, error) {
	p := historyParams{used: url.Values{}}
	for _, name := range sortedNames(values) {
		vs := values[name]
		switch name {
		case "_since":
			if len(vs) != 1 {
				return historyParams{}, invalid("_since may be given once")
			}
			lo, _, err := parseFHIRDate(vs[0])
			if err != nil {
				return historyParams{}, err
			}
			p.since = lo
		case "_count":
			n, err := singleInt(name, vs)
			if err != nil {
				return historyParams{}, err
			}
			p.countOnly = n == 0
		case "_format":
			if err := checkFormat(vs); err != nil {
				return historyParams{}, err
			}
		default:
			if strict {
				return historyParams{}, errorf(http.StatusBadRequest, "not-supported", "unknown history parameter %q", clip(name))
			}
			continue
		}
		p.used[name] = vs
	}
	return p, nil
}

func (h *handler) patientHistory(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "Patient")
	if err != nil {
		return err
	}
	params, err := parseHistoryParams(r.URL.Query(), strictHandling(r))
	if err != nil {
		return err
	}
	p, err := visiblePatient(r.Context(), h.store, id)
	if err != nil {
		return fmt.Errorf("patient history: %w", err)
	}
	body, err := renderStored("Patient", p.ID, p.Resource, p.Version, p.Updated)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, historyOf(r, params, "Patient", p.ID, p.Version, p.Updated, body))
	return nil
}

func (h *handler) deviceHistory(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "Device")
	if err != nil {
		return err
	}
	params, err := parseHistoryParams(r.URL.Query(), strictHandling(r))
	if err != nil {
		return err
	}
	d, err := h.store.Device(r.Context(), id)
	if err == nil {
		err = checkDevice(r.Context(), d)
	}
	if err != nil {
		return fmt.Errorf("device history: %w", err)
	}
	body, err := renderStored("Device", d.ID, d.Resource, d.Version, d.Updated)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, historyOf(r, params, "Device", d.ID, d.Version, d.Updated, body))
	return nil
}

// historyOf builds the history of one resource from its kept version.
func historyOf(r *http.Request, p historyParams, resourceType, id string, version int, updated time.Time, body []byte) historyBundle {
	self := baseURL(r) + r.URL.Path
	if len(p.used) > 0 {
		self += "?" + p.used.Encode()
	}
	b := historyBundle{ResourceType: "Bundle", Type: "history", Link: []BundleLink{{Relation: "self", URL: self}}}
	if !p.since.IsZero() && updated.Before(p.since) {
		return b // the kept version is older than _since
	}
	b.Total = 1
	if p.countOnly {
		return b
	}
	// The first version was created, later ones were updates.
	req := historyRequest{Method: http.MethodPut, URL: resourceType + "/" + id}
	status := "200"
	if version <= 1 {
		req = historyRequest{Method: http.MethodPost, URL: resourceType}
		status = "201"
	}
	b.Entry = []historyEntry{{
		FullURL:  baseURL(r) + "/fhir/" + resourceType + "/" + id,
		Resource: json.RawMessage(body),
		Request:  req,
		Response: historyResponse{Status: status, Etag: `W/"` + strconv.Itoa(version) + `"`, LastModified: formatInstant(updated)},
	}}
	return b
}
