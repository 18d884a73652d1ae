package postgres

import (
	"errors"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// Two nodes share one database: an assertion id used on one is refused on
// the other, and a client deleted on one has no working tokens on the
// other.
func TestOAuthAcrossNodes(t *testing.T) {
	url := testSchema(t)
	a, b := openAt(t, url), openAt(t, url)
	exp := fixedNow.Add(5 * time.Minute)
	if err := a.UseJTI(t.Context(), "client-1", "jti-1", exp, fixedNow); err != nil {
		t.Fatalf("first use on node a: %v", err)
	}
	if err := b.UseJTI(t.Context(), "client-1", "jti-1", exp, fixedNow.Add(time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("replay on node b: got %v, want ErrConflict", err)
	}

	c := store.OAuthClient{ID: "client-1", Name: "EHR", Role: store.RoleIntegration, Scope: "system/Observation.rs", JWKS: []byte(`{"keys":[]}`)}
	if err := a.CreateOAuthClient(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	tok := store.Token{Hash: []byte("h1"), Role: store.RoleIntegration, Subject: c.ID, Client: c.ID, Expires: exp, Scopes: []string{"system/Observation.rs"}}
	if err := a.PutToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := b.TokenByHash(t.Context(), tok.Hash); err != nil {
		t.Fatalf("token on node b: %v", err)
	}
	if err := b.DeleteOAuthClient(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TokenByHash(t.Context(), tok.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("token of a client deleted on node b, on node a: got %v, want ErrNotFound", err)
	}
}
