package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/fhir"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

// testClock is the injected time of the SMART fixture.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// smartClient is a registered backend client and its private key.
type smartClient struct {
	id  string
	kid string
	alg jose.SignatureAlgorithm
	key any // *rsa.PrivateKey or *ecdsa.PrivateKey
}

type smartFixture struct {
	srv   *httptest.Server
	st    store.Store
	clock *testClock
	rsa   smartClient // RS384, registered "system/Observation.rs system/Patient.rs system/Device.r"
	ec    smartClient // ES384, registered "system/*.cruds"
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey is generated once: 2048-bit generation is slow.
func testRSAKey(t *testing.T) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func newSMARTFixture(t *testing.T) *smartFixture {
	t.Helper()
	clock := &testClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"), sqlite.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.PutToken(ctx, store.Token{Hash: auth.HashSecret(adminTok), Role: store.RoleAdmin, Subject: "admin", Created: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreatePatient(ctx, &store.Patient{ID: "p1", Resource: []byte(`{"resourceType":"Patient","id":"p1"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateDevice(ctx, &store.Device{ID: "d1", Patient: "p1", Resource: []byte(`{"resourceType":"Device","id":"d1"}`)}, clock.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fh := fhir.NewHandler(fhir.Config{Store: st, Now: clock.Now, Logger: log})
	h := New(Config{Store: st, FHIR: fh, Ready: func() error { return nil }, Now: clock.Now, Logger: log})
	f := &smartFixture{srv: httptest.NewServer(h), st: st, clock: clock}
	t.Cleanup(f.srv.Close)

	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.rsa = smartClient{kid: "rsa-1", alg: jose.RS384, key: testRSAKey(t)}
	f.rsa.id = f.register(t, "EHR", f.rsa, "system/Observation.rs system/Patient.rs system/Device.r")
	f.ec = smartClient{kid: "ec-1", alg: jose.ES384, key: ecKey}
	f.ec.id = f.register(t, "Gateway", f.ec, "system/*.cruds")
	return f
}

func publicJWK(c smartClient) jose.JSONWebKey {
	var pub any
	switch k := c.key.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	}
	return jose.JSONWebKey{Key: pub, KeyID: c.kid, Algorithm: string(c.alg), Use: "sig"}
}

func (f *smartFixture) register(t *testing.T, name string, c smartClient, scope string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"name": name, "scope": scope, "role": "integration",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{publicJWK(c)}}})
	resp, m := f.do(t, "POST", "/api/v1/clients", adminTok, "application/json", string(body))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register %s: %d %v", name, resp.StatusCode, m)
	}
	return m["client_id"].(string)
}

func (f *smartFixture) do(t *testing.T, method, path, token, ctype, body string) (*http.Response, map[string]any) {
	t.Helper()
	return (&fixture{srv: f.srv}).do(t, method, path, token, ctype, body)
}

func (f *smartFixture) tokenURL() string { return f.srv.URL + "/auth/token" }

// claims are the claims of a valid assertion by c.
func (f *smartFixture) claims(c smartClient, jti string) jwt.Claims {
	now := f.clock.Now()
	return jwt.Claims{Issuer: c.id, Subject: c.id, Audience: jwt.Audience{f.tokenURL()}, ID: jti,
		Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), IssuedAt: jwt.NewNumericDate(now)}
}

// sign builds a compact JWS the way a real client library does.
func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (f *smartFixture) assertion(t *testing.T, c smartClient, claims any) string {
	return sign(t, c.alg, c.key, c.kid, claims)
}

// tokenRequest posts a form to the token endpoint.
func (f *smartFixture) tokenRequest(t *testing.T, form url.Values) (*http.Response, map[string]any) {
	t.Helper()
	return f.do(t, "POST", "/auth/token", "", "application/x-www-form-urlencoded", form.Encode())
}

func grantForm(assertion, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {assertion}, "scope": {scope}}
}

