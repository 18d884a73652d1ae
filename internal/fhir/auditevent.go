package fhir

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// AuditEventConfig wires the AuditEvent endpoints.
type AuditEventConfig struct {
	Store  store.AuditStore
	Now    func() time.Time
	Logger *slog.Logger
}

// NewAuditEventHandler serves the audit trail as FHIR R4 AuditEvent
// resources following the IHE Basic Audit Log Patterns: GET
// /fhir/AuditEvent/{id} and GET /fhir/AuditEvent?patient=&agent=|user=&
// date=&_count=, oldest first. Who may read it is decided before this
// handler (auditors and admins).
func NewAuditEventHandler(cfg AuditEventConfig) http.Handler {
	h := &handler{now: cfg.Now, log: cfg.Logger, mux: http.NewServeMux()}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	a := auditEvents{store: cfg.Store, h: h}
	h.route("/fhir/AuditEvent", map[string]handlerFunc{http.MethodGet: a.search})
	h.route("/fhir/AuditEvent/{id}", map[string]handlerFunc{http.MethodGet: a.read})
	return h.mux
}

type auditEvents struct {
	store store.AuditStore
	h     *handler
}

const (
	defaultAuditCount = 100
	maxAuditCount     = 1000
)

func (a auditEvents) read(w http.ResponseWriter, r *http.Request) error {
	seq, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || seq <= 0 {
		return errorf(http.StatusNotFound, "not-found", "AuditEvent not found")
	}
	e, err := a.store.AuditEntry(r.Context(), seq)
	if err != nil {
		return err
	}
	if org := auditOrg(r); org != "" && store.OrgOrDefault(e.Org) != org {
		return errorf(http.StatusNotFound, "not-found", "AuditEvent not found")
	}
	writeJSON(w, http.StatusOK, AuditEventOf(e))
	return nil
}

