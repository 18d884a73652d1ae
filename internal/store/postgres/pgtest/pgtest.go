// Package pgtest gives tests a private PostgreSQL schema on the server in
// TEND_TEST_POSTGRES_URL (default: the local test database), and skips
// them, saying why, when there is no server.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the development and CI machines' PostgreSQL (trust auth).
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// BaseURL is TEND_TEST_POSTGRES_URL or DefaultURL.
func BaseURL() string {
	if u := os.Getenv("TEND_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Schema creates a fresh schema for one test and returns a connection URL
// whose search_path selects it; the schema is dropped at cleanup. redact
// hides a password when the URL is shown.
func Schema(t testing.TB, redact func(string) string) string {
	t.Helper()
	base := BaseURL()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Skipf("PostgreSQL at %s is unreachable (set TEND_TEST_POSTGRES_URL to use another): %v", redact(base), err)
	}
	defer admin.Close(context.Background())
	var b [6]byte
	rand.Read(b[:])
	schema := "tend_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TEND_TEST_POSTGRES_URL must be a URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