func (f *smartFixture) getToken(t *testing.T, c smartClient, jti, scope string) string {
	t.Helper()
	resp, m := f.tokenRequest(t, grantForm(f.assertion(t, c, f.claims(c, jti)), scope))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, m)
	}
	return m["access_token"].(string)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestTokenEndpointSuccess(t *testing.T) {
	f := newSMARTFixture(t)
	for _, c := range []struct {
		name      string
		client    smartClient
		scope     string
		wantScope string
	}{
		{"RS384, narrowed to the registration", f.rsa, "system/Observation.rs system/Patient.cruds system/Device.s", "system/Observation.rs system/Patient.rs"},
		{"ES384, wildcard registration", f.ec, "system/Observation.read system/Device.c", "system/Observation.rs system/Device.c"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, m := f.tokenRequest(t, grantForm(f.assertion(t, c.client, f.claims(c.client, "ok-"+c.client.kid)), c.scope))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %v", resp.StatusCode, m)
			}
			if m["token_type"] != "bearer" || m["expires_in"] != float64(300) || m["scope"] != c.wantScope || m["access_token"] == "" {
				t.Fatalf("response %v, want bearer, 300 s, scope %q", m, c.wantScope)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("Cache-Control %q, want no-store", cc)
			}
		})
	}
}

