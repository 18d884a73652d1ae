package fhir

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// Read-only FHIR views of the security model: Organization (organisations),
// Practitioner (users with a clinical role), CareTeam (care teams) and
// Consent (patients' grants to caregivers). Nothing is stored for them
// beyond the records they render, so they carry no version and are not
// written over FHIR; they are managed under /api/v1.
//
// Visibility follows the patient scope (scope.go) and never crosses the
// caller's organisation:
//   - Organization: the caller's own.
//   - Practitioner: admins, integrations, clinicians and nurses see every
//     clinician and nurse of the organisation; caregivers and patients see
//     the members of the care teams that look after a patient they see.
//   - CareTeam: admins and integrations see every team; clinicians and
//     nurses the teams they are members of; caregivers and patients the
//     teams that look after a patient they see. A team lists only the
//     patients the caller sees.
//   - Consent: caregivers see the consents granted to them; everyone else
//     the consents of the patients they see.
// A record the caller may not see is answered like one that does not
// exist, and searches read, filter and count only what the caller sees.

// Code systems of the Tend-specific codings these resources carry.
const (
	systemTendUser         = "urn:tend:user"
	systemTendOrg          = "urn:tend:organisation"
	systemTendCareTeam     = "urn:tend:care-team"
	systemTendConsentScope = "urn:tend:consent-scope"
	systemConsentState     = "http://hl7.org/fhir/consent-state-codes"
)

// orgView is what one request may see of its organisation.
type orgView struct {
	org string
	// all: every record of org (admins, integrations, or no access policy).
	all       bool
	clinical  bool // clinician or nurse
	caregiver bool
	subject   string
	scope     *access.Scope // nil when unscoped
}

func viewOf(ctx context.Context) orgView {
	sc := scopeOf(ctx)
	if sc == nil {
		// No access policy (the FHIR layer tested alone): the caller's
		// organisation in full, still never another's.
		return orgView{org: callerOrg(ctx), all: true}
	}
	p, _ := auth.PrincipalFrom(ctx)
	v := orgView{org: sc.Org, subject: p.Subject, scope: sc}
	switch store.Role(p.Role) {
	case store.RoleAdmin, store.RoleIntegration:
		v.all = true
	case store.RoleClinician, store.RoleNurse:
		v.clinical = true
	case store.RoleCaregiver:
		v.caregiver = true
	}
	return v
}

// seesPatient reports whether the patient (of organisation org) is the caller's.
func (v orgView) seesPatient(org, id string) bool {
	if v.scope == nil {
		return store.OrgOrDefault(org) == v.org
	}
	return v.scope.Has(org, id)
}

func isClinical(r store.Role) bool { return r == store.RoleClinician || r == store.RoleNurse }

// orgData is what one request reads of its organisation, once.
type orgData struct {
	v     orgView
	users map[string]store.User // clinical users of the organisation, hashes cleared
	// teams visible to the caller, each with only the patients the caller
	// sees (and only patients of the organisation).
	teams []store.CareTeam
}

