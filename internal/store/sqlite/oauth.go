package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// CreateOAuthClient registers a client; an existing id is ErrConflict.
func (s *Store) CreateOAuthClient(ctx context.Context, c store.OAuthClient) error {
	if c.ID == "" {
		return errors.New("sqlite: create oauth client: empty id")
	}
	created := c.Created
	if created.IsZero() {
		created = s.now()
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO oauth_clients(id, name, org, role, scope, jwks, created) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		c.ID, c.Name, store.OrgOrDefault(c.Org), string(c.Role), c.Scope, c.JWKS, toNanos(created))
	if err != nil {
		return fmt.Errorf("sqlite: create oauth client: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: create oauth client %q: %w", c.ID, store.ErrConflict)
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
	c, err := scanOAuthClient(s.r.QueryRowContext(ctx, `SELECT `+oauthClientColumns+` FROM oauth_clients WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.OAuthClient{}, fmt.Errorf("sqlite: oauth client %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.OAuthClient{}, fmt.Errorf("sqlite: oauth client %q: %w", id, err)
	}
	return c, nil
}

// OAuthClients lists the clients of org, or all of them for "".
func (s *Store) OAuthClients(ctx context.Context, org string) ([]store.OAuthClient, error) {
	q, args := `SELECT `+oauthClientColumns+` FROM oauth_clients ORDER BY id`, []any{}
	if org != "" {
		q, args = `SELECT `+oauthClientColumns+` FROM oauth_clients WHERE org = ? ORDER BY id`, []any{org}
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: oauth clients: %w", err)
	}
	defer rows.Close()
	var out []store.OAuthClient
	for rows.Next() {
		c, err := scanOAuthClient(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: oauth clients: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: oauth clients: %w", err)
	}
	return out, nil
}

// DeleteOAuthClient removes the client and its tokens in one transaction.
func (s *Store) DeleteOAuthClient(ctx context.Context, id string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: delete oauth client: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM oauth_clients WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("sqlite: delete oauth client: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: delete oauth client %q: %w", id, store.ErrNotFound)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE client = ?`, id); err != nil {
		return fmt.Errorf("sqlite: delete oauth client tokens: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_jtis WHERE client = ?`, id); err != nil {
		return fmt.Errorf("sqlite: delete oauth client jtis: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: delete oauth client: commit: %w", err)
	}
	return nil
}

// UseJTI records an assertion id. The upsert only takes over a row whose
// use has expired, so of two concurrent uses of one jti exactly one wins.
func (s *Store) UseJTI(ctx context.Context, client, jti string, expires, now time.Time) error {
	if client == "" || jti == "" {
		return errors.New("sqlite: use jti: empty client or jti")
	}
	// Forget expired ids first so the table stays as small as the number
	// of assertions of the last few minutes.
	if _, err := s.w.ExecContext(ctx, `DELETE FROM oauth_jtis WHERE expires < ?`, toNanos(now)); err != nil {
		return fmt.Errorf("sqlite: use jti: purge: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO oauth_jtis(client, jti, expires) VALUES (?, ?, ?)
		ON CONFLICT(client, jti) DO UPDATE SET expires = excluded.expires WHERE oauth_jtis.expires < ?`,
		client, jti, toNanos(expires), toNanos(now))
	if err != nil {
		return fmt.Errorf("sqlite: use jti: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: use jti: %w", store.ErrConflict)
	}
	return nil
}

// tokenScopes and scanTokenScopes store nil scopes as NULL so that "no
// scopes granted" and "not an OAuth token" stay different.
func tokenScopes(scopes []string) any {
	if scopes == nil {
		return nil
	}
	return strings.Join(scopes, " ")
}

func scanTokenScopes(v sql.NullString) []string {
	if !v.Valid {
		return nil
	}
	return append([]string{}, strings.Fields(v.String)...)
}