// Every attack on the client assertion is refused, and the refusal says
// no more than the RFC 6749 error code.
func TestTokenEndpointAttacks(t *testing.T) {
	f := newSMARTFixture(t)
	c := f.rsa
	now := f.clock.Now()
	valid := func(jti string) jwt.Claims { return f.claims(c, jti) }
	with := func(jti string, edit func(*jwt.Claims)) jwt.Claims { cl := valid(jti); edit(&cl); return cl }

	pubDER, _ := x509.MarshalPKIXPublicKey(&testRSAKey(t).PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	claimsJSON, _ := json.Marshal(valid("none-1"))

	replayed := f.assertion(t, c, valid("replay-1"))
	if resp, m := f.tokenRequest(t, grantForm(replayed, "system/Observation.rs")); resp.StatusCode != http.StatusOK {
		t.Fatalf("first use of the replayed assertion: %d %v", resp.StatusCode, m)
	}
	good := f.assertion(t, c, valid("tamper-1"))
	parts := strings.Split(good, ".")
	sig := []byte(parts[2])
	sig[len(sig)/2] ^= 'A' ^ 'B'
	if sig[len(sig)/2] == parts[2][len(sig)/2] {
		t.Fatal("tampering changed nothing")
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)
	otherClaims, _ := json.Marshal(with("tamper-2", func(cl *jwt.Claims) { cl.Issuer, cl.Subject = f.ec.id, f.ec.id }))
	tamperedPayload := parts[0] + "." + b64(string(otherClaims)) + "." + parts[2]

	cases := []struct {
		name       string
		form       url.Values
		wantStatus int
		wantError  string
	}{
		{"alg none", grantForm(b64(`{"alg":"none","kid":"rsa-1","typ":"JWT"}`)+"."+b64(string(claimsJSON))+".", "system/Observation.rs"), 401, "invalid_client"},
		{"HS256 with the RSA public key as secret", grantForm(sign(t, jose.HS256, pubPEM, c.kid, valid("hs-1")), "system/Observation.rs"), 401, "invalid_client"},
		{"HS256 with the JWK modulus as secret", grantForm(sign(t, jose.HS256, testRSAKey(t).PublicKey.N.Bytes(), c.kid, valid("hs-2")), "system/Observation.rs"), 401, "invalid_client"},
		{"expired", grantForm(f.assertion(t, c, with("exp-1", func(cl *jwt.Claims) { cl.Expiry = jwt.NewNumericDate(now.Add(-2 * time.Minute)) })), "system/Observation.rs"), 401, "invalid_client"},
		{"exp too far ahead", grantForm(f.assertion(t, c, with("exp-2", func(cl *jwt.Claims) { cl.Expiry = jwt.NewNumericDate(now.Add(10 * time.Minute)) })), "system/Observation.rs"), 401, "invalid_client"},
		{"no exp", grantForm(f.assertion(t, c, with("exp-3", func(cl *jwt.Claims) { cl.Expiry = nil })), "system/Observation.rs"), 401, "invalid_client"},
		{"wrong audience", grantForm(f.assertion(t, c, with("aud-1", func(cl *jwt.Claims) { cl.Audience = jwt.Audience{"https://elsewhere.example/auth/token"} })), "system/Observation.rs"), 401, "invalid_client"},
		{"audience of another endpoint here", grantForm(f.assertion(t, c, with("aud-2", func(cl *jwt.Claims) { cl.Audience = jwt.Audience{f.srv.URL + "/api/v1/auth/token"} })), "system/Observation.rs"), 401, "invalid_client"},
		{"missing jti", grantForm(f.assertion(t, c, with("", func(*jwt.Claims) {})), "system/Observation.rs"), 401, "invalid_client"},
		{"replayed jti", grantForm(replayed, "system/Observation.rs"), 401, "invalid_client"},
		{"tampered signature", grantForm(tamperedSig, "system/Observation.rs"), 401, "invalid_client"},
		{"tampered payload", grantForm(tamperedPayload, "system/Observation.rs"), 401, "invalid_client"},
		{"unknown kid", grantForm(sign(t, c.alg, c.key, "rsa-2", valid("kid-1")), "system/Observation.rs"), 401, "invalid_client"},
		{"no kid", grantForm(sign(t, c.alg, c.key, "", valid("kid-2")), "system/Observation.rs"), 401, "invalid_client"},
		{"kid and key of another client", grantForm(sign(t, f.ec.alg, f.ec.key, f.ec.kid, valid("kid-3")), "system/Observation.rs"), 401, "invalid_client"},
		{"iss differs from sub", grantForm(f.assertion(t, c, with("iss-1", func(cl *jwt.Claims) { cl.Subject = f.ec.id })), "system/Observation.rs"), 401, "invalid_client"},
		{"unregistered client", grantForm(f.assertion(t, c, with("iss-2", func(cl *jwt.Claims) { cl.Issuer, cl.Subject = "nobody", "nobody" })), "system/Observation.rs"), 401, "invalid_client"},
		{"nbf in the future", grantForm(f.assertion(t, c, with("nbf-1", func(cl *jwt.Claims) { cl.NotBefore = jwt.NewNumericDate(now.Add(2 * time.Minute)) })), "system/Observation.rs"), 401, "invalid_client"},
		{"client_secret instead", url.Values{"grant_type": {"client_credentials"}, "client_id": {c.id}, "client_secret": {"x"}}, 401, "invalid_client"},
		{"wrong grant_type", func() url.Values {
			v := grantForm(f.assertion(t, c, valid("gt-1")), "system/Observation.rs")
			v.Set("grant_type", "password")
			return v
		}(), 400, "unsupported_grant_type"},
		{"assertion type missing", func() url.Values {
			v := grantForm(f.assertion(t, c, valid("at-1")), "system/Observation.rs")
			v.Del("client_assertion_type")
			return v
		}(), 400, "invalid_request"},
		{"patient scope for a backend client", grantForm(f.assertion(t, c, valid("sc-1")), "patient/Observation.rs"), 400, "invalid_scope"},
		{"unregistered scope only", grantForm(f.assertion(t, c, valid("sc-2")), "system/Device.c"), 400, "invalid_scope"},
		{"granular scope", grantForm(f.assertion(t, c, valid("sc-3")), "system/Observation.rs?category=vital-signs"), 400, "invalid_scope"},
		{"no scope", grantForm(f.assertion(t, c, valid("sc-4")), ""), 400, "invalid_scope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, m := f.tokenRequest(t, tc.form)
			if resp.StatusCode != tc.wantStatus || m["error"] != tc.wantError {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, m, tc.wantStatus, tc.wantError)
			}
			if _, ok := m["access_token"]; ok {
				t.Fatal("an access token was issued")
			}
			if tc.wantError == "invalid_client" && m["error_description"] != "client authentication failed" {
				t.Fatalf("invalid_client says more than it should: %v", m["error_description"])
			}
		})
	}

	// Parameters in the URL or a JSON body are refused outright.
	resp, m := f.do(t, "POST", "/auth/token?"+grantForm(f.assertion(t, c, valid("url-1")), "system/Observation.rs").Encode(), "", "application/x-www-form-urlencoded", "")
	if resp.StatusCode != 400 || m["error"] != "invalid_request" {
		t.Fatalf("parameters in the URL: %d %v", resp.StatusCode, m)
	}
	js, _ := json.Marshal(map[string]string{"grant_type": "client_credentials"})
	if resp, m := f.do(t, "POST", "/auth/token", "", "application/json", string(js)); resp.StatusCode != 400 || m["error"] != "invalid_request" {
		t.Fatalf("JSON body: %d %v", resp.StatusCode, m)
	}
}

