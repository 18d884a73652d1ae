package api

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestTokenMisuse fills what TestTokenEndpointAttacks leaves out: the
// spellings of "none", a client's own signed assertion presented as a
// bearer token (access tokens are opaque and looked up, never parsed),
// an access token once its time is up, and an access token replayed after
// its client was deleted.
func TestTokenMisuse(t *testing.T) {
	f := newSMARTFixture(t)
	c := f.rsa
	for _, alg := range []string{"none", "None", "NONE", "nOnE", ""} {
		claimsJSON, _ := json.Marshal(f.claims(c, "none-"+alg))
		raw := b64(`{"alg":"`+alg+`","kid":"rsa-1","typ":"JWT"}`) + "." + b64(string(claimsJSON)) + "."
		if resp, m := f.tokenRequest(t, grantForm(raw, "system/Observation.rs")); resp.StatusCode != http.StatusUnauthorized || m["access_token"] != nil {
			t.Errorf("alg %q: %d %v", alg, resp.StatusCode, m)
		}
	}

	// A valid assertion is a credential for the token endpoint only.
	assertion := sign(t, c.alg, c.key, c.kid, f.claims(c, "bearer-1"))
	for _, path := range []string{"/fhir/Patient/p1", "/fhir/Observation?patient=p1", "/api/v1/patients/p1/latest"} {
		if resp, _ := f.do(t, "GET", path, assertion, "", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a client assertion as bearer token on %s: %d", path, resp.StatusCode)
		}
	}

	tok := f.getToken(t, c, "life-1", "system/Observation.rs")
	if resp, _ := f.do(t, "GET", "/fhir/Observation?patient=p1", tok, "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh access token: %d", resp.StatusCode)
	}
	f.clock.Add(2 * time.Hour)
	if resp, _ := f.do(t, "GET", "/fhir/Observation?patient=p1", tok, "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("access token two hours old: %d", resp.StatusCode)
	}

	// Deleting a client revokes the tokens it holds.
	fresh := f.getToken(t, f.ec, "life-2", "system/Observation.rs")
	if resp, m := f.do(t, "DELETE", "/api/v1/clients/"+f.ec.id, adminTok, "", ""); resp.StatusCode/100 != 2 {
		t.Fatalf("delete client: %d %v", resp.StatusCode, m)
	}
	if resp, _ := f.do(t, "GET", "/fhir/Observation?patient=p1", fresh, "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("access token of a deleted client: %d", resp.StatusCode)
	}
	// Its keys no longer buy a token.
	if resp, _ := f.tokenRequest(t, grantForm(sign(t, f.ec.alg, f.ec.key, f.ec.kid, f.claims(f.ec, "life-3")), "system/Observation.rs")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("assertion of a deleted client: %d", resp.StatusCode)
	}
}
