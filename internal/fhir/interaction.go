package fhir

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Interaction is a SMART v2 permission letter: what a request does to a
// resource type.
type Interaction byte

// The SMART v2 interactions ("cruds").
const (
	Create Interaction = 'c'
	Read   Interaction = 'r'
	Update Interaction = 'u'
	Delete Interaction = 'd'
	Search Interaction = 's'
)

// Access is one thing a request needs permission for: any one of Any on
// resources of Type ("*" for every type). Why says which part of the
// request needs it, for the caller's error message.
type Access struct {
	Type string
	Any  []Interaction
	Why  string
}

// AnyString returns the permission letters of a, e.g. "rs".
func (a Access) AnyString() string {
	b := make([]byte, len(a.Any))
	for i, in := range a.Any {
		b[i] = byte(in)
	}
	return string(b)
}

// EverythingTypes are the resource types Patient/{id}/$everything returns.
var EverythingTypes = []string{"Patient", "Observation", "Device"}

// referenceTargets names the type a reference search parameter points at
// when an _include does not say it, for the parameters Tend knows.
var referenceTargets = map[string]string{
	"patient": "Patient",
	"subject": "Patient",
	"device":  "Device",
}

var resourceTypePattern = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)

// maxAccessDepth bounds Bundle nesting: a Bundle entry may not itself
// post a Bundle to the base.
const maxAccessDepth = 1

// AccessNeedsBody reports whether RequiredAccess needs the request body to
// classify method and path (relative to the FHIR base, e.g. "/Observation"):
// Bundles at the base and POST searches carry what they do in the body.
func AccessNeedsBody(method, path string) bool {
	if method != http.MethodPost {
		return false
	}
	p := strings.Trim(path, "/")
	return p == "" || strings.HasSuffix(p, "/_search") || p == "_search"
}

// RequiredAccess classifies a FHIR request (method, path relative to the
// FHIR base, query, and for AccessNeedsBody requests its body and content
// type) into the accesses it needs. It knows the FHIR REST grammar, not
// only what Tend implements, so that a check made with it does not
// silently open an interaction added later. A request it cannot classify
// is an error: the caller refuses it.
func RequiredAccess(method, path string, query url.Values, contentType string, body []byte) ([]Access, error) {
	return requiredAccess(method, path, query, contentType, body, 0)
}

func requiredAccess(method, path string, query url.Values, contentType string, body []byte, depth int) ([]Access, error) {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	p := strings.Trim(path, "/")
	var seg []string
	if p != "" {
		seg = strings.Split(p, "/")
	}
	for _, s := range seg {
		if s == "" {
			return nil, fmt.Errorf("empty path segment in %q", path)
		}
	}
	if method == http.MethodPost && len(seg) > 0 && seg[len(seg)-1] == "_search" {
		// POST [base]/[type]/_search: the parameters may be in the body.
		q, err := formQuery(query, contentType, body)
		if err != nil {
			return nil, err
		}
		query = q
		method = http.MethodGet
		seg = seg[:len(seg)-1]
		if len(seg) > 1 {
			return nil, fmt.Errorf("_search is allowed only on a type or the base")
		}
	}
	need := func(typ, why string, in ...Interaction) Access { return Access{Type: typ, Any: in, Why: why} }
	switch {
	case len(seg) == 0:
		switch method {
		case http.MethodGet: // whole-system search
			return withIncludes([]Access{need("*", "system search", Search)}, "*", query)
		case http.MethodPost:
			if depth >= maxAccessDepth {
				return nil, fmt.Errorf("a Bundle may not contain a Bundle")
			}
			return bundleAccess(body, depth)
		}
	case seg[0] == "metadata" && len(seg) == 1:
		if method == http.MethodGet {
			return []Access{}, nil // the CapabilityStatement is public
		}
	case seg[0] == "_history" && len(seg) == 1:
		if method == http.MethodGet {
			return []Access{need("*", "system history", Search)}, nil
		}
	case (seg[0] == "$export-poll-status" && len(seg) == 2) || (seg[0] == "$export-file" && len(seg) == 3):
		// A Bulk Data job's status and files: the scopes were checked at
		// kick-off, and only the principal that started the job sees it.
		if method == http.MethodGet || (method == http.MethodDelete && len(seg) == 2) {
			return []Access{}, nil
		}
	case strings.HasPrefix(seg[0], "$"):
		if len(seg) == 1 {
			return operationAccess("", "", seg[0], query)
		}
	case resourceTypePattern.MatchString(seg[0]):
		return typeAccess(method, seg[0], seg[1:], query)
	}
	return nil, fmt.Errorf("%s %s is not a FHIR interaction Tend can check", method, path)
}

