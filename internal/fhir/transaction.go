package fhir

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

const (
	// maxBundleBody bounds a batch or transaction body: a thousand
	// Observations of about a kilobyte each, with room to spare.
	maxBundleBody = 4 << 20
	// maxBundleEntries bounds the work one request can ask for.
	maxBundleEntries = 1000
)

// inBundle is a received batch or transaction Bundle.
type inBundle struct {
	ResourceType string    `json:"resourceType"`
	Type         string    `json:"type"`
	Entry        []inEntry `json:"entry"`
}

type inEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist"`
	} `json:"request"`
}

// decodeBundle parses and checks the envelope of a batch or transaction:
// every entry must be a POST of an Observation, the only write this
// endpoint takes. The entries' resources are checked later, one by one.
func decodeBundle(body []byte) (inBundle, error) {
	var b inBundle
	if err := json.Unmarshal(body, &b); err != nil {
		return inBundle{}, jsonError(err)
	}
	if b.ResourceType != "Bundle" {
		return inBundle{}, &Error{Status: http.StatusBadRequest, Code: "invalid", Expression: "Bundle.resourceType",
			Msg: "the server base accepts only a Bundle"}
	}
	if b.Type != "batch" && b.Type != "transaction" {
		return inBundle{}, &Error{Status: http.StatusBadRequest, Code: "not-supported", Expression: "Bundle.type",
			Msg: "Bundle.type must be batch or transaction"}
	}
	if len(b.Entry) > maxBundleEntries {
		return inBundle{}, &Error{Status: http.StatusRequestEntityTooLarge, Code: "too-costly", Expression: "Bundle.entry",
			Msg: fmt.Sprintf("at most %d entries are accepted in one Bundle", maxBundleEntries)}
	}
	for i, e := range b.Entry {
		path := fmt.Sprintf("Bundle.entry[%d]", i)
		if e.Request == nil {
			return inBundle{}, invalidAt(path+".request", "request is required in a %s", b.Type)
		}
		if e.Request.Method != http.MethodPost {
			return inBundle{}, &Error{Status: http.StatusUnprocessableEntity, Code: "not-supported", Expression: path + ".request.method",
				Msg: "only POST (create) of Observation is supported in a Bundle"}
		}
		if u := strings.TrimSuffix(e.Request.URL, "/"); u != "Observation" {
			return inBundle{}, &Error{Status: http.StatusUnprocessableEntity, Code: "not-supported", Expression: path + ".request.url",
				Msg: "only POST (create) of Observation is supported in a Bundle"}
		}
		if len(e.Resource) == 0 {
			return inBundle{}, invalidAt(path+".resource", "resource is required for a create")
		}
	}
	return b, nil
}

func invalidAt(expr, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid", Expression: expr, Msg: fmt.Sprintf(format, args...)}
}

// responseBundle is a batch-response or transaction-response.
type responseBundle struct {
	ResourceType string          `json:"resourceType"`
	Type         string          `json:"type"`
	Entry        []responseEntry `json:"entry,omitempty"`
}

type responseEntry struct {
	FullURL  string        `json:"fullUrl,omitempty"`
	Resource any           `json:"resource,omitempty"`
	Response entryResponse `json:"response"`
}

type entryResponse struct {
	Status   string            `json:"status"`
	Location string            `json:"location,omitempty"`
	Outcome  *OperationOutcome `json:"outcome,omitempty"`
}

// entryResult is the fate of one entry while a Bundle is processed.
type entryResult struct {
	in      obsInput
	err     error // refused (batch only; a transaction fails whole)
	done    created
	pending bool // to be committed by this request
}

// postBundle processes a batch or transaction of Observation creates.
// A transaction is all or nothing: every entry is checked first, then all
// new readings go to the committer in one call, which makes them durable as
// one stream message. A batch commits the entries that pass and reports
// each one that did not.
func (h *handler) postBundle(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, maxBundleBody)
	if err != nil {
		return err
	}
	b, err := decodeBundle(body)
	if err != nil {
		return h.keepRejected(r, body, err)
	}
	resp, err := h.processBundle(r, b)
	if err != nil {
		return h.keepRejected(r, body, err)
	}
	if resp.rejected > 0 {
		// A batch with refused entries: keep the whole payload with the
		// reasons so the refused part can be inspected and resent. If it
		// cannot be kept the client gets a 5xx and resends the batch; the
		// entries already stored are then answered 200, not stored twice.
		reason := fmt.Sprintf("%d of %d batch entries refused: %s", resp.rejected, len(b.Entry), resp.firstReason)
		if err := h.deadLetter(r, body, reason, http.StatusUnprocessableEntity); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, resp.bundle)
	return nil
}

