package node

import (
	"fmt"
	"path/filepath"

	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/totp"
	"github.com/tendhealth/tend/internal/web"
)

// signInChecker is the one sign-in checker of the dashboard and the API
// login, so lockout, second factors and the report of every attempt are
// the same for both. TOTP secrets are sealed with a key derived from the
// data directory's web-session.key: nodes sharing a store must share that
// file.
func (n *Node) signInChecker() (*signin.Checker, []byte, error) {
	key, err := web.LoadOrCreateKey(filepath.Join(n.cfg.DataDir, "web-session.key"))
	if err != nil {
		return nil, nil, err
	}
	sealer, err := totp.DerivedSealer(key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign-in: %w", err)
	}
	return signin.New(signin.Config{Store: n.store, Sealer: sealer, RequireTOTP: n.cfg.RequireTOTP,
		Now: n.cfg.Now, Logger: n.cfg.Logger}), key, nil
}
