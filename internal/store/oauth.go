package store

import (
	"context"
	"time"
)

// OAuthClient is a system registered for SMART Backend Services: it proves
// who it is by signing a JWT with a private key whose public half is in
// JWKS, and is granted at most Scope.
type OAuthClient struct {
	ID    string
	Name  string
	Org   string // the organisation its tokens act in; "" is stored as DefaultOrg
	Role  Role   // the role its access tokens carry
	Scope string // the SMART scopes it may be granted, space-separated
	// JWKS is the client's public JSON Web Key Set, as registered.
	JWKS    []byte
	Created time.Time
}

// OAuthStore keeps OAuth clients and the assertion ids (jti) they have used.
type OAuthStore interface {
	CreateOAuthClient(ctx context.Context, c OAuthClient) error // ErrConflict if the id exists
	OAuthClient(ctx context.Context, id string) (OAuthClient, error)
	// OAuthClients lists the clients of org ("" lists every client),
	// ordered by id.
	OAuthClients(ctx context.Context, org string) ([]OAuthClient, error)
	// DeleteOAuthClient removes the client and every token issued to it,
	// so they stop working at once; ErrNotFound if absent.
	DeleteOAuthClient(ctx context.Context, id string) error
	// UseJTI records that client used assertion id jti, valid until
	// expires. It is ErrConflict if the same client already used jti and
	// that use has not expired at now: a replayed assertion. Expired
	// records may be forgotten.
	UseJTI(ctx context.Context, client, jti string, expires, now time.Time) error
}
