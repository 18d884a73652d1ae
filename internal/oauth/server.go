package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// TokenTTL is how long an access token works: SMART Backend Services
// recommends five minutes, after which the client signs a new assertion.
const TokenTTL = 5 * time.Minute

// Store is what the OAuth server keeps.
type Store interface {
	store.OAuthStore
	PutToken(ctx context.Context, t store.Token) error
}

// Config wires a Server.
type Config struct {
	Store  Store
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
	// NewID returns a fresh client id; default 16 random hex digits.
	NewID func() string
}

// Server registers clients and issues access tokens.
type Server struct {
	store Store
	now   func() time.Time
	log   *slog.Logger
	newID func() string
}

// New returns a Server; it starts nothing.
func New(cfg Config) *Server {
	s := &Server{store: cfg.Store, now: cfg.Now, log: cfg.Logger, newID: cfg.NewID}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.newID == nil {
		s.newID = func() string {
			var b [8]byte
			rand.Read(b[:]) // never fails on supported platforms
			return hex.EncodeToString(b[:])
		}
	}
	return s
}

// Error is an OAuth error response (RFC 6749 §5.2). Description is safe
// to show the client; detail is only logged.
type Error struct {
	Status      int
	Code        string // invalid_request, invalid_client, invalid_grant, invalid_scope, unsupported_grant_type
	Description string
	detail      error
}

func (e *Error) Error() string {
	if e.detail != nil {
		return e.Code + ": " + e.Description + ": " + e.detail.Error()
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.detail }

// invalidClient is the one answer to every failed client authentication:
// saying which check failed would help an attacker more than a client.
func invalidClient(detail error) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_client", Description: "client authentication failed", detail: detail}
}

// TokenResponse is a successful token response (RFC 6749 §5.1).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
	// The client the token was issued to, for the audit trail; not sent.
	Client store.OAuthClient `json:"-"`
}

// Token runs the client_credentials grant with a private_key_jwt client
// assertion. form is the request's form body; audiences are the URLs by
// which this token endpoint is known (the assertion's aud must be one).
// A failure is an *Error; anything else is an internal error.
func (s *Server) Token(ctx context.Context, form url.Values, audiences []string) (TokenResponse, error) {
	for k, v := range form {
		// RFC 6749 §3.2: parameters must not be repeated.
		if len(v) > 1 {
			return TokenResponse{}, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: "parameter " + k + " is repeated"}
		}
	}
	switch form.Get("grant_type") {
	case "client_credentials":
	case "":
		return TokenResponse{}, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: "grant_type is required"}
	default:
		return TokenResponse{}, &Error{Status: http.StatusBadRequest, Code: "unsupported_grant_type", Description: "only client_credentials is supported"}
	}
	if form.Get("client_secret") != "" {
		return TokenResponse{}, invalidClient(errors.New("client_secret given: only private_key_jwt is supported"))
	}
	if form.Get("client_assertion_type") != AssertionType {
		return TokenResponse{}, &Error{Status: http.StatusBadRequest, Code: "invalid_request",
			Description: "client_assertion_type must be " + AssertionType}
	}
	raw := form.Get("client_assertion")
	if raw == "" {
		return TokenResponse{}, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: "client_assertion is required"}
	}
	now := s.now()
	var client store.OAuthClient
	var storeErr error // an outage, answered 503 so the client retries
	lookup := func(ctx context.Context, id string) (jose.JSONWebKeySet, error) {
		c, err := s.store.OAuthClient(ctx, id)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				storeErr = err
			}
			return jose.JSONWebKeySet{}, err
		}
		set, err := ParseJWKS(c.JWKS)
		if err != nil {
			return jose.JSONWebKeySet{}, fmt.Errorf("registered jwks: %w", err)
		}
		client = c
		return set, nil
	}
	a, err := VerifyAssertion(ctx, raw, audiences, now, lookup)
	if err != nil {
		if storeErr != nil {
			return TokenResponse{}, fmt.Errorf("look up client: %w", storeErr)
		}
		return TokenResponse{}, invalidClient(err)
	}
	if id := form.Get("client_id"); id != "" && id != a.Client {
		return TokenResponse{}, invalidClient(errors.New("client_id differs from the assertion's iss"))
	}
	// The jti is kept until the assertion could no longer be accepted.
	if err := s.store.UseJTI(ctx, a.Client, a.JTI, a.Expires.Add(ClockSkew), now); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return TokenResponse{}, invalidClient(errors.New("jti replayed"))
		}
		return TokenResponse{}, fmt.Errorf("record jti: %w", err)
	}
	granted, oerr := grantFor(client, form.Get("scope"))
	if oerr != nil {
		return TokenResponse{}, oerr
	}
	tok := auth.NewSecret()
	scopes := Strings(granted)
	if err := s.store.PutToken(ctx, store.Token{Hash: auth.HashSecret(tok), Role: client.Role, Subject: client.ID, Org: client.Org,
		Created: now, Expires: now.Add(TokenTTL), Scopes: scopes, Client: client.ID}); err != nil {
		return TokenResponse{}, fmt.Errorf("store access token: %w", err)
	}
	return TokenResponse{AccessToken: tok, TokenType: "bearer", ExpiresIn: int(TokenTTL / time.Second), Scope: strings.Join(scopes, " "), Client: client}, nil
}