// A replayed jti is refused even after the server restarts: the ids live
// in the store.
func TestTokenEndpointReplayAfterRestart(t *testing.T) {
	f := newSMARTFixture(t)
	raw := f.assertion(t, f.rsa, f.claims(f.rsa, "restart-1"))
	if resp, m := f.tokenRequest(t, grantForm(raw, "system/Observation.rs")); resp.StatusCode != 200 {
		t.Fatalf("first use: %d %v", resp.StatusCode, m)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	restarted := httptest.NewServer(New(Config{Store: f.st, Now: f.clock.Now, Logger: log}))
	defer restarted.Close()
	// The same assertion, addressed to the restarted server's URL.
	cl := f.claims(f.rsa, "restart-1")
	cl.Audience = jwt.Audience{restarted.URL + "/auth/token"}
	resp, err := http.PostForm(restarted.URL+"/auth/token", grantForm(f.assertion(t, f.rsa, cl), "system/Observation.rs"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replay after restart: %d, want 401", resp.StatusCode)
	}
}

func TestScopeEnforcement(t *testing.T) {
	f := newSMARTFixture(t)
	ctx := context.Background()
	n := 0
	tokenWith := func(scopes ...string) string {
		n++
		tok := "scoped-token-" + strings.Repeat("x", n)
		if scopes == nil {
			scopes = []string{}
		}
		if err := f.st.PutToken(ctx, store.Token{Hash: auth.HashSecret(tok), Role: store.RoleIntegration, Subject: "c", Client: "c",
			Created: f.clock.Now(), Expires: f.clock.Now().Add(time.Hour), Scopes: scopes}); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	bundle := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation"}}]}`
	cases := []struct {
		name        string
		scopes      []string
		method      string
		path        string
		ctype, body string
		wantDenied  bool
		wantMissing string // in the OperationOutcome of a denial
	}{
		{"search with .s", []string{"system/Patient.s"}, "GET", "/fhir/Patient", "", "", false, ""},
		{"read denied with only .s", []string{"system/Patient.s"}, "GET", "/fhir/Patient/p1", "", "", true, "system/Patient.r"},
		{"read with .r", []string{"system/Patient.r"}, "GET", "/fhir/Patient/p1", "", "", false, ""},
		{"vread with .r", []string{"system/Patient.r"}, "GET", "/fhir/Patient/p1/_history/1", "", "", false, ""},
		{"search denied with only .r", []string{"system/Patient.r"}, "GET", "/fhir/Patient", "", "", true, "system/Patient.s"},
		{"v1 read scope", []string{"system/Patient.read"}, "GET", "/fhir/Patient/p1", "", "", false, ""},
		{"other type", []string{"system/Observation.rs"}, "GET", "/fhir/Device/d1", "", "", true, "system/Device.r"},
		{"observation search", []string{"system/Observation.s"}, "GET", "/fhir/Observation?patient=p1", "", "", false, ""},
		{"_include needs the device type", []string{"system/Observation.s"}, "GET", "/fhir/Observation?patient=p1&_include=Observation:device", "", "", true, "Device"},
		{"_include with device read", []string{"system/Observation.s", "system/Device.r"}, "GET", "/fhir/Observation?patient=p1&_include=Observation:device", "", "", false, ""},
		{"_revinclude needs the source type", []string{"system/Patient.s"}, "GET", "/fhir/Patient?_revinclude=Observation:patient", "", "", true, "system/Observation.rs"},
		{"$lastn with Observation.s", []string{"system/Observation.s"}, "GET", "/fhir/Observation/$lastn?patient=p1", "", "", false, ""},
		{"$everything needs every type", []string{"system/Patient.r", "system/Observation.s"}, "GET", "/fhir/Patient/p1/$everything", "", "", true, "system/Patient.s"},
		{"$everything with *.rs", []string{"system/*.rs"}, "GET", "/fhir/Patient/p1/$everything", "", "", false, ""},
		{"create needs .c", []string{"system/Patient.rs"}, "POST", "/fhir/Patient", "application/fhir+json", `{"resourceType":"Patient"}`, true, "system/Patient.c"},
		{"create with .c", []string{"system/Patient.c"}, "POST", "/fhir/Patient", "application/fhir+json", `{"resourceType":"Patient"}`, false, ""},
		{"update needs .u", []string{"system/Patient.r"}, "PUT", "/fhir/Patient/p1", "application/fhir+json", `{"resourceType":"Patient","id":"p1"}`, true, "system/Patient.u"},
		{"update with .u", []string{"system/Patient.u"}, "PUT", "/fhir/Patient/p1", "application/fhir+json", `{"resourceType":"Patient","id":"p1"}`, false, ""},
		{"delete needs .d", []string{"system/Patient.cru"}, "DELETE", "/fhir/Patient/p1", "", "", true, "system/Patient.d"},
		{"history needs .r", []string{"system/Patient.s"}, "GET", "/fhir/Patient/p1/_history", "", "", true, "system/Patient.r"},
		{"type history needs .s", []string{"system/Patient.r"}, "GET", "/fhir/Patient/_history", "", "", true, "system/Patient.s"},
		{"bundle entry needs .c", []string{"system/Observation.rs"}, "POST", "/fhir", "application/fhir+json", bundle, true, "system/Observation.c"},
		{"bundle entry with .c", []string{"system/Observation.c"}, "POST", "/fhir", "application/fhir+json", bundle, false, ""},
		{"POST _search form body include", []string{"system/Observation.s"}, "POST", "/fhir/Observation/_search", "application/x-www-form-urlencoded", "patient=p1&_include=Observation:device", true, "Device"},
		{"$export needs each type", []string{"system/Patient.s"}, "GET", "/fhir/$export?_type=Patient,Observation", "", "", true, "system/Observation.s"},
		{"unknown operation refused", []string{"system/*.cruds"}, "GET", "/fhir/Patient/p1/$frobnicate", "", "", true, "cannot be checked"},
		{"compartment search refused", []string{"system/*.cruds"}, "GET", "/fhir/Patient/p1/Observation", "", "", true, "cannot be checked"},
		{"no scopes at all", nil, "GET", "/fhir/Patient/p1", "", "", true, "system/Patient.r"},
		{"metadata needs no scope", nil, "GET", "/fhir/metadata", "", "", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, m := f.do(t, c.method, c.path, tokenWith(c.scopes...), c.ctype, c.body)
			if c.wantDenied {
				if resp.StatusCode != http.StatusForbidden || m["resourceType"] != "OperationOutcome" {
					t.Fatalf("got %d %v, want 403 OperationOutcome", resp.StatusCode, m)
				}
				b, _ := json.Marshal(m)
				if !strings.Contains(string(b), c.wantMissing) {
					t.Fatalf("outcome %s does not name %q", b, c.wantMissing)
				}
				return
			}
			if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized {
				t.Fatalf("refused: %d %v", resp.StatusCode, m)
			}
		})
	}

	// A scoped token opens nothing outside FHIR.
	resp, _ := f.do(t, "GET", "/api/v1/patients/p1/latest", tokenWith("system/*.cruds"), "", "")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("scoped token on the operator API: %d, want 403", resp.StatusCode)
	}
	// An unscoped API token is decided by role, as before.
	resp, _ = f.do(t, "GET", "/fhir/Patient/p1", adminTok, "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin token without scopes: %d, want 200", resp.StatusCode)
	}
}