func typeAccess(method, typ string, seg []string, query url.Values) ([]Access, error) {
	need := func(why string, in ...Interaction) []Access { return []Access{{Type: typ, Any: in, Why: why}} }
	switch len(seg) {
	case 0:
		switch method {
		case http.MethodGet:
			return withIncludes(need("search", Search), typ, query)
		case http.MethodPost:
			return need("create", Create), nil
		case http.MethodPut, http.MethodPatch:
			return need("conditional update", Update), nil
		case http.MethodDelete:
			return need("conditional delete", Delete), nil
		}
	case 1:
		switch {
		case seg[0] == "_history":
			if method == http.MethodGet {
				return need("type history", Search), nil
			}
		case strings.HasPrefix(seg[0], "$"):
			return operationAccess(typ, "", seg[0], query)
		default:
			switch method {
			case http.MethodGet:
				return need("read", Read), nil
			case http.MethodPut, http.MethodPatch:
				return need("update", Update), nil
			case http.MethodDelete:
				return need("delete", Delete), nil
			}
		}
	case 2:
		switch {
		case seg[1] == "_history":
			if method == http.MethodGet {
				return need("instance history", Read), nil
			}
		case strings.HasPrefix(seg[1], "$"):
			return operationAccess(typ, seg[0], seg[1], query)
		}
	case 3:
		if seg[1] == "_history" && method == http.MethodGet {
			return need("vread", Read), nil
		}
	}
	return nil, fmt.Errorf("%s on %s/%s is not a FHIR interaction Tend can check", method, typ, strings.Join(seg, "/"))
}

// operationAccess maps the operations Tend knows; any other operation is
// refused rather than guessed at.
func operationAccess(typ, id, op string, query url.Values) ([]Access, error) {
	switch {
	case op == "$lastn" && typ == "Observation" && id == "":
		return withIncludes([]Access{{Type: "Observation", Any: []Interaction{Search}, Why: "$lastn"}}, "Observation", query)
	case op == "$everything" && typ == "Patient" && id != "":
		out := []Access{{Type: "Patient", Any: []Interaction{Read}, Why: "$everything"}}
		for _, t := range EverythingTypes {
			out = append(out, Access{Type: t, Any: []Interaction{Search}, Why: "$everything"})
		}
		return out, nil
	case op == "$status" && typ == "Subscription" && id != "":
		return []Access{{Type: "Subscription", Any: []Interaction{Read}, Why: "$status"}}, nil
	case op == "$export" && (typ == "" || (typ == "Patient" && id == "") || (typ == "Group" && id != "")):
		types := exportTypes(query)
		if types == nil {
			return []Access{{Type: "*", Any: []Interaction{Search}, Why: "$export without _type"}}, nil
		}
		var out []Access
		for _, t := range types {
			out = append(out, Access{Type: t, Any: []Interaction{Search}, Why: "$export"})
		}
		if typ == "Group" {
			out = append(out, Access{Type: "Group", Any: []Interaction{Read}, Why: "$export"})
		}
		return out, nil
	}
	where := op
	if typ != "" {
		where = typ + "/" + op
	}
	return nil, fmt.Errorf("operation %s is not one Tend can check", where)
}

