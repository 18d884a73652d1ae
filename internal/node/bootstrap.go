package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// bootstrap makes sure an administrator exists without any default
// credential: the operator's TEND_BOOTSTRAP_TOKEN, or else a new admin user
// whose random password is printed once on the console (never logged).
func bootstrap(ctx context.Context, s store.Store, cfg Config) error {
	users, err := s.CountUsers(ctx, store.RoleAdmin)
	if err != nil {
		return fmt.Errorf("count admins: %w", err)
	}
	tokens, err := s.CountTokens(ctx, store.RoleAdmin)
	if err != nil {
		return fmt.Errorf("count admin tokens: %w", err)
	}
	log := cfg.Logger
	if users+tokens > 0 {
		if cfg.BootstrapToken != "" {
			if _, err := s.TokenByHash(ctx, auth.HashSecret(cfg.BootstrapToken)); errors.Is(err, store.ErrNotFound) {
				log.Warn("TEND_BOOTSTRAP_TOKEN ignored: this store already has an administrator")
			}
		}
		return nil
	}
	now := cfg.Now().UTC()
	if tok := cfg.BootstrapToken; tok != "" {
		if len(tok) < 16 {
			log.Warn("TEND_BOOTSTRAP_TOKEN is shorter than 16 characters; use a long random secret outside tests")
		}
		if err := s.PutToken(ctx, store.Token{Hash: auth.HashSecret(tok), Role: store.RoleAdmin, Subject: "bootstrap", Created: now}); err != nil {
			return fmt.Errorf("register bootstrap token: %w", err)
		}
		log.Info("registered TEND_BOOTSTRAP_TOKEN as an admin API token")
		return nil
	}
	password := auth.NewSecret()[:24]
	if err := s.CreateUser(ctx, store.User{ID: "admin", Name: "Administrator", Role: store.RoleAdmin,
		PasswordHash: auth.HashPassword(password), Created: now}); err != nil {
		return fmt.Errorf("create first admin: %w", err)
	}
	fmt.Fprintf(cfg.Console, `
First start: created the administrator account.
  username: admin
  password: %s   (shown only now; it is stored hashed)
Get an API token with:
  curl -s -X POST http://HOST/api/v1/auth/token -d '{"username":"admin","password":"<password>"}'

`, password)
	return nil
}
