package oauth

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4/jwt"
)

func TestClaimedClient(t *testing.T) {
	keys := newFuzzKeys(t)
	signed := keys.sign(t, jwt.Claims{Issuer: "lab-ehr", Subject: "lab-ehr"})
	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"the assertion's iss", url.Values{"client_assertion": {signed}}, "lab-ehr"},
		{"client_id first", url.Values{"client_id": {"named"}, "client_assertion": {signed}}, "named"},
		{"nothing readable", url.Values{"client_assertion": {"a.b.c"}}, ""},
		{"no alg none", url.Values{"client_assertion": {"eyJhbGciOiJub25lIn0.eyJpc3MiOiJjMSJ9."}}, ""},
		{"nothing at all", url.Values{}, ""},
		{"clipped", url.Values{"client_id": {strings.Repeat("x", 500)}}, strings.Repeat("x", maxClaimedClient)},
	} {
		if got := ClaimedClient(tc.form); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// FuzzClaimedClient: no input panics and the answer is bounded valid text.
func FuzzClaimedClient(f *testing.F) {
	keys := newFuzzKeys(f)
	f.Add(keys.sign(f, jwt.Claims{Issuer: "c1"}), "")
	f.Add("a.b.c", "")
	f.Add("", "c2")
	f.Fuzz(func(t *testing.T, assertion, clientID string) {
		got := ClaimedClient(url.Values{"client_assertion": {assertion}, "client_id": {clientID}})
		if len(got) > maxClaimedClient || !utf8.ValidString(got) {
			t.Fatalf("ClaimedClient = %q: over the bound or not UTF-8", got)
		}
		if clientID != "" && got != strings.ToValidUTF8(clientID[:min(len(clientID), maxClaimedClient)], "") {
			t.Fatalf("ClaimedClient = %q for client_id %q", got, clientID)
		}
	})
}
