package store

import (
	"context"
	"time"
)

// JTI is an assertion id an OAuth client used, remembered until Expires
// so that the assertion cannot be replayed (OAuthStore.UseJTI).
type JTI struct {
	Client  string
	JTI     string
	Expires time.Time
}

// KeyedSignInFailures is the failure counter under one key (a user name or
// a source address).
type KeyedSignInFailures struct {
	Key string
	SignInFailures
}

// ArchiveStore lists and loads what `tend export` and `tend import` carry
// and no other method reaches. It is embedded in Store.
type ArchiveStore interface {
	// PutOrg creates an organisation or replaces the one with the same id
	// (every new store already holds DefaultOrg).
	PutOrg(ctx context.Context, o Organisation) error
	// JTIs lists the assertion ids still remembered at now (not expired),
	// ordered by client and jti.
	JTIs(ctx context.Context, now time.Time) ([]JTI, error)
	// AllSignInFailures lists every failure counter, ordered by key.
	AllSignInFailures(ctx context.Context) ([]KeyedSignInFailures, error)
	// PutSignInFailures sets the counter under key (a zero Count removes it).
	PutSignInFailures(ctx context.Context, key string, f SignInFailures) error
}