// auditBundle is a searchset without a total: counting the whole trail
// for every page would cost more than the page.
type auditBundle struct {
	ResourceType string        `json:"resourceType"`
	Type         string        `json:"type"`
	Link         []BundleLink  `json:"link"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

func (a auditEvents) search(w http.ResponseWriter, r *http.Request) error {
	q, count, err := parseAuditSearch(r.URL.Query(), a.h.now())
	if err != nil {
		return err
	}
	q.Limit = count + 1
	es, err := a.entries(r, q, count+1)
	if err != nil {
		return err
	}
	more := len(es) > count
	if more {
		es = es[:count]
	}
	link := func(cursor int64) string {
		v := r.URL.Query()
		v.Set("_count", strconv.Itoa(count))
		v.Del("_cursor")
		if cursor > 0 {
			v.Set("_cursor", strconv.FormatInt(cursor, 10))
		}
		return baseURL(r) + r.URL.Path + "?" + v.Encode()
	}
	b := auditBundle{ResourceType: "Bundle", Type: "searchset", Link: []BundleLink{{Relation: "self", URL: link(q.AfterSeq)}}}
	if more {
		b.Link = append(b.Link, BundleLink{Relation: "next", URL: link(es[len(es)-1].Seq)})
	}
	for _, e := range es {
		b.Entry = append(b.Entry, BundleEntry{FullURL: baseURL(r) + "/fhir/AuditEvent/" + strconv.FormatInt(e.Seq, 10),
			Resource: AuditEventOf(e), Search: &EntrySearch{Mode: "match"}})
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// auditOrg is the organisation whose records the caller may read: "" (all)
// for the installation's operator (the default organisation), else the
// caller's own, so one tenant's auditors never see another's trail.
func auditOrg(r *http.Request) string {
	p, ok := auth.PrincipalFrom(r.Context())
	if !ok {
		return ""
	}
	if org := store.OrgOrDefault(p.Org); org != store.DefaultOrg {
		return org
	}
	return ""
}

// entries returns up to want entries of q the caller may read, reading
// further pages while other organisations' records are skipped.
func (a auditEvents) entries(r *http.Request, q store.AuditQuery, want int) ([]store.AuditEntry, error) {
	org := auditOrg(r)
	if org == "" {
		return a.store.AuditEntries(r.Context(), q)
	}
	var out []store.AuditEntry
	for {
		page, err := a.store.AuditEntries(r.Context(), q)
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			if store.OrgOrDefault(e.Org) == org && len(out) < want {
				out = append(out, e)
			}
		}
		if len(out) >= want || len(page) < q.Limit || len(page) == 0 {
			return out, nil
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

// parseAuditSearch reads patient, agent (or user), date (repeatable, with
// prefixes), _count and _cursor; other parameters are ignored.
func parseAuditSearch(v url.Values, now time.Time) (store.AuditQuery, int, error) {
	var q store.AuditQuery
	count := defaultAuditCount
	for name, vs := range v {
		last := vs[len(vs)-1]
		switch name {
		case "patient", "entity":
			p := strings.TrimPrefix(last, "Patient/")
			if !validID(p) {
				return q, 0, invalid("%s must be a patient id or Patient/{id}", name)
			}
			q.Patient = p
		case "agent", "user", "agent.who", "agent-name":
			q.Subject = last
		case "date":
			for _, d := range vs {
				from, to, err := parseDateParam(d, now)
				if err != nil {
					return q, 0, err
				}
				if !from.IsZero() && (q.From.IsZero() || from.After(q.From)) {
					q.From = from
				}
				if !to.IsZero() && (q.To.IsZero() || to.Before(q.To)) {
					q.To = to
				}
			}
		case "_count":
			n, err := strconv.Atoi(last)
			if err != nil || n < 1 {
				return q, 0, invalid("_count must be a positive whole number")
			}
			count = min(n, maxAuditCount)
		case "_cursor":
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n < 0 {
				return q, 0, invalid("_cursor must come from a next link")
			}
			q.AfterSeq = n
		}
	}
	return q, count, nil
}

// AuditEvent is the R4 AuditEvent of one audit record.
type AuditEvent struct {
	ResourceType string           `json:"resourceType"`
	ID           string           `json:"id"`
	Extension    []auditExtension `json:"extension,omitempty"`
	Type         Coding           `json:"type"`
	Subtype      []Coding         `json:"subtype,omitempty"`
	Action       string           `json:"action,omitempty"`
	Recorded     string           `json:"recorded"`
	Outcome      string           `json:"outcome"`
	OutcomeDesc  string           `json:"outcomeDesc,omitempty"`
	Purpose      []Concept        `json:"purposeOfEvent,omitempty"`
	Agent        []auditAgent     `json:"agent"`
	Source       auditSource      `json:"source"`
	Entity       []auditEntity    `json:"entity,omitempty"`
}

type auditExtension struct {
	URL          string `json:"url"`
	ValueString  string `json:"valueString,omitempty"`
	ValueBase64  string `json:"valueBase64Binary,omitempty"`
	ValueInteger *int64 `json:"valueInteger,omitempty"`
}

type auditReference struct {
	Reference  string            `json:"reference,omitempty"`
	Identifier *store.Identifier `json:"identifier,omitempty"`
	Display    string            `json:"display,omitempty"`
}

type auditAgent struct {
	Extension []auditExtension `json:"extension,omitempty"`
	Type      *Concept         `json:"type,omitempty"`
	Role      []Concept        `json:"role,omitempty"`
	Who       *auditReference  `json:"who,omitempty"`
	Requestor bool             `json:"requestor"`
	Network   *auditNetwork    `json:"network,omitempty"`
}

type auditNetwork struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type auditSource struct {
	Site     string         `json:"site,omitempty"`
	Observer auditReference `json:"observer"`
	Type     []Coding       `json:"type,omitempty"`
}

type auditEntity struct {
	What        *auditReference `json:"what,omitempty"`
	Type        *Coding         `json:"type,omitempty"`
	Role        *Coding         `json:"role,omitempty"`
	Description string          `json:"description,omitempty"`
	Query       string          `json:"query,omitempty"`
}

const (
	auditTypeSystem   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	restSystem        = "http://hl7.org/fhir/restful-interaction"
	dcmSystem         = "http://dicom.nema.org/resources/ontology/DCM"
	entityTypeSystem  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	objectRoleSystem  = "http://terminology.hl7.org/CodeSystem/object-role"
	tendAuditSubtypes = "urn:tend:audit-subtype"
	tendRoles         = "urn:tend:role"
)

// restInteractions are the Subtypes that are FHIR interactions.
var restInteractions = map[string]bool{"read": true, "vread": true, "update": true, "patch": true, "delete": true, "history": true,
	"create": true, "search-type": true, "search-system": true, "capabilities": true, "transaction": true, "batch": true, "operation": true}

// auditAction maps what was attempted to AuditEvent.action (C R U D E).
func auditAction(action, subtype string) string {
	switch subtype {
	case "create", "transaction", "batch", "replay":
		return "C"
	case "read", "vread", "history", "stream":
		return "R"
	case "update", "patch", "ack", "acknowledge", "resolve", "snooze":
		return "U"
	case "delete":
		return "D"
	}
	switch action {
	case "create":
		return "C"
	case "read":
		return "R"
	case "update":
		return "U"
	case "delete":
		return "D"
	}
	return "E" // searches, operations, exports, sign-in and sign-out
}

// AuditEventOf renders one audit record.
func AuditEventOf(e store.AuditEntry) AuditEvent {
	seq := e.Seq
	ev := AuditEvent{ResourceType: "AuditEvent", ID: strconv.FormatInt(e.Seq, 10),
		Extension: []auditExtension{
			{URL: "urn:tend:audit:seq", ValueInteger: &seq},
			{URL: "urn:tend:audit:action", ValueString: e.Action},
			{URL: "urn:tend:audit:hash", ValueBase64: base64.StdEncoding.EncodeToString(e.Hash)},
			{URL: "urn:tend:audit:prev-hash", ValueBase64: base64.StdEncoding.EncodeToString(e.PrevHash)},
		},
		Type:        Coding{System: auditTypeSystem, Code: "rest", Display: "RESTful Operation"},
		Action:      auditAction(e.Action, e.Subtype),
		Recorded:    e.Time.UTC().Format(time.RFC3339Nano),
		Outcome:     strconv.Itoa(e.Outcome),
		OutcomeDesc: "HTTP " + strconv.Itoa(e.Status),
		Source: auditSource{Site: "tend", Observer: auditReference{Display: "Tend"},
			Type: []Coding{{System: "http://terminology.hl7.org/CodeSystem/security-source-type", Code: "4", Display: "Application Server"}}},
	}
	if e.Status == 0 {
		ev.OutcomeDesc = ""
	}
	switch {
	case e.Subtype == "login" || e.Subtype == "logout":
		ev.Type = Coding{System: dcmSystem, Code: "110114", Display: "User Authentication"}
		sub := Coding{System: dcmSystem, Code: "110122", Display: "Login"}
		if e.Subtype == "logout" {
			sub = Coding{System: dcmSystem, Code: "110123", Display: "Logout"}
		}
		ev.Subtype = []Coding{sub}
	case restInteractions[e.Subtype]:
		ev.Subtype = []Coding{{System: restSystem, Code: e.Subtype}}
	case e.Subtype != "":
		ev.Subtype = []Coding{{System: tendAuditSubtypes, Code: e.Subtype}}
	}

	agent := auditAgent{Requestor: true,
		Type: &Concept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/extra-security-role-type", Code: "humanuser", Display: "human user"}}}}
	if e.Subject != "" {
		agent.Who = &auditReference{Identifier: &store.Identifier{System: "urn:tend:user", Value: e.Subject}, Display: e.Subject}
	} else {
		agent.Who = &auditReference{Display: "unauthenticated"}
	}
	if e.Role != "" {
		agent.Role = []Concept{{Coding: []Coding{{System: tendRoles, Code: e.Role}}}}
	}
	if e.Org != "" {
		agent.Extension = []auditExtension{{URL: "urn:tend:audit:org", ValueString: e.Org}}
	}
	if e.Source != "" {
		typ := "2" // IP address
		if !strings.ContainsAny(e.Source, ".:") {
			typ = "1" // machine name
		}
		agent.Network = &auditNetwork{Address: e.Source, Type: typ}
	}
	ev.Agent = []auditAgent{agent}
	if e.Purpose != "" { // e.g. BTG: the access was made under a break-glass grant
		ev.Purpose = []Concept{{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActReason", Code: e.Purpose, Display: actReasonDisplay[e.Purpose]}}}}
	}

	for _, p := range e.Patients {
		ev.Entity = append(ev.Entity, auditEntity{What: &auditReference{Reference: "Patient/" + p},
			Type: &Coding{System: entityTypeSystem, Code: "1", Display: "Person"},
			Role: &Coding{System: objectRoleSystem, Code: "1", Display: "Patient"}})
	}
	what := auditEntity{Type: &Coding{System: entityTypeSystem, Code: "2", Display: "System Object"}}
	switch {
	case isResourceRef(e.Entity):
		what.What = &auditReference{Reference: e.Entity}
		what.Role = &Coding{System: objectRoleSystem, Code: "4", Display: "Domain Resource"}
	case e.Entity != "":
		what.Description = e.Entity
	}
	if e.Query != "" {
		what.Query = base64.StdEncoding.EncodeToString([]byte(e.Query))
		what.Role = &Coding{System: objectRoleSystem, Code: "24", Display: "Query"}
	}
	if what.What != nil || what.Description != "" || what.Query != "" {
		ev.Entity = append(ev.Entity, what)
	}
	return ev
}

// actReasonDisplay names the purposes of use Tend records.
var actReasonDisplay = map[string]string{"BTG": "break the glass"}

// isResourceRef: "Type/id" (a FHIR read) rather than a path or a search.
func isResourceRef(s string) bool {
	t, id, ok := strings.Cut(s, "/")
	return ok && t != "" && t[0] >= 'A' && t[0] <= 'Z' && validID(id)
}