type bundleOutcome struct {
	bundle      responseBundle
	rejected    int
	firstReason string
}

func (h *handler) processBundle(r *http.Request, b inBundle) (bundleOutcome, error) {
	ctx := r.Context()
	transaction := b.Type == "transaction"
	results := make([]entryResult, len(b.Entry))
	refs := refChecker{store: h.store}
	now := h.now()
	// fail records an entry's refusal; in a transaction it ends the request.
	fail := func(i int, err error) error {
		if transaction {
			return err
		}
		results[i].err = err
		return nil
	}
	type identity struct {
		patient, device, code string
		unixNano              int64
	}
	seen := map[identity]int{}
	for i, e := range b.Entry {
		path := fmt.Sprintf("Bundle.entry[%d].resource", i)
		in, err := parseObservation(e.Resource, path, now)
		if err == nil {
			err = refs.check(ctx, in)
		}
		if err == nil {
			rd := in.reading
			id := identity{rd.Patient, rd.Device, rd.Code, rd.Time.UnixNano()}
			if j, dup := seen[id]; dup {
				// Both would share one idempotency key and one would be
				// silently dropped.
				err = unprocessable(path, "repeats the Observation of entry %d (same subject, device, code and time)", j)
			} else {
				seen[id] = i
			}
		}
		if err != nil {
			if ferr := fail(i, err); ferr != nil {
				return bundleOutcome{}, ferr
			}
			continue
		}
		results[i].in = in
	}
	// Which readings are stored already, in one pass.
	var valid []reading.Reading
	var validIdx []int
	for i := range results {
		if results[i].err == nil {
			valid = append(valid, results[i].in.reading)
			validIdx = append(validIdx, i)
		}
	}
	existing, err := h.findStoredAll(ctx, valid)
	if err != nil {
		return bundleOutcome{}, err
	}
	already := make([]store.Sample, len(results))
	for k, i := range validIdx {
		already[i] = existing[k]
	}
	var fresh []reading.Reading
	var freshIdx []int
	for i, e := range b.Entry {
		res := &results[i]
		if res.err != nil {
			continue
		}
		if cond := e.Request.IfNoneExist; cond != "" {
			s, found, err := h.conditionalMatch(ctx, cond, res.in.reading.Patient, fmt.Sprintf("Bundle.entry[%d].request.ifNoneExist", i))
			if err != nil {
				if ferr := fail(i, err); ferr != nil {
					return bundleOutcome{}, ferr
				}
				continue
			}
			if found {
				res.done = created{sample: s}
				continue
			}
		}
		if s := already[i]; s.ID != "" {
			res.done = created{sample: s}
			continue
		}
		res.pending = true
		fresh = append(fresh, res.in.reading)
		freshIdx = append(freshIdx, i)
	}
	if len(fresh) > 0 {
		if err := h.commit(ctx, fresh); err != nil {
			return bundleOutcome{}, err
		}
		for k, s := range h.awaitStored(ctx, fresh) {
			results[freshIdx[k]].done = created{sample: s, isNew: true}
		}
	}
	return h.bundleResponse(r, b, results), nil
}

func (h *handler) bundleResponse(r *http.Request, b inBundle, results []entryResult) bundleOutcome {
	out := bundleOutcome{bundle: responseBundle{ResourceType: "Bundle", Type: b.Type + "-response"}}
	minimal := preferReturn(r) == "minimal"
	for i, res := range results {
		var e responseEntry
		switch {
		case res.err != nil:
			status, oo, internal := outcomeFor(res.err)
			if internal {
				h.log.ErrorContext(r.Context(), "fhir batch entry failed", "entry", i, "err", res.err)
			}
			e.Response = entryResponse{Status: strconv.Itoa(status) + " " + http.StatusText(status), Outcome: &oo}
			out.rejected++
			if out.firstReason == "" && len(oo.Issue) > 0 {
				out.firstReason = strings.Join(oo.Issue[0].Expression, ",") + ": " + oo.Issue[0].Diagnostics
			}
		case res.done.sample.ID == "":
			// Durable but not yet readable: say so rather than invent an id.
			oo := outcome("information", "informational", "accepted and durable; not yet readable, search for it shortly")
			e.Response = entryResponse{Status: "202 Accepted", Outcome: &oo}
		default:
			s := res.done.sample
			status := "200 OK"
			if res.done.isNew {
				status = "201 Created"
			}
			e.FullURL = baseURL(r) + "/fhir/Observation/" + s.ID
			e.Response = entryResponse{Status: status, Location: "Observation/" + s.ID}
			if !minimal {
				e.Resource = RenderObservation(s)
			}
		}
		out.bundle.Entry = append(out.bundle.Entry, e)
	}
	return out
}