func exportTypes(query url.Values) []string {
	var out []string
	for _, v := range query["_type"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// withIncludes adds what _include and _revinclude pull into a search
// result: the included resources are read by the search, so the caller
// needs read or search on their type.
func withIncludes(base []Access, typ string, query url.Values) ([]Access, error) {
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name, _, _ := strings.Cut(k, ":") // _include:iterate
		if name != "_include" && name != "_revinclude" {
			continue
		}
		for _, v := range query[k] {
			a, err := includeAccess(name, typ, v)
			if err != nil {
				return nil, err
			}
			a.Why = name + "=" + v
			base = append(base, a)
		}
	}
	return base, nil
}

// includeAccess reads "Source:param[:Target]" or "*".
func includeAccess(name, typ, v string) (Access, error) {
	anyOf := []Interaction{Read, Search}
	if v == "*" {
		return Access{Type: "*", Any: anyOf}, nil
	}
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || !resourceTypePattern.MatchString(parts[0]) || parts[1] == "" {
		return Access{}, fmt.Errorf("%s=%s is not Source:parameter[:Target]", name, v)
	}
	if name == "_revinclude" {
		// The included resources are of the source type, found by search.
		return Access{Type: parts[0], Any: anyOf}, nil
	}
	if len(parts) == 3 {
		if !resourceTypePattern.MatchString(parts[2]) {
			return Access{}, fmt.Errorf("%s=%s: bad target type", name, v)
		}
		return Access{Type: parts[2], Any: anyOf}, nil
	}
	if t, ok := referenceTargets[parts[1]]; ok {
		return Access{Type: t, Any: anyOf}, nil
	}
	// An unknown reference may point at any type.
	return Access{Type: "*", Any: anyOf}, nil
}

// formQuery merges the URL query with a form-encoded POST _search body.
func formQuery(query url.Values, contentType string, body []byte) (url.Values, error) {
	out := url.Values{}
	for k, v := range query {
		out[k] = append([]string{}, v...)
	}
	if len(body) == 0 {
		return out, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("a POST _search body must be application/x-www-form-urlencoded")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("POST _search body: %w", err)
	}
	for k, v := range form {
		out[k] = append(out[k], v...)
	}
	return out, nil
}

// bundleAccess is what every entry of a batch or transaction needs.
func bundleAccess(body []byte, depth int) ([]Access, error) {
	var b inBundle
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("the body is not a JSON Bundle: %w", err)
	}
	if b.ResourceType != "Bundle" || (b.Type != "batch" && b.Type != "transaction") {
		return nil, fmt.Errorf("the server base takes only batch and transaction Bundles")
	}
	if len(b.Entry) > maxBundleEntries {
		return nil, fmt.Errorf("a Bundle may have at most %d entries", maxBundleEntries)
	}
	var out []Access
	for i, e := range b.Entry {
		if e.Request == nil {
			return nil, fmt.Errorf("Bundle.entry[%d].request is missing", i)
		}
		u, err := url.Parse(e.Request.URL)
		if err != nil || u.IsAbs() || u.Host != "" {
			return nil, fmt.Errorf("Bundle.entry[%d].request.url must be relative to the base", i)
		}
		method := strings.ToUpper(e.Request.Method)
		// An entry carries its resource, not a form body: a POST _search
		// entry has its parameters in the url.
		acc, err := requiredAccess(method, "/"+u.Path, u.Query(), "", nil, depth+1)
		if err != nil {
			return nil, fmt.Errorf("Bundle.entry[%d]: %w", i, err)
		}
		for j := range acc {
			acc[j].Why = fmt.Sprintf("Bundle.entry[%d] %s", i, acc[j].Why)
		}
		out = append(out, acc...)
	}
	return out, nil
}

// WriteOutcome answers status with an OperationOutcome of one error
// issue, for checks made in front of the FHIR handler (such as SMART
// scopes). code is a FHIR issue type such as "forbidden".
func WriteOutcome(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, outcome("error", code, msg))
}
