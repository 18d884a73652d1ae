package oauth

import (
	"net/url"
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"
)

// maxClaimedClient bounds the claimed client id kept in the audit trail.
const maxClaimedClient = 128

// ClaimedClient returns the client a token request says it comes from,
// unverified: the client_id parameter, else the iss of the client
// assertion. It is only for recording who tried (the audit trail), never
// for a decision; "" when the request names nobody readable.
func ClaimedClient(form url.Values) string {
	id := form.Get("client_id")
	if raw := form.Get("client_assertion"); id == "" && raw != "" && len(raw) <= maxAssertionBytes {
		if tok, err := jwt.ParseSigned(raw, SigningAlgs); err == nil {
			var c jwt.Claims
			if tok.UnsafeClaimsWithoutVerification(&c) == nil {
				id = c.Issuer
			}
		}
	}
	return strings.ToValidUTF8(id[:min(len(id), maxClaimedClient)], "")
}
