package api

import (
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/oauth"
	"github.com/tendhealth/tend/internal/store"
)

// tokenPath is the OAuth token endpoint (SMART Backend Services).
const tokenPath = "/auth/token"

// maxTokenRequest bounds a token request body: one assertion and a scope
// list.
const maxTokenRequest = 64 << 10

// smartRoutes serves SMART Backend Services: client registration (admin),
// the token endpoint and the discovery document (both public by design).
func (h *Handler) smartRoutes() {
	srv := oauth.New(oauth.Config{Store: h.cfg.Store, Now: h.cfg.Now, Logger: h.cfg.Logger})
	m := h.mux
	m.HandleFunc("GET /.well-known/smart-configuration", h.smartConfiguration)
	m.HandleFunc("GET /fhir/.well-known/smart-configuration", h.smartConfiguration)
	m.HandleFunc("POST "+tokenPath, func(w http.ResponseWriter, r *http.Request) { h.tokenEndpoint(srv, w, r) })
	m.Handle("POST /api/v1/clients", h.admin(func(w http.ResponseWriter, r *http.Request) error { return h.postClient(srv, w, r) }))
	m.Handle("GET /api/v1/clients", h.admin(h.listClients))
	m.Handle("DELETE /api/v1/clients/{id}", h.admin(h.deleteClient))
}

// publicBase is the base URL of this request as the client sees it: the
// configured public URL, else the request's own scheme and Host.
// X-Forwarded-* headers are not trusted: any client can send them.
func (h *Handler) publicBase(r *http.Request) string {
	if h.cfg.PublicURL != "" {
		return strings.TrimSuffix(h.cfg.PublicURL, "/")
	}
	return requestBase(r)
}

func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// tokenAudiences are the URLs a client assertion may be addressed to.
func (h *Handler) tokenAudiences(r *http.Request) []string {
	aud := []string{requestBase(r) + tokenPath}
	if h.cfg.PublicURL != "" {
		aud = append(aud, strings.TrimSuffix(h.cfg.PublicURL, "/")+tokenPath)
	}
	return aud
}

// smartConfiguration is the SMART discovery document: a backend client
// reads the token endpoint and what it accepts from here.
func (h *Handler) smartConfiguration(w http.ResponseWriter, r *http.Request) {
	algs := make([]string, len(oauth.SigningAlgs))
	for i, a := range oauth.SigningAlgs {
		algs[i] = string(a)
	}
	w.Header().Set("Cache-Control", "max-age=3600")
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                                   h.publicBase(r) + tokenPath,
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": algs,
		"grant_types_supported":                            []string{"client_credentials"},
		"scopes_supported": []string{"system/*.cruds", "system/*.rs", "system/Patient.cruds", "system/Patient.rs",
			"system/Observation.cruds", "system/Observation.rs", "system/Device.cruds", "system/Device.rs"},
		"capabilities": []string{"client-confidential-asymmetric", "permission-v2"},
	})
}

// tokenEndpoint runs the client_credentials grant (RFC 6749 §4.4) with a
// private_key_jwt assertion (RFC 7523). Errors follow RFC 6749 §5.2 and
// say no more than the error code needs; the detail goes to the debug
// log, without the assertion.
func (h *Handler) tokenEndpoint(srv *oauth.Server, w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	fail := func(e *oauth.Error) {
		h.cfg.Logger.Debug("token request refused", "error", e.Code, "detail", e.Error(), "remote", r.RemoteAddr)
		writeJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Description})
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		fail(&oauth.Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: "the body must be application/x-www-form-urlencoded"})
		return
	}
	if r.URL.RawQuery != "" {
		// Credentials in a URL end up in logs and histories.
		fail(&oauth.Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: "parameters belong in the body, not the URL"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenRequest)
	if err := r.ParseForm(); err != nil {
		fail(&oauth.Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: "the body is not a valid form"})
		return
	}
	resp, err := srv.Token(r.Context(), r.PostForm, h.tokenAudiences(r))
	// The trail names the client: the one issued a token, or the one a
	// refused request claimed to be (like the user name of a failed sign-in).
	if err == nil {
		audit.SetAgent(r.Context(), auth.Principal{Subject: resp.Client.ID, Role: string(resp.Client.Role), Org: resp.Client.Org})
	} else {
		audit.SetAgent(r.Context(), auth.Principal{Subject: oauth.ClaimedClient(r.PostForm)})
	}
	var oe *oauth.Error
	switch {
	case errors.As(err, &oe):
		fail(oe)
	case err != nil:
		h.cfg.Logger.Error("token request failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable",
			"error_description": "Tend could not issue a token right now; retry later"})
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

// checkTokenLimits refuses an expired token, and a token limited by SMART
// scopes anywhere but FHIR: scopes speak of FHIR resources only, so such
// a token opens nothing else.
func (h *Handler) checkTokenLimits(t store.Token, r *http.Request) error {
	if !t.Expires.IsZero() && !h.now().Before(t.Expires) {
		return errUnauthorized
	}
	if t.Scopes != nil && r.URL.Path != "/fhir" && !strings.HasPrefix(r.URL.Path, "/fhir/") {
		return &Error{Status: http.StatusForbidden, Detail: "this access token carries SMART scopes and is valid only for /fhir"}
	}
	return nil
}

func (h *Handler) now() time.Time {
	if h.cfg.Now != nil {
		return h.cfg.Now()
	}
	return time.Now()
}
