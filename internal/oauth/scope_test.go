package oauth

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tendhealth/tend/internal/fhir"
)

func TestParseScope(t *testing.T) {
	cases := []struct {
		in      string
		want    string // canonical v2 form; "" means an error is expected
		errLike string
	}{
		{in: "system/Observation.rs", want: "system/Observation.rs"},
		{in: "patient/*.cruds", want: "patient/*.cruds"},
		{in: "user/Patient.r", want: "user/Patient.r"},
		{in: "system/Device.cud", want: "system/Device.cud"},
		{in: "system/Patient.read", want: "system/Patient.rs"},
		{in: "system/Patient.write", want: "system/Patient.cud"},
		{in: "system/*.*", want: "system/*.cruds"},
		{in: "user/*.read", want: "user/*.rs"},
		{in: "system/Observation.sr", errLike: "in that order"},
		{in: "system/Observation.rr", errLike: "in that order"},
		{in: "system/Observation.x", errLike: "in that order"},
		{in: "system/Observation.", errLike: "no permissions"},
		{in: "system/Observation", errLike: "no permissions"},
		{in: "system/observation.rs", errLike: "not a resource type"},
		{in: "system/.rs", errLike: "not a resource type"},
		{in: "system/Obs-ervation.rs", errLike: "not a resource type"},
		{in: "launch/Patient.rs", errLike: "context must be"},
		{in: "openid", errLike: "not context/Type"},
		{in: "system/Observation.rs?category=vital-signs", errLike: "granular"},
		{in: "system/" + strings.Repeat("A", 300) + ".rs", errLike: "longer than"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseScope(c.in)
			if c.want == "" {
				if err == nil || !strings.Contains(err.Error(), c.errLike) {
					t.Fatalf("ParseScope(%q) = %v, %v; want error like %q", c.in, got, err, c.errLike)
				}
				return
			}
			if err != nil || got.String() != c.want {
				t.Fatalf("ParseScope(%q) = %v, %v; want %s", c.in, got, err, c.want)
			}
		})
	}
	if _, err := ParseScope("system/Observation.rs?code=1"); !errors.Is(err, ErrGranular) {
		t.Fatalf("granular scope error %v does not wrap ErrGranular", err)
	}
}

func TestGrant(t *testing.T) {
	cases := []struct {
		name, requested, registered, want string
	}{
		{"subset", "system/Observation.rs", "system/Observation.cruds", "system/Observation.rs"},
		{"narrowed perms", "system/Observation.cruds", "system/Observation.rs", "system/Observation.rs"},
		{"wildcard registered", "system/Patient.r", "system/*.rs", "system/Patient.r"},
		{"wildcard requested", "system/*.rs", "system/Patient.r system/Device.rs", "system/Patient.r system/Device.rs"},
		{"unregistered type", "system/Device.r", "system/Patient.rs", ""},
		{"other context", "user/Patient.r", "system/Patient.rs", ""},
		{"merged", "system/Patient.r system/Patient.s", "system/Patient.rs", "system/Patient.rs"},
		{"v1 read against v2", "system/Observation.read", "system/Observation.r", "system/Observation.r"},
		{"disjoint perms", "system/Observation.c", "system/Observation.rs", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := ParseScopes(c.requested)
			if err != nil {
				t.Fatal(err)
			}
			reg, err := ParseScopes(c.registered)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(Strings(Grant(req, reg)), " "); got != c.want {
				t.Fatalf("Grant(%q, %q) = %q, want %q", c.requested, c.registered, got, c.want)
			}
		})
	}
}

func TestAllows(t *testing.T) {
	acc := func(typ string, in ...fhir.Interaction) fhir.Access { return fhir.Access{Type: typ, Any: in} }
	cases := []struct {
		name       string
		scopes     string
		hasPatient bool
		access     fhir.Access
		want       bool
	}{
		{"search with s", "system/Observation.s", false, acc("Observation", fhir.Search), true},
		{"read without r", "system/Observation.s", false, acc("Observation", fhir.Read), false},
		{"include needs r or s", "system/Device.r", false, acc("Device", fhir.Read, fhir.Search), true},
		{"other type", "system/Patient.rs", false, acc("Observation", fhir.Read), false},
		{"wildcard scope", "system/*.r", false, acc("Device", fhir.Read), true},
		{"every type needs wildcard", "system/Patient.s system/Device.s", false, acc("*", fhir.Search), false},
		{"every type with wildcard", "system/*.s", false, acc("*", fhir.Search), true},
		{"patient scope without patient context", "patient/Observation.rs", false, acc("Observation", fhir.Read), false},
		{"patient scope with patient context", "patient/Observation.rs", true, acc("Observation", fhir.Read), true},
		{"no scopes", "", false, acc("Patient", fhir.Read), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc, err := ParseScopes(c.scopes)
			if err != nil {
				t.Fatal(err)
			}
			if got := Allows(sc, c.hasPatient, c.access); got != c.want {
				t.Fatalf("Allows(%q, %v) = %v, want %v", c.scopes, c.access, got, c.want)
			}
		})
	}
}

// FuzzParseScopes: never panics, and what parses prints back to a scope
// that parses to the same thing.
func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"system/Observation.rs", "patient/*.cruds user/Patient.read", "system/*.*", "system/A.rs?x=y", "a/b.c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sc, err := ParseScopes(in)
		if err != nil {
			return
		}
		again, err := ParseScopes(strings.Join(Strings(sc), " "))
		if err != nil {
			t.Fatalf("canonical form of %q does not parse: %v", in, err)
		}
		if !slices.Equal(again, sc) {
			t.Fatalf("round trip of %q: %v != %v", in, again, sc)
		}
		for _, s := range sc {
			if s.Perms == 0 {
				t.Fatalf("%q parsed to a scope with no permissions", in)
			}
		}
	})
}