// The whole flow: register, get a token, use it until it expires; then a
// revoked client's tokens stop working at once.
func TestAccessTokenLifetimeAndRevocation(t *testing.T) {
	f := newSMARTFixture(t)
	tok := f.getToken(t, f.rsa, "life-1", "system/Patient.rs")
	if resp, m := f.do(t, "GET", "/fhir/Patient/p1", tok, "", ""); resp.StatusCode != 200 {
		t.Fatalf("fresh token: %d %v", resp.StatusCode, m)
	}
	f.clock.Add(299 * time.Second)
	if resp, _ := f.do(t, "GET", "/fhir/Patient/p1", tok, "", ""); resp.StatusCode != 200 {
		t.Fatalf("token at 299 s: %d", resp.StatusCode)
	}
	f.clock.Add(time.Second)
	if resp, _ := f.do(t, "GET", "/fhir/Patient/p1", tok, "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token at 300 s: %d, want 401", resp.StatusCode)
	}

	tok = f.getToken(t, f.rsa, "life-2", "system/Patient.rs")
	resp, m := f.do(t, "GET", "/api/v1/clients", adminTok, "", "")
	if resp.StatusCode != 200 || len(m["clients"].([]any)) != 2 {
		t.Fatalf("list clients: %d %v", resp.StatusCode, m)
	}
	if resp, _ := f.do(t, "DELETE", "/api/v1/clients/"+f.rsa.id, adminTok, "", ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete client: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/fhir/Patient/p1", tok, "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token of a revoked client: %d, want 401", resp.StatusCode)
	}
	resp, m = f.tokenRequest(t, grantForm(f.assertion(t, f.rsa, f.claims(f.rsa, "life-3")), "system/Patient.rs"))
	if resp.StatusCode != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Fatalf("token request of a revoked client: %d %v", resp.StatusCode, m)
	}
	if resp, _ := f.do(t, "DELETE", "/api/v1/clients/"+f.rsa.id, adminTok, "", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("delete again: %d, want 404", resp.StatusCode)
	}
}

