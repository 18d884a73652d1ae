package audit

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Classify selects the requests to Tend's HTTP API, FHIR endpoints and
// dashboard that involve PHI or change or reveal security state: patient
// data, sign-ins and sign-outs, tokens, OAuth clients, organisations,
// users and their contacts, care teams, consents, break-glass grants,
// device credentials, webhooks and alarm settings. What it leaves out is
// listed in Unaudited with the reason; a test walks every route the API
// and the dashboard register and fails on one that is in neither.
func Classify(r *http.Request) (Class, bool) {
	p := r.URL.Path
	q := r.URL.Query()
	params := queryPatients(q["patient"], q["subject"])
	switch {
	case p == "/fhir" || strings.HasPrefix(p, "/fhir/"):
		return classifyFHIR(r, strings.Trim(strings.TrimPrefix(p, "/fhir"), "/"), params)
	case strings.HasPrefix(p, "/api/"):
		return classifyAPI(r, strings.Split(strings.Trim(p, "/"), "/"), params)
	}
	return classifyWeb(r, strings.Split(strings.Trim(p, "/"), "/"), params)
}

// classifyFHIR: rel is the path below the FHIR base, without slashes at
// either end.
func classifyFHIR(r *http.Request, rel string, params []string) (Class, bool) {
	if rel == "metadata" || rel == ".well-known/smart-configuration" {
		return Class{}, false
	}
	c := Class{Entity: rel, Patients: params}
	seg := strings.Split(rel, "/")
	if seg[0] == "Patient" && len(seg) > 1 && seg[1] != "" && !strings.HasPrefix(seg[1], "$") {
		c.Patients = append(c.Patients, seg[1])
	}
	if seg[0] == "Patient" {
		c.Patients = append(c.Patients, splitList(r.URL.Query()["_id"])...)
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case rel == "":
		c.Action, c.Subtype, c.Entity = Create, "transaction", "" // batch or transaction Bundle
		if r.Method != http.MethodPost {
			c.Action, c.Subtype = Read, "capabilities"
		}
	case strings.HasSuffix(rel, "/$everything"):
		c.Action, c.Subtype = Export, "operation"
	case strings.HasPrefix(rel, "$export") || rel == "Patient/$export":
		// Bulk Data kick-off, status, download and delete.
		c.Action, c.Subtype = Export, "operation"
	case strings.Contains(rel, "/$"):
		c.Action, c.Subtype = Search, "operation"
	case read && len(seg) == 1:
		c.Action, c.Subtype = Search, "search-type"
	case read && len(seg) == 3 && seg[2] == "_history":
		c.Action, c.Subtype = Read, "history" // instance history
	case read && len(seg) >= 3 && seg[2] == "_history":
		c.Action, c.Subtype = Read, "vread"
	case read:
		c.Action, c.Subtype = Read, "read"
	case r.Method == http.MethodPost:
		c.Action, c.Subtype = Create, "create"
	case r.Method == http.MethodPut || r.Method == http.MethodPatch:
		c.Action, c.Subtype = Update, "update"
	case r.Method == http.MethodDelete:
		c.Action, c.Subtype = Delete, "delete"
	default:
		c.Action, c.Subtype = Read, strings.ToLower(r.Method)
	}
	return c, true
}

