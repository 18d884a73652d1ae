package node

import (
	"fmt"
	"net/http"

	"github.com/tendhealth/tend/internal/api"
	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/web"
)

// withDashboard serves the web dashboard at / beside the API (which keeps
// /api, /fhir, /healthz, /readyz and /metrics). Its session key lives in
// the data directory; sessions are in the store, so a restart signs nobody
// out and signing out ends a session on every node.
func (n *Node) withDashboard(apiHandler http.Handler, kickers []api.Kicker, checker *signin.Checker, key []byte) (http.Handler, error) {
	cfg := web.Config{Store: n.store, Live: n.hub, SessionKey: key, OnDeviceChanged: n.pipeline.InvalidateDevice,
		Now: n.cfg.Now, Logger: n.cfg.Logger, SignIn: checker, SessionIdle: n.cfg.SessionIdle}
	if n.alarms != nil {
		cfg.Alarms, cfg.AlarmStore, cfg.Profiles = n.alarms.service, n.alarms.db, n.alarms.profiles
	}
	for _, k := range kickers {
		cfg.Kickers = append(cfg.Kickers, k)
	}
	dash, err := web.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return web.Mount(apiHandler, dash), nil
}