func TestClientRegistration(t *testing.T) {
	f := newSMARTFixture(t)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub := jose.JSONWebKey{Key: &ecKey.PublicKey, KeyID: "k", Algorithm: "ES256"}
	priv := jose.JSONWebKey{Key: ecKey, KeyID: "k", Algorithm: "ES256"}
	sym := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "k", Algorithm: "HS256"}
	body := func(jwk jose.JSONWebKey, scope string) string {
		b, _ := json.Marshal(map[string]any{"name": "x", "scope": scope, "jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}})
		return string(b)
	}
	cases := []struct {
		name   string
		token  string
		body   string
		status int
	}{
		{"public EC key", adminTok, body(pub, "system/Observation.rs"), 201},
		{"private key refused", adminTok, body(priv, "system/Observation.rs"), 400},
		{"symmetric key refused", adminTok, body(sym, "system/Observation.rs"), 400},
		{"patient scope refused", adminTok, body(pub, "patient/Observation.rs"), 400},
		{"no scope", adminTok, body(pub, ""), 400},
		{"admin role refused", adminTok, `{"name":"x","role":"admin","scope":"system/*.rs","jwks":` + body(pub, "")[strings.Index(body(pub, ""), `{"keys"`):len(body(pub, ""))-1] + `}`, 400},
		{"no token", "", body(pub, "system/Observation.rs"), 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, m := f.do(t, "POST", "/api/v1/clients", c.token, "application/json", c.body)
			if resp.StatusCode != c.status {
				t.Fatalf("got %d %v, want %d", resp.StatusCode, m, c.status)
			}
		})
	}
}

func TestSMARTConfiguration(t *testing.T) {
	f := newSMARTFixture(t)
	for _, path := range []string{"/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"} {
		resp, m := f.do(t, "GET", path, "", "", "")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		if m["token_endpoint"] != f.tokenURL() {
			t.Fatalf("%s: token_endpoint %v, want %s", path, m["token_endpoint"], f.tokenURL())
		}
		b, _ := json.Marshal(m)
		for _, want := range []string{`"private_key_jwt"`, `"RS384"`, `"ES384"`, `"client_credentials"`, `"client-confidential-asymmetric"`, `"permission-v2"`} {
			if !strings.Contains(string(b), want) {
				t.Fatalf("%s lacks %s: %s", path, want, b)
			}
		}
		if strings.Contains(string(b), `"HS256"`) || strings.Contains(string(b), `"none"`) {
			t.Fatalf("%s advertises a refused algorithm: %s", path, b)
		}
	}
}
