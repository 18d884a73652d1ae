package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/store"
)

// CreateOAuthClient registers a client; an existing id is ErrConflict.
func (s *Store) CreateOAuthClient(ctx context.Context, c store.OAuthClient) error {
	if c.ID == "" {
		return errors.New("postgres: create oauth client: empty id")
	}
	created := c.Created
	if created.IsZero() {
		created = s.now()
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO oauth_clients(id, name, org, role, scope, jwks, created) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		c.ID, c.Name, store.OrgOrDefault(c.Org), string(c.Role), c.Scope, c.JWKS, toNanos(created))
	if err != nil {
		return fmt.Errorf("postgres: create oauth client: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create oauth client %q: %w", c.ID, store.ErrConflict)
	}
	return nil
}

func scanOAuthClient(sc interface{ Scan(...any) error }) (store.OAuthClient, error) {
	var c store.OAuthClient
	var role string
	var created int64
	if err := sc.Scan(&c.ID, &c.Name, &c.Org, &role, &c.Scope, &c.JWKS, &created); err != nil {
		return store.OAuthClient{}, err
	}
	c.Role, c.Created = store.Role(role), fromNanos(created)
	return c, nil
}

const oauthClientColumns = `id, name, org, role, scope, jwks, created`

// OAuthClient returns a registered client.
func (s *Store) OAuthClient(ctx context.Context, id string) (store.OAuthClient, error) {
	c, err := scanOAuthClient(s.pool.QueryRow(ctx, `SELECT `+oauthClientColumns+` FROM oauth_clients WHERE id = $1`, id))
	if isNoRows(err) {
		return store.OAuthClient{}, fmt.Errorf("postgres: oauth client %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.OAuthClient{}, fmt.Errorf("postgres: oauth client %q: %w", id, err)
	}
	return c, nil
}

// OAuthClients lists the clients of org, or all of them for "".
func (s *Store) OAuthClients(ctx context.Context, org string) ([]store.OAuthClient, error) {
	q, args := `SELECT `+oauthClientColumns+` FROM oauth_clients ORDER BY id`, []any{}
	if org != "" {
		q, args = `SELECT `+oauthClientColumns+` FROM oauth_clients WHERE org = $1 ORDER BY id`, []any{org}
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: oauth clients: %w", err)
	}
	defer rows.Close()
	var out []store.OAuthClient
	for rows.Next() {
		c, err := scanOAuthClient(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: oauth clients: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: oauth clients: %w", err)
	}
	return out, nil
}

// DeleteOAuthClient removes the client and its tokens in one transaction.
func (s *Store) DeleteOAuthClient(ctx context.Context, id string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM oauth_clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tokens WHERE client = $1`, id); err != nil {
			return fmt.Errorf("tokens: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM oauth_jtis WHERE client = $1`, id); err != nil {
			return fmt.Errorf("jtis: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: delete oauth client %q: %w", id, err)
	}
	return nil
}

// UseJTI records an assertion id. The upsert only takes over a row whose
// use has expired, so of two nodes racing with one jti exactly one wins.
func (s *Store) UseJTI(ctx context.Context, client, jti string, expires, now time.Time) error {
	if client == "" || jti == "" {
		return errors.New("postgres: use jti: empty client or jti")
	}
	// Forget expired ids so the table holds only the last few minutes.
	if _, err := s.pool.Exec(ctx, `DELETE FROM oauth_jtis WHERE expires < $1`, toNanos(now)); err != nil {
		return fmt.Errorf("postgres: use jti: purge: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO oauth_jtis(client, jti, expires) VALUES ($1, $2, $3)
		ON CONFLICT (client, jti) DO UPDATE SET expires = excluded.expires WHERE oauth_jtis.expires < $4`,
		client, jti, toNanos(expires), toNanos(now))
	if err != nil {
		return fmt.Errorf("postgres: use jti: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: use jti: %w", store.ErrConflict)
	}
	return nil
}

// tokenScopes and scanTokenScopes store nil scopes as NULL so that "no
// scopes granted" and "not an OAuth token" stay different.
func tokenScopes(scopes []string) *string {
	if scopes == nil {
		return nil
	}
	s := strings.Join(scopes, " ")
	return &s
}

func scanTokenScopes(v *string) []string {
	if v == nil {
		return nil
	}
	return append([]string{}, strings.Fields(*v)...)
}
