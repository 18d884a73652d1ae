// Package oauth implements SMART Backend Services for Tend: registered
// systems (OAuth clients holding a public JWK Set) obtain short-lived access
// tokens with the client_credentials grant, authenticating with a signed
// JWT assertion (RFC 7523, private_key_jwt), and SMART v2 scopes
// ("system/Observation.rs") say which FHIR interactions each token may
// perform.
//
// The package owns the parts that decide: scope parsing and granting,
// JWK Set validation at registration, assertion verification and token
// issuing. The HTTP endpoints live in package api; which interaction a FHIR
// request is comes from package fhir.
package oauth

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/tendhealth/tend/internal/fhir"
)

// Perm is a set of SMART v2 permissions.
type Perm uint8

// The SMART v2 permissions, in the order a scope must list them.
const (
	PermCreate Perm = 1 << iota
	PermRead
	PermUpdate
	PermDelete
	PermSearch

	permAll = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch
)

var permLetters = []struct {
	p Perm
	c byte
}{{PermCreate, 'c'}, {PermRead, 'r'}, {PermUpdate, 'u'}, {PermDelete, 'd'}, {PermSearch, 's'}}

// String returns the permissions as SMART v2 letters, e.g. "rs".
func (p Perm) String() string {
	var b []byte
	for _, l := range permLetters {
		if p&l.p != 0 {
			b = append(b, l.c)
		}
	}
	return string(b)
}

// PermOf returns the permission of a FHIR interaction.
func PermOf(in fhir.Interaction) Perm {
	for _, l := range permLetters {
		if byte(in) == l.c {
			return l.p
		}
	}
	return 0
}

// The scope contexts.
const (
	ContextPatient = "patient"
	ContextUser    = "user"
	ContextSystem  = "system"
)

// Scope is one parsed SMART clinical scope.
type Scope struct {
	Context string // patient, user or system
	Type    string // a resource type or "*"
	Perms   Perm
}

// String returns the scope in SMART v2 form.
func (s Scope) String() string { return s.Context + "/" + s.Type + "." + s.Perms.String() }

// ErrGranular is returned for scopes with a ?param=value restriction,
// which Tend does not implement: granting them as if unrestricted would
// give more than was asked for.
var ErrGranular = errors.New("granular scopes (with ?param=value) are not supported")

var scopeTypePattern = regexp.MustCompile(`^(\*|[A-Z][A-Za-z]{0,63})$`)

// maxScopeLen and maxScopes bound what a request can make the server parse.
const (
	maxScopeLen = 256
	maxScopes   = 100
)

// ParseScope parses a SMART v2 scope ("system/Observation.rs",
// "patient/*.cruds") or a SMART v1 one ("user/Patient.read", ".write",
// ".*"; v1 read is v2 "rs", write is "cud").
func ParseScope(s string) (Scope, error) {
	if len(s) > maxScopeLen {
		return Scope{}, fmt.Errorf("scope is longer than %d characters", maxScopeLen)
	}
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return Scope{}, fmt.Errorf("scope %q is not context/Type.permissions", s)
	}
	switch ctx {
	case ContextPatient, ContextUser, ContextSystem:
	default:
		return Scope{}, fmt.Errorf("scope %q: context must be patient, user or system", s)
	}
	if strings.Contains(rest, "?") {
		return Scope{}, fmt.Errorf("scope %q: %w", s, ErrGranular)
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return Scope{}, fmt.Errorf("scope %q has no permissions (.rs, .read, ...)", s)
	}
	typ, perms := rest[:dot], rest[dot+1:]
	if !scopeTypePattern.MatchString(typ) {
		return Scope{}, fmt.Errorf("scope %q: %q is not a resource type or *", s, typ)
	}
	p, err := parsePerms(perms)
	if err != nil {
		return Scope{}, fmt.Errorf("scope %q: %w", s, err)
	}
	return Scope{Context: ctx, Type: typ, Perms: p}, nil
}

func parsePerms(s string) (Perm, error) {
	switch s {
	case "read":
		return PermRead | PermSearch, nil
	case "write":
		return PermCreate | PermUpdate | PermDelete, nil
	case "*":
		return permAll, nil
	case "":
		return 0, errors.New("no permissions")
	}
	var p Perm
	i := 0
	for _, l := range permLetters {
		if i < len(s) && s[i] == l.c {
			p |= l.p
			i++
		}
	}
	if i != len(s) {
		return 0, fmt.Errorf("permissions %q must be letters of cruds, in that order, each once", s)
	}
	return p, nil
}

// ParseScopes parses a space-separated scope list (an OAuth "scope"
// parameter). Every scope must parse.
func ParseScopes(list string) ([]Scope, error) {
	fields := strings.Fields(list)
	if len(fields) > maxScopes {
		return nil, fmt.Errorf("at most %d scopes are accepted", maxScopes)
	}
	out := make([]Scope, 0, len(fields))
	for _, f := range fields {
		sc, err := ParseScope(f)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

// Strings returns the scopes in SMART v2 form.
func Strings(scopes []Scope) []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		out[i] = s.String()
	}
	return out
}

// Grant returns what of requested the registered scopes cover: per
// requested scope, the permissions also present in a registered scope of
// the same context whose type covers it. A wildcard on either side
// narrows to the other side's type. The result is merged per context and
// type, in the order requested.
func Grant(requested, registered []Scope) []Scope {
	var out []Scope
	index := map[[2]string]int{}
	add := func(s Scope) {
		k := [2]string{s.Context, s.Type}
		if i, ok := index[k]; ok {
			out[i].Perms |= s.Perms
			return
		}
		index[k] = len(out)
		out = append(out, s)
	}
	for _, req := range requested {
		for _, reg := range registered {
			if req.Context != reg.Context {
				continue
			}
			typ := ""
			switch {
			case req.Type == reg.Type, reg.Type == "*":
				typ = req.Type
			case req.Type == "*":
				typ = reg.Type
			default:
				continue
			}
			if p := req.Perms & reg.Perms; p != 0 {
				add(Scope{Context: req.Context, Type: typ, Perms: p})
			}
		}
	}
	return out
}

// Allows reports whether scopes permit any one of the interactions of a on
// its type. patient/ scopes count only when the caller has a patient
// context (a patient-role user); which patient's data that reaches is the
// access policy's business, not the scopes'. An access to every type ("*")
// needs a wildcard scope.
func Allows(scopes []Scope, hasPatient bool, a fhir.Access) bool {
	var need Perm
	for _, in := range a.Any {
		need |= PermOf(in)
	}
	for _, s := range scopes {
		if s.Context == ContextPatient && !hasPatient {
			continue
		}
		if (s.Type == "*" || s.Type == a.Type) && s.Perms&need != 0 {
			return true
		}
	}
	return false
}