// classifyAPI: seg is the path split at "/", starting with "api".
func classifyAPI(r *http.Request, seg []string, params []string) (Class, bool) {
	if len(seg) < 3 || seg[1] != "v1" {
		return Class{}, false
	}
	c := Class{Entity: "/" + strings.Join(seg, "/"), Patients: params}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch seg[2] {
	case "auth":
		switch {
		case len(seg) == 4 && seg[3] == "token" && r.Method == http.MethodPost:
			c.Action, c.Subtype = Login, "login"
			return c, true
		case len(seg) == 4 && seg[3] == "logout" && r.Method == http.MethodPost:
			c.Action, c.Subtype = Logout, "logout"
			return c, true
		}
	case "patients":
		if len(seg) >= 4 {
			c.Patients = append(c.Patients, seg[3])
			c.Action, c.Subtype = Read, "read"
			if !get {
				c.Action, c.Subtype = Update, "update"
			}
			return c, true
		}
	case "alarms":
		switch {
		case len(seg) == 3 && get:
			c.Action, c.Subtype = Search, "search"
		case len(seg) == 4 && get:
			c.Action, c.Subtype, c.Alarm = Read, "read", seg[3]
		case len(seg) == 5 && r.Method == http.MethodPost:
			// ack, resolve, snooze, escalate: the subtype names the action.
			c.Action, c.Subtype, c.Alarm = Update, seg[4], seg[3]
		default:
			return Class{}, false
		}
		return c, true
	case "stream":
		if get {
			c.Action, c.Subtype, c.Stream = Read, "stream", true
			return c, true
		}
	case "deadletters":
		// Refused payloads are readings: PHI.
		switch {
		case len(seg) == 3 && get:
			c.Action, c.Subtype = Search, "search"
		case len(seg) == 4 && get:
			c.Action, c.Subtype = Read, "read"
		case len(seg) == 5 && r.Method == http.MethodPost:
			c.Action, c.Subtype = Create, seg[4]
		default:
			return Class{}, false
		}
		return c, true
	case "devices":
		// Device ingest is not recorded (see Unaudited); managing a
		// device's credentials and certificates is.
		if len(seg) == 5 && seg[4] == "obs" {
			return Class{}, false
		}
		return byMethod(r, c, seg)
	case "care-teams":
		if len(seg) == 6 && seg[4] == "patients" {
			c.Patients = append(c.Patients, seg[5]) // a patient joins or leaves the team
		}
		return byMethod(r, c, seg)
	case "tokens", "clients", "orgs", "users", "consents", "break-glass", "webhooks", "settings":
		// Security state: who may act, who may see which patient, where
		// alarms go. Answers that name patients add them (PatientsInJSON).
		return byMethod(r, c, seg)
	}
	return Class{}, false
}

// byMethod classifies a management endpoint /api/v1/<collection>[/id[/…]]
// by its method: listing, reading, creating, an action on an existing
// item (POST below it: revoke, credentials), changing and deleting.
func byMethod(r *http.Request, c Class, seg []string) (Class, bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		c.Action, c.Subtype = Read, "read"
		if len(seg) == 3 {
			c.Action, c.Subtype = Search, "search"
		}
	case http.MethodPost:
		c.Action, c.Subtype = Create, "create"
		if len(seg) >= 5 {
			c.Action, c.Subtype = Update, seg[len(seg)-1]
		}
	case http.MethodPut, http.MethodPatch:
		c.Action, c.Subtype = Update, "update"
	case http.MethodDelete:
		c.Action, c.Subtype = Delete, "delete"
	default:
		return Class{}, false
	}
	return c, true
}

// classifyWeb: the dashboard's pages, seg split at "/" ("" for the ward).
func classifyWeb(r *http.Request, seg []string, params []string) (Class, bool) {
	c := Class{Entity: "/" + strings.Join(seg, "/"), Patients: params}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	switch {
	case seg[0] == "signin" && len(seg) == 1 && post:
		c.Action, c.Subtype = Login, "login"
	case seg[0] == "auth" && len(seg) == 2 && seg[1] == "token" && post:
		c.Action, c.Subtype = Login, "login" // the OAuth token endpoint: a system signing in
	case seg[0] == "signout" && len(seg) == 1 && post:
		c.Action, c.Subtype = Logout, "logout"
	case seg[0] == "account" && len(seg) == 1 && get:
		c.Action, c.Subtype = Read, "account" // shows a second-factor key while one is being set up
	case seg[0] == "account" && len(seg) == 2 && post:
		c.Action, c.Subtype = Update, seg[1] // second factor switched on
	case seg[0] == "" && len(seg) == 1 && get:
		c.Action, c.Subtype = Search, "ward"
	case seg[0] == "patients" && len(seg) >= 2:
		c.Patients = append(c.Patients, seg[1])
		c.Action, c.Subtype = Read, "read"
		if !get {
			c.Action, c.Subtype = Update, "update"
		}
		if len(seg) == 3 && seg[2] == "rules" {
			// Alarm rule overrides; the reason is kept in the rules
			// document's history.
			c.Subtype = "rules-" + c.Subtype
		}
	case seg[0] == "break-glass" && len(seg) == 1 && get:
		c.Action, c.Subtype = Read, "break-glass" // the form names the patient asked for
	case seg[0] == "break-glass" && len(seg) == 1 && post:
		c.Action, c.Subtype = Create, "break-glass"
	case seg[0] == "alarms" && len(seg) == 1 && get:
		c.Action, c.Subtype = Search, "inbox"
	case seg[0] == "alarms" && len(seg) == 3 && post:
		c.Action, c.Subtype, c.Alarm = Update, seg[2], seg[1]
	case seg[0] == "events" && len(seg) == 2 && get:
		c.Action, c.Subtype, c.Stream = Read, "stream", true
	case seg[0] == "devices" && len(seg) == 1 && get:
		c.Action, c.Subtype = Search, "devices" // shows each device's patient
	case seg[0] == "devices" && len(seg) == 1 && post:
		c.Action, c.Subtype = Create, "device"
	case seg[0] == "devices" && len(seg) == 3 && post:
		c.Action, c.Subtype = Update, seg[2] // credentials
	case seg[0] == "admin" && len(seg) >= 2 && get:
		c.Action, c.Subtype = Search, "admin-"+seg[1] // users, teams, consents, grants, settings
	case seg[0] == "admin" && len(seg) == 2 && post:
		c.Action, c.Subtype = Create, "admin-"+seg[1]
	case seg[0] == "admin" && len(seg) > 2 && post:
		c.Action, c.Subtype = Update, "admin-"+seg[1]
	case seg[0] == "audit" && len(seg) == 1 && get:
		c.Action, c.Subtype = Search, "audit" // reading the trail is recorded too
	case seg[0] == "audit" && len(seg) == 2 && post:
		c.Action, c.Subtype = Read, "audit-"+seg[1]
	default:
		return Class{}, false
	}
	return c, true
}

