package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/fhir"
	"github.com/tendhealth/tend/internal/oauth"
)

// maxScopedBody bounds what is read to classify a Bundle or POST search:
// the FHIR handler's own Bundle limit, plus one byte to notice more.
const maxScopedBody = 4 << 20

// enforceScopes admits a FHIR request only if the caller's SMART scopes
// allow every interaction it performs: each Bundle entry, each type an
// _include or _revinclude pulls in, each type an operation returns. A
// caller without scopes (nil) is decided by role alone, as before.
func (h *Handler) enforceScopes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.PrincipalFrom(r.Context())
		if p.Scopes == nil {
			next.ServeHTTP(w, r)
			return
		}
		rel := strings.TrimPrefix(r.URL.Path, "/fhir")
		var body []byte
		if fhir.AccessNeedsBody(r.Method, rel) {
			b, err := io.ReadAll(io.LimitReader(r.Body, maxScopedBody+1))
			if err != nil {
				fhir.WriteOutcome(w, http.StatusBadRequest, "structure", "could not read the request body")
				return
			}
			if len(b) > maxScopedBody {
				fhir.WriteOutcome(w, http.StatusRequestEntityTooLarge, "too-costly", fmt.Sprintf("request body exceeds %d bytes", maxScopedBody))
				return
			}
			body = b
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		accesses, err := fhir.RequiredAccess(r.Method, rel, r.URL.Query(), r.Header.Get("Content-Type"), body)
		if err != nil {
			fhir.WriteOutcome(w, http.StatusForbidden, "forbidden", "this request cannot be checked against the access token's scopes: "+err.Error())
			return
		}
		var scopes []oauth.Scope
		for _, s := range p.Scopes {
			if sc, err := oauth.ParseScope(s); err == nil {
				scopes = append(scopes, sc)
			}
		}
		context := oauth.ContextSystem
		if p.Patient != "" {
			context = oauth.ContextPatient
		} else if len(scopes) > 0 {
			context = scopes[0].Context
		}
		for _, a := range accesses {
			if !oauth.Allows(scopes, p.Patient != "", a) {
				fhir.WriteOutcome(w, http.StatusForbidden, "forbidden", fmt.Sprintf(
					"the access token's scopes do not allow %s: it needs %s/%s.%s (any of those permissions)", a.Why, context, a.Type, a.AnyString()))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