// loadOrg reads the organisation's clinical users and the care teams the
// caller may see.
func (h *handler) loadOrg(ctx context.Context, withTeams bool) (*orgData, error) {
	d := &orgData{v: viewOf(ctx), users: map[string]store.User{}}
	users, err := h.store.OrgUsers(ctx, d.v.org)
	if err != nil {
		return nil, fmt.Errorf("list organisation users: %w", err)
	}
	for _, u := range users {
		if isClinical(u.Role) && store.OrgOrDefault(u.Org) == d.v.org {
			// Only what a Practitioner shows is kept.
			d.users[u.ID] = store.User{ID: u.ID, Name: u.Name, Role: u.Role, Org: d.v.org}
		}
	}
	if !withTeams {
		return d, nil
	}
	teams, err := h.store.CareTeams(ctx, d.v.org)
	if err != nil {
		return nil, fmt.Errorf("list care teams: %w", err)
	}
	// Care teams name patient ids; the organisation wall is checked on
	// the patients themselves, in one query.
	var ids []string
	for _, t := range teams {
		ids = append(ids, t.Patients...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	own := map[string]bool{}
	if len(ids) > 0 {
		ps, _, err := h.store.SearchPatients(ctx, store.PatientFilter{Org: d.v.org, Restrict: true, IDs: ids})
		if err != nil {
			return nil, fmt.Errorf("care team patients: %w", err)
		}
		for _, p := range ps {
			own[p.ID] = d.v.seesPatient(p.Org, p.ID)
		}
	}
	for _, t := range teams {
		if store.OrgOrDefault(t.Org) != d.v.org || !encodable(t.ID) {
			continue
		}
		var shown []string
		for _, p := range t.Patients {
			if own[p] {
				shown = append(shown, p)
			}
		}
		switch {
		case d.v.all:
		case d.v.clinical:
			if !slices.Contains(t.Members, d.v.subject) {
				continue
			}
		default:
			if len(shown) == 0 {
				continue
			}
		}
		t.Patients = shown
		d.teams = append(d.teams, t)
	}
	return d, nil
}

// practitioners are the clinical users the caller may see, ordered by id.
func (d *orgData) practitioners() []store.User {
	var out []store.User
	for _, u := range d.users {
		if encodable(u.ID) && (d.v.all || d.v.clinical || d.inVisibleTeam(u.ID)) {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b store.User) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// needsTeams: caregivers and patients see practitioners through care teams.
func needsTeams(ctx context.Context) bool {
	v := viewOf(ctx)
	return !v.all && !v.clinical
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

func (d *orgData) inVisibleTeam(user string) bool {
	for _, t := range d.teams {
		if slices.Contains(t.Members, user) {
			return true
		}
	}
	return false
}

// consentVisible: caregivers see what was granted to them, everyone else
// the consents of the patients they see.
func (v orgView) consentVisible(c store.Consent) bool {
	if store.OrgOrDefault(c.Org) != v.org || !encodable(c.ID) {
		return false
	}
	if v.caregiver {
		return c.Grantee == v.subject
	}
	return v.seesPatient(c.Org, c.Patient)
}

// --- rendering ---

type orgRef struct {
	Reference  string            `json:"reference,omitempty"`
	Type       string            `json:"type,omitempty"`
	Identifier *store.Identifier `json:"identifier,omitempty"`
	Display    string            `json:"display,omitempty"`
}

type fhirPeriod struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

type humanName struct {
	Text string `json:"text"`
}

// Organization is the FHIR view of an organisation.
type Organization struct {
	ResourceType string             `json:"resourceType"`
	ID           string             `json:"id"`
	Identifier   []store.Identifier `json:"identifier"`
	Active       bool               `json:"active"`
	Name         string             `json:"name,omitempty"`
}

// Practitioner is the FHIR view of a clinician or nurse: name and sign-in
// id only (never credentials, second factors or contact details).
type Practitioner struct {
	ResourceType  string               `json:"resourceType"`
	ID            string               `json:"id"`
	Identifier    []store.Identifier   `json:"identifier"`
	Active        bool                 `json:"active"`
	Name          []humanName          `json:"name,omitempty"`
	Qualification []practQualification `json:"qualification"`
}

type practQualification struct {
	Code Concept `json:"code"`
}

// CareTeam is the FHIR view of a care team. A Tend team looks after many
// patients, and R4 CareTeam.subject is one Patient or a Group, so the
// patients are a contained Group.
type CareTeam struct {
	ResourceType string             `json:"resourceType"`
	ID           string             `json:"id"`
	Contained    []careTeamGroup    `json:"contained,omitempty"`
	Identifier   []store.Identifier `json:"identifier"`
	Status       string             `json:"status"`
	Name         string             `json:"name,omitempty"`
	Subject      *orgRef            `json:"subject,omitempty"`
	Participant  []careParticipant  `json:"participant,omitempty"`
	ManagingOrg  []orgRef           `json:"managingOrganization"`
}

type careTeamGroup struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Type         string        `json:"type"`
	Actual       bool          `json:"actual"`
	Quantity     int           `json:"quantity"`
	Member       []groupMember `json:"member,omitempty"`
}

type groupMember struct {
	Entity orgRef `json:"entity"`
}

type careParticipant struct {
	Member orgRef `json:"member"`
}

// Consent is the FHIR view of a patient's grant to a caregiver.
type Consent struct {
	ResourceType string           `json:"resourceType"`
	ID           string           `json:"id"`
	Status       string           `json:"status"`
	Scope        Concept          `json:"scope"`
	Category     []Concept        `json:"category"`
	Patient      orgRef           `json:"patient"`
	DateTime     string           `json:"dateTime,omitempty"`
	Organization []orgRef         `json:"organization"`
	PolicyRule   Concept          `json:"policyRule"`
	Provision    consentProvision `json:"provision"`
}

type consentProvision struct {
	Type   string         `json:"type"`
	Period *fhirPeriod    `json:"period,omitempty"`
	Actor  []consentActor `json:"actor"`
	Action []Concept      `json:"action"`
}

type consentActor struct {
	Role      Concept `json:"role"`
	Reference orgRef  `json:"reference"`
}

func renderOrganization(o store.Organisation) Organization {
	id, _ := encodeID(o.ID)
	return Organization{ResourceType: "Organization", ID: id, Identifier: []store.Identifier{{System: systemTendOrg, Value: o.ID}},
		Active: true, Name: o.Name}
}

func renderPractitioner(u store.User) Practitioner {
	id, _ := encodeID(u.ID)
	p := Practitioner{ResourceType: "Practitioner", ID: id, Identifier: []store.Identifier{{System: systemTendUser, Value: u.ID}}, Active: true,
		Qualification: []practQualification{{Code: Concept{Coding: []Coding{{System: tendRoles, Code: string(u.Role)}}, Text: string(u.Role)}}}}
	if strings.TrimSpace(u.Name) != "" {
		p.Name = []humanName{{Text: u.Name}}
	}
	return p
}

// userRef points at a user: a Practitioner when the user is one, else by
// identifier (caregivers are not served as a resource).
func (d *orgData) userRef(id string) orgRef {
	ident := &store.Identifier{System: systemTendUser, Value: id}
	if u, ok := d.users[id]; ok {
		if fid, ok := encodeID(id); ok {
			return orgRef{Reference: "Practitioner/" + fid, Identifier: ident, Display: u.Name}
		}
		return orgRef{Type: "Practitioner", Identifier: ident, Display: u.Name}
	}
	return orgRef{Type: "RelatedPerson", Identifier: ident}
}

func orgReference(org string) orgRef {
	if id, ok := encodeID(org); ok {
		return orgRef{Reference: "Organization/" + id}
	}
	return orgRef{Type: "Organization", Identifier: &store.Identifier{System: systemTendOrg, Value: org}}
}

func (d *orgData) renderCareTeam(t store.CareTeam) CareTeam {
	id, _ := encodeID(t.ID)
	ct := CareTeam{ResourceType: "CareTeam", ID: id, Identifier: []store.Identifier{{System: systemTendCareTeam, Value: t.ID}},
		Status: "active", Name: t.Name, ManagingOrg: []orgRef{orgReference(d.v.org)}}
	if len(t.Patients) > 0 {
		g := careTeamGroup{ResourceType: "Group", ID: "patients", Type: "person", Actual: true, Quantity: len(t.Patients)}
		for _, p := range t.Patients {
			g.Member = append(g.Member, groupMember{Entity: orgRef{Reference: "Patient/" + p}})
		}
		ct.Contained = []careTeamGroup{g}
		ct.Subject = &orgRef{Reference: "#patients", Display: "the patients this team looks after"}
	}
	for _, m := range t.Members {
		if _, ok := d.users[m]; ok { // clinical members of the organisation only
			ct.Participant = append(ct.Participant, careParticipant{Member: d.userRef(m)})
		}
	}
	return ct
}

// consentStatus is active until the consent ends or is revoked.
func consentStatus(c store.Consent, now time.Time) string {
	if (!c.Revoked.IsZero() && !now.Before(c.Revoked)) || (!c.End.IsZero() && !now.Before(c.End)) {
		return "inactive"
	}
	return "active"
}

func (d *orgData) renderConsent(c store.Consent, now time.Time) Consent {
	id, _ := encodeID(c.ID)
	out := Consent{ResourceType: "Consent", ID: id, Status: consentStatus(c, now),
		Scope:        Concept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/consentscope", Code: "patient-privacy", Display: "Privacy Consent"}}},
		Category:     []Concept{{Coding: []Coding{{System: systemLOINC, Code: "59284-0", Display: "Patient Consent"}}}},
		Patient:      orgRef{Reference: "Patient/" + c.Patient},
		Organization: []orgRef{orgReference(d.v.org)},
		PolicyRule:   Concept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "OPTIN", Display: "opt-in"}}},
		Provision: consentProvision{Type: "permit",
			Actor: []consentActor{{
				Role:      Concept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", Code: "IRCP", Display: "information recipient"}}},
				Reference: d.userRef(c.Grantee),
			}},
			// Every Tend consent lets the grantee see the patient's data;
			// the Tend coding says whether it also covers alarms.
			Action: []Concept{{Coding: []Coding{
				{System: "http://terminology.hl7.org/CodeSystem/consentaction", Code: "access", Display: "Access"},
				{System: systemTendConsentScope, Code: c.Scope},
			}}},
		},
	}
	if !c.Created.IsZero() {
		out.DateTime = formatInstant(c.Created)
	}
	if !c.Start.IsZero() || !c.End.IsZero() {
		out.Provision.Period = &fhirPeriod{}
		if !c.Start.IsZero() {
			out.Provision.Period.Start = formatInstant(c.Start)
		}
		if !c.End.IsZero() {
			out.Provision.Period.End = formatInstant(c.End)
		}
	}
	return out
}

// --- handlers ---

func (h *handler) orgRoutes() {
	h.route("/fhir/Organization", map[string]handlerFunc{http.MethodGet: h.searchOrganizations})
	h.route("/fhir/Organization/{id}", map[string]handlerFunc{http.MethodGet: h.readOrganization})
	h.route("/fhir/Practitioner", map[string]handlerFunc{http.MethodGet: h.searchPractitioners})
	h.route("/fhir/Practitioner/{id}", map[string]handlerFunc{http.MethodGet: h.readPractitioner})
	h.route("/fhir/CareTeam", map[string]handlerFunc{http.MethodGet: h.searchCareTeams})
	h.route("/fhir/CareTeam/{id}", map[string]handlerFunc{http.MethodGet: h.readCareTeam})
	h.route("/fhir/Consent", map[string]handlerFunc{http.MethodGet: h.searchConsents})
	h.route("/fhir/Consent/{id}", map[string]handlerFunc{http.MethodGet: h.readConsent})
}

// pathTendID decodes the record id of a FHIR id in the URL.
func pathTendID(r *http.Request, resourceType string) (string, error) {
	id, ok := decodeID(r.PathValue("id"))
	if !ok {
		return "", errorf(http.StatusNotFound, "not-found", "%s not found", resourceType)
	}
	return id, nil
}

func notFound(resourceType string) error {
	return errorf(http.StatusNotFound, "not-found", "%s not found", resourceType)
}

func (h *handler) readOrganization(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTendID(r, "Organization")
	if err != nil {
		return err
	}
	v := viewOf(r.Context())
	if id != v.org {
		return notFound("Organization")
	}
	o, err := h.store.Org(r.Context(), id)
	if err != nil {
		return fmt.Errorf("read organization: %w", err)
	}
	writeJSON(w, http.StatusOK, renderOrganization(o))
	return nil
}

func (h *handler) searchOrganizations(w http.ResponseWriter, r *http.Request) error {
	s, err := parseOrgSearch(r.URL.Query(), strictHandling(r), map[string]string{"_id": "id", "name": "string"})
	if err != nil {
		return err
	}
	v := viewOf(r.Context())
	var matches []any
	o, err := h.store.Org(r.Context(), v.org)
	switch {
	case err == nil:
		if encodable(o.ID) && s.matchID(o.ID) && s.matchString("name", o.Name) {
			matches = append(matches, renderOrganization(o))
		}
	case !isNotFound(err):
		return fmt.Errorf("search organizations: %w", err)
	}
	return writeOrgSearch(w, r, "Organization", s, matches)
}

func (h *handler) readPractitioner(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTendID(r, "Practitioner")
	if err != nil {
		return err
	}
	d, err := h.loadOrg(r.Context(), needsTeams(r.Context()))
	if err != nil {
		return err
	}
	for _, u := range d.practitioners() {
		if u.ID == id {
			writeJSON(w, http.StatusOK, renderPractitioner(u))
			return nil
		}
	}
	return notFound("Practitioner")
}

func (h *handler) searchPractitioners(w http.ResponseWriter, r *http.Request) error {
	s, err := parseOrgSearch(r.URL.Query(), strictHandling(r), map[string]string{"_id": "id", "name": "string", "identifier": "identifier"})
	if err != nil {
		return err
	}
	d, err := h.loadOrg(r.Context(), needsTeams(r.Context()))
	if err != nil {
		return err
	}
	var matches []any
	for _, u := range d.practitioners() {
		if s.matchID(u.ID) && s.matchString("name", u.Name) && s.matchIdentifier(systemTendUser, u.ID) {
			matches = append(matches, renderPractitioner(u))
		}
	}
	return writeOrgSearch(w, r, "Practitioner", s, matches)
}

func (h *handler) readCareTeam(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTendID(r, "CareTeam")
	if err != nil {
		return err
	}
	d, err := h.loadOrg(r.Context(), true)
	if err != nil {
		return err
	}
	for _, t := range d.teams {
		if t.ID == id {
			writeJSON(w, http.StatusOK, d.renderCareTeam(t))
			return nil
		}
	}
	return notFound("CareTeam")
}

func (h *handler) searchCareTeams(w http.ResponseWriter, r *http.Request) error {
	s, err := parseOrgSearch(r.URL.Query(), strictHandling(r), map[string]string{"_id": "id", "patient": "Patient", "subject": "Patient",
		"participant": "Practitioner", "status": "token", "name": "string"})
	if err != nil {
		return err
	}
	d, err := h.loadOrg(r.Context(), true)
	if err != nil {
		return err
	}
	var matches []any
	for _, t := range d.teams {
		var parts []string
		for _, m := range t.Members {
			if _, ok := d.users[m]; ok {
				parts = append(parts, m)
			}
		}
		if s.matchID(t.ID) && s.matchRefs("patient", t.Patients) && s.matchRefs("subject", t.Patients) &&
			s.matchRefs("participant", parts) && s.matchToken("status", systemCareTeamStatus, "active") && s.matchString("name", t.Name) {
			matches = append(matches, d.renderCareTeam(t))
		}
	}
	return writeOrgSearch(w, r, "CareTeam", s, matches)
}

const systemCareTeamStatus = "http://hl7.org/fhir/care-team-status"

func (h *handler) readConsent(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTendID(r, "Consent")
	if err != nil {
		return err
	}
	v := viewOf(r.Context())
	c, err := h.store.Consent(r.Context(), id)
	if isNotFound(err) || (err == nil && !v.consentVisible(c)) {
		return notFound("Consent")
	}
	if err != nil {
		return fmt.Errorf("read consent: %w", err)
	}
	d, err := h.loadOrg(r.Context(), false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d.renderConsent(c, h.now()))
	return nil
}

func (h *handler) searchConsents(w http.ResponseWriter, r *http.Request) error {
	s, err := parseOrgSearch(r.URL.Query(), strictHandling(r), map[string]string{"_id": "id", "patient": "Patient",
		"actor": "user", "status": "token"})
	if err != nil {
		return err
	}
	d, err := h.loadOrg(r.Context(), false)
	if err != nil {
		return err
	}
	patient := ""
	if ids := s.refs["patient"]; len(ids) == 1 && len(ids[0]) == 1 {
		patient = ids[0][0] // narrows the store query; matchRefs still decides
	}
	cs, err := h.store.Consents(r.Context(), d.v.org, patient)
	if err != nil {
		return fmt.Errorf("search consents: %w", err)
	}
	now := h.now()
	var matches []any
	for _, c := range cs {
		if !d.v.consentVisible(c) {
			continue
		}
		if s.matchID(c.ID) && s.matchRefs("patient", []string{c.Patient}) && s.matchRefs("actor", []string{c.Grantee}) &&
			s.matchToken("status", systemConsentState, consentStatus(c, now)) {
			matches = append(matches, d.renderConsent(c, now))
		}
	}
	return writeOrgSearch(w, r, "Consent", s, matches)
}

// writeOrgSearch answers a page of the matches, all of which the caller
// may see; the total counts only those.
func writeOrgSearch(w http.ResponseWriter, r *http.Request, resourceType string, s orgSearch, matches []any) error {
	b := searchset(r, len(matches), s.ResultParams, "")
	if !s.CountOnly {
		page := matches[min(s.Offset, len(matches)):]
		page = page[:min(s.Count, len(page))]
		for _, m := range page {
			b.addMatch(baseURL(r)+"/fhir/"+resourceType+"/"+resourceID(m), m)
		}
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

func resourceID(m any) string {
	switch m := m.(type) {
	case Organization:
		return m.ID
	case Practitioner:
		return m.ID
	case CareTeam:
		return m.ID
	case Consent:
		return m.ID
	}
	return ""
}

// --- search parameters ---

// orgSearch is a parsed search on one of the resources above. Every
// parameter given must match (AND); a comma inside one value means OR.
type orgSearch struct {
	ids    [][]string            // _id: record ids
	strs   map[string][][]string // string parameters, lower-cased
	refs   map[string][][]string // reference parameters: record ids
	tokens map[string][][]string // token parameters: system|code pairs
	idents [][]store.Identifier
	ResultParams
}

// parseOrgSearch parses the query against kinds: parameter name to its
// kind ("id", "string", "identifier", "token", a resource type for a
// reference parameter, or "user" for a reference to a user).
func parseOrgSearch(values url.Values, strict bool, kinds map[string]string) (orgSearch, error) {
	s := orgSearch{strs: map[string][][]string{}, refs: map[string][][]string{}, tokens: map[string][][]string{},
		ResultParams: ResultParams{Count: DefaultCount}}
	for _, name := range sortedNames(values) {
		vs := values[name]
		kind, ok := kinds[name]
		if !ok {
			if err := s.ResultParams.parse(name, vs, strict); err != nil {
				return orgSearch{}, err
			}
			continue
		}
		for _, v := range vs {
			toks := strings.Split(v, ",")
			if len(toks) > maxCodes {
				return orgSearch{}, errorf(http.StatusBadRequest, "too-costly", "at most %d %s values may be searched at once", maxCodes, name)
			}
			var set []string
			var idents []store.Identifier
			for _, tok := range toks {
				switch kind {
				case "id":
					id, ok := decodeID(tok)
					if !ok {
						return orgSearch{}, invalid("_id must list ids")
					}
					set = append(set, id)
				case "string":
					if tok == "" {
						return orgSearch{}, invalid("%s needs a value", name)
					}
					set = append(set, strings.ToLower(tok))
				case "identifier":
					sys, val, hasSys := strings.Cut(tok, "|")
					if !hasSys {
						sys, val = "", tok
					}
					if val == "" {
						return orgSearch{}, invalid("identifier needs [system|]value")
					}
					idents = append(idents, store.Identifier{System: sys, Value: val})
				case "token":
					if tok == "" {
						return orgSearch{}, invalid("%s needs [system|]code", name)
					}
					set = append(set, tok)
				default: // a reference
					id, err := parseRefTo(name, kind, tok)
					if err != nil {
						return orgSearch{}, err
					}
					set = append(set, id)
				}
			}
			switch kind {
			case "id":
				s.ids = append(s.ids, set)
			case "string":
				s.strs[name] = append(s.strs[name], set)
			case "identifier":
				s.idents = append(s.idents, idents)
			case "token":
				s.tokens[name] = append(s.tokens[name], set)
			default:
				s.refs[name] = append(s.refs[name], set)
			}
		}
	}
	return s, nil
}

// parseRefTo reads {id} or {Type}/{id}; a user may be addressed as a
// Practitioner or RelatedPerson. The id is the record's, decoded.
func parseRefTo(name, kind, tok string) (string, error) {
	types := []string{kind}
	if kind == "user" {
		types = []string{"Practitioner", "RelatedPerson"}
	}
	v := tok
	for _, t := range types {
		if rest, ok := strings.CutPrefix(tok, t+"/"); ok {
			v = rest
			break
		}
	}
	if kind == "Patient" {
		if !validID(v) {
			return "", invalid("%s must be a patient id or Patient/{id}", name)
		}
		return v, nil
	}
	id, ok := decodeID(v)
	if !ok {
		return "", invalid("%s must be an id or %s/{id}", name, types[0])
	}
	return id, nil
}

func (s orgSearch) matchID(id string) bool {
	for _, set := range s.ids {
		if !slices.Contains(set, id) {
			return false
		}
	}
	return true
}

// matchString is FHIR string search: the value, or one of its words,
// starts with the parameter, ignoring case.
func (s orgSearch) matchString(name, value string) bool {
	lv := strings.ToLower(value)
	words := append([]string{lv}, strings.Fields(lv)...)
	for _, set := range s.strs[name] {
		hit := false
		for _, want := range set {
			for _, w := range words {
				if strings.HasPrefix(w, want) {
					hit = true
				}
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

func (s orgSearch) matchIdentifier(system, value string) bool {
	for _, set := range s.idents {
		hit := false
		for _, id := range set {
			if (id.System == "" || id.System == system) && id.Value == value {
				hit = true
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

// matchRefs: every value of the parameter names one of have.
func (s orgSearch) matchRefs(name string, have []string) bool {
	for _, set := range s.refs[name] {
		hit := false
		for _, id := range set {
			if slices.Contains(have, id) {
				hit = true
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

func (s orgSearch) matchToken(name, system, code string) bool {
	for _, set := range s.tokens[name] {
		if !tokenListHas(strings.Join(set, ","), system, code) {
			return false
		}
	}
	return true
}

// orgCapabilities declares the resources above for the CapabilityStatement.
func orgCapabilities(paging []capSearchParam) []capResource {
	const scoped = "read-only view of Tend's records (managed under /api/v1); only the caller's organisation, and within it only what the caller's role may see; " +
		"ids with '.' or '_' are escaped as .0 and .1. "
	id := capSearchParam{Name: "_id", Type: "token", Documentation: "comma-separated ids"}
	return []capResource{
		{
			Type:          "Organization",
			Documentation: scoped + "The caller's own organisation only",
			Interaction:   interactions("read", "search-type"),
			Versioning:    "no-version",
			SearchParam: append([]capSearchParam{id,
				{Name: "name", Type: "string", Documentation: "the name or one of its words starts with the value, ignoring case"},
			}, paging...),
		},
		{
			Type: "Practitioner",
			Documentation: scoped + "The organisation's clinicians and nurses (qualification carries the Tend role); admins, integrations, clinicians and nurses see all of them, " +
				"caregivers and patients the members of the care teams of the patients they see. Credentials and contact details are never shown.",
			Interaction: interactions("read", "search-type"),
			Versioning:  "no-version",
			SearchParam: append([]capSearchParam{id,
				{Name: "identifier", Type: "token", Documentation: "[" + systemTendUser + "|]user id"},
				{Name: "name", Type: "string", Documentation: "the name or one of its words starts with the value, ignoring case"},
			}, paging...),
		},
		{
			Type: "CareTeam",
			Documentation: scoped + "Subject is a contained Group of the team's patients, listing only those the caller sees; participants are Practitioners. " +
				"Admins and integrations see every team, clinicians and nurses the teams they are in, caregivers and patients the teams of the patients they see.",
			Interaction: interactions("read", "search-type"),
			Versioning:  "no-version",
			SearchParam: append([]capSearchParam{id,
				{Name: "patient", Type: "reference", Documentation: "Patient/{id} or {id}: teams looking after the patient; comma means OR"},
				{Name: "subject", Type: "reference", Documentation: "the same as patient"},
				{Name: "participant", Type: "reference", Documentation: "Practitioner/{id} or {id}"},
				{Name: "status", Type: "token", Documentation: "every team is active"},
				{Name: "name", Type: "string", Documentation: "the name or one of its words starts with the value, ignoring case"},
			}, paging...),
		},
		{
			Type: "Consent",
			Documentation: scoped + "A patient's grant to a caregiver: provision.actor is the grantee, provision.period the validity, provision.action access " +
				"with the Tend scope (" + systemTendConsentScope + ": read or read+alarms); status is inactive once it ended or was revoked. " +
				"Caregivers see the consents granted to them, patients their own, everyone else the consents of the patients they see.",
			Interaction: interactions("read", "search-type"),
			Versioning:  "no-version",
			SearchParam: append([]capSearchParam{id,
				{Name: "patient", Type: "reference", Documentation: "Patient/{id} or {id}; comma means OR"},
				{Name: "actor", Type: "reference", Documentation: "the grantee: {user id}, RelatedPerson/{id} or Practitioner/{id}"},
				{Name: "status", Type: "token", Documentation: "active or inactive"},
			}, paging...),
		},
	}
}