// Unaudited lists the routes (as registered, "METHOD /pattern") that
// Classify leaves out on purpose, with the reason. A route of the API or
// the dashboard must be classified or listed here.
var Unaudited = map[string]string{
	"GET /healthz":                              "liveness: no data",
	"GET /readyz":                               "readiness: no data",
	"GET /metrics":                              "Prometheus counters: no patient or security data",
	"GET /.well-known/smart-configuration":      "SMART discovery: public by design",
	"GET /fhir/.well-known/smart-configuration": "SMART discovery: public by design",
	"GET /fhir/metadata":                        "the FHIR CapabilityStatement: public by design, no data",
	"POST /api/v1/devices/{id}/obs": "device ingest: devices, not people, at up to thousands of requests a second; " +
		"readings are traceable through the stream and the dead-letter store",
	"GET /assets/":     "the dashboard's static files",
	"GET /favicon.ico": "the dashboard's icon",
	"GET /signin":      "the empty sign-in form (signing in is recorded)",
	"/":                "the answer to an unknown path: 404, no data",
}

// queryPatients reads patient ids from search parameters: "p1",
// "Patient/p1" and comma-separated lists.
func queryPatients(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, splitList(l)...)
	}
	return out
}

func splitList(vs []string) []string {
	var out []string
	for _, v := range vs {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			if i := strings.LastIndex(p, "Patient/"); i >= 0 {
				p = p[i+len("Patient/"):]
			}
			if p != "" && !strings.Contains(p, "/") {
				out = append(out, p)
			}
		}
	}
	return out
}

// maxBodyPatients bounds how many patients one record names from an
// answer (a page of search results).
const maxBodyPatients = 1000

// PatientsInJSON returns the patients a JSON answer shows: FHIR Patient
// resources, "Patient/…" subject and patient references, and the
// "patient" member of the API's alarm and latest-value answers.
func PatientsInJSON(body []byte) []string {
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		if id != "" && !seen[id] && len(out) < maxBodyPatients {
			seen[id] = true
			out = append(out, id)
		}
	}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if depth > 12 {
			return
		}
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				walk(e, depth+1)
			}
		case map[string]any:
			if v["resourceType"] == "Patient" {
				if id, ok := v["id"].(string); ok {
					add(id)
				}
			}
			// entity: a Group's members (a CareTeam's patients).
			for _, k := range []string{"patient", "subject", "entity"} {
				switch ref := v[k].(type) {
				case string:
					if k == "patient" {
						add(ref)
					}
				case map[string]any:
					if s, ok := ref["reference"].(string); ok && strings.HasPrefix(s, "Patient/") {
						add(strings.TrimPrefix(s, "Patient/"))
					}
				}
			}
			for k, e := range v {
				if k != "patient" && k != "subject" {
					walk(e, depth+1)
				}
			}
		}
	}
	walk(doc, 0)
	return out
}
