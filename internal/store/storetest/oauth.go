package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/store"
)

func testOAuthClients(t *testing.T, s store.Store) {
	a := store.OAuthClient{ID: "c-a", Name: "EHR", Org: "north", Role: store.RoleIntegration,
		Scope: "system/Observation.rs", JWKS: []byte(`{"keys":[]}`), Created: t0}
	b := store.OAuthClient{ID: "c-b", Name: "Gateway", Role: store.RoleIntegration,
		Scope: "system/*.rs", JWKS: []byte(`{"keys":[{}]}`), Created: t0.Add(time.Second)}
	must(t, s.CreateOAuthClient(ctx(t), a), "create a")
	must(t, s.CreateOAuthClient(ctx(t), b), "create b")
	wantErr(t, s.CreateOAuthClient(ctx(t), a), store.ErrConflict, "create existing id")

	got, err := s.OAuthClient(ctx(t), "c-a")
	must(t, err, "get a")
	if diff := cmp.Diff(a, got); diff != "" {
		t.Fatalf("client (-want +got):\n%s", diff)
	}
	_, err = s.OAuthClient(ctx(t), "nope")
	wantErr(t, err, store.ErrNotFound, "unknown client")

	wantB := b
	wantB.Org = store.DefaultOrg // "" is stored as the default organisation
	all, err := s.OAuthClients(ctx(t), "")
	must(t, err, "list all")
	if diff := cmp.Diff([]store.OAuthClient{a, wantB}, all); diff != "" {
		t.Fatalf("all clients (-want +got):\n%s", diff)
	}
	north, err := s.OAuthClients(ctx(t), "north")
	must(t, err, "list north")
	if diff := cmp.Diff([]store.OAuthClient{a}, north); diff != "" {
		t.Fatalf("north clients (-want +got):\n%s", diff)
	}

	// Deleting a client revokes its tokens and only its tokens.
	must(t, s.PutToken(ctx(t), store.Token{Hash: []byte("tok-a"), Role: store.RoleIntegration, Subject: "c-a", Client: "c-a",
		Created: t0, Expires: t0.Add(5 * time.Minute), Scopes: []string{"system/Observation.rs"}}), "put token a")
	must(t, s.PutToken(ctx(t), store.Token{Hash: []byte("tok-b"), Role: store.RoleIntegration, Subject: "c-b", Client: "c-b",
		Created: t0, Expires: t0.Add(5 * time.Minute), Scopes: []string{}}), "put token b")
	must(t, s.DeleteOAuthClient(ctx(t), "c-a"), "delete a")
	wantErr(t, s.DeleteOAuthClient(ctx(t), "c-a"), store.ErrNotFound, "delete again")
	_, err = s.OAuthClient(ctx(t), "c-a")
	wantErr(t, err, store.ErrNotFound, "deleted client")
	_, err = s.TokenByHash(ctx(t), []byte("tok-a"))
	wantErr(t, err, store.ErrNotFound, "token of deleted client")
	_, err = s.TokenByHash(ctx(t), []byte("tok-b"))
	must(t, err, "token of other client")
}

func testOAuthJTIReplay(t *testing.T, s store.Store) {
	exp := t0.Add(5 * time.Minute)
	must(t, s.UseJTI(ctx(t), "c1", "j1", exp, t0), "first use")
	wantErr(t, s.UseJTI(ctx(t), "c1", "j1", exp, t0.Add(time.Minute)), store.ErrConflict, "replay before expiry")
	must(t, s.UseJTI(ctx(t), "c2", "j1", exp, t0), "same jti, other client")
	must(t, s.UseJTI(ctx(t), "c1", "j2", exp, t0), "other jti")
	// Once the first use has expired the assertion itself has expired too
	// (its exp is the record's expiry), so the id may be forgotten.
	must(t, s.UseJTI(ctx(t), "c1", "j1", exp.Add(10*time.Minute), exp.Add(time.Second)), "reuse after expiry")
	wantErr(t, s.UseJTI(ctx(t), "c1", "j1", exp.Add(10*time.Minute), exp.Add(2*time.Second)), store.ErrConflict, "replay of the reuse")

	// Concurrent uses of one jti: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.UseJTI(ctx(t), "c3", "race", exp, t0)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("concurrent use: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent uses of one jti succeeded, want 1", won, len(errs))
	}
}

func testOAuthTokens(t *testing.T, s store.Store) {
	cases := []store.Token{
		// A plain API token: no expiry, nil scopes (the role decides).
		{Hash: []byte("plain"), Role: store.RoleAdmin, Subject: "bootstrap", Org: store.DefaultOrg, Created: t0},
		// An access token with scopes, an expiry and its client.
		{Hash: []byte("access"), Role: store.RoleIntegration, Subject: "c1", Org: "north", Created: t0,
			Expires: t0.Add(5 * time.Minute), Scopes: []string{"system/Observation.rs", "system/Patient.r"}, Client: "c1"},
		// Granted no scope at all: empty, not nil, so it opens nothing.
		{Hash: []byte("empty"), Role: store.RoleIntegration, Subject: "c1", Org: "north", Created: t0,
			Expires: t0.Add(5 * time.Minute), Scopes: []string{}, Client: "c1"},
	}
	for _, tok := range cases {
		must(t, s.PutToken(ctx(t), tok), "put")
		got, err := s.TokenByHash(ctx(t), tok.Hash)
		must(t, err, "get")
		if diff := cmp.Diff(tok, got); diff != "" {
			t.Fatalf("token %s (-want +got):\n%s", tok.Hash, diff)
		}
		if (tok.Scopes == nil) != (got.Scopes == nil) {
			t.Fatalf("token %s: nil scopes %v came back as nil %v", tok.Hash, tok.Scopes == nil, got.Scopes == nil)
		}
	}
}