// grantFor intersects the requested scopes with the client's registered
// ones. Backend clients act for no patient and no user, so only system/
// scopes can be granted.
func grantFor(c store.OAuthClient, requested string) ([]Scope, *Error) {
	if strings.TrimSpace(requested) == "" {
		return nil, &Error{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "scope is required"}
	}
	req, err := ParseScopes(requested)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: "invalid_scope", Description: err.Error()}
	}
	for _, r := range req {
		if r.Context != ContextSystem {
			return nil, &Error{Status: http.StatusBadRequest, Code: "invalid_scope",
				Description: fmt.Sprintf("%s: a backend client has no %s context; request system/ scopes", r, r.Context)}
		}
	}
	reg, err := ParseScopes(c.Scope)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "the client's registered scopes are invalid", detail: err}
	}
	granted := Grant(req, reg)
	if len(granted) == 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: "invalid_scope", Description: "none of the requested scopes is registered for this client"}
	}
	return granted, nil
}

// Registration is what an administrator sends to register a client.
type Registration struct {
	Name  string          `json:"name"`
	JWKS  json.RawMessage `json:"jwks"`
	Scope string          `json:"scope"`
	Role  store.Role      `json:"role"`
}

// RegistrationError is a refused registration; its message is safe to
// show the administrator.
type RegistrationError struct{ Msg string }

func (e *RegistrationError) Error() string { return e.Msg }

// Register validates and stores a new client of org.
func (s *Server) Register(ctx context.Context, reg Registration, org string) (store.OAuthClient, error) {
	bad := func(format string, args ...any) error { return &RegistrationError{Msg: fmt.Sprintf(format, args...)} }
	name := strings.TrimSpace(reg.Name)
	if name == "" || len(name) > 200 {
		return store.OAuthClient{}, bad("name is required (at most 200 characters)")
	}
	if reg.Role == "" {
		reg.Role = store.RoleIntegration
	}
	if reg.Role != store.RoleIntegration {
		return store.OAuthClient{}, bad(`role must be "integration"`)
	}
	if len(reg.JWKS) == 0 {
		return store.OAuthClient{}, bad("jwks is required: the client's public JSON Web Key Set")
	}
	if _, err := ParseJWKS(reg.JWKS); err != nil {
		return store.OAuthClient{}, bad("%v", err)
	}
	scopes, err := ParseScopes(reg.Scope)
	if err != nil {
		return store.OAuthClient{}, bad("%v", err)
	}
	if len(scopes) == 0 {
		return store.OAuthClient{}, bad("scope is required, e.g. system/Observation.rs")
	}
	for _, sc := range scopes {
		if sc.Context != ContextSystem {
			return store.OAuthClient{}, bad("%s: backend clients may hold system/ scopes only", sc)
		}
	}
	if org == "" {
		org = store.DefaultOrg
	}
	c := store.OAuthClient{ID: s.newID(), Name: name, Org: org, Role: reg.Role, Scope: strings.Join(Strings(scopes), " "),
		JWKS: compactJSON(reg.JWKS), Created: s.now().UTC()}
	if err := s.store.CreateOAuthClient(ctx, c); err != nil {
		return store.OAuthClient{}, fmt.Errorf("register client: %w", err)
	}
	return c, nil
}

func compactJSON(b []byte) []byte {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}
