package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/tendhealth/tend/internal/api"
	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/store"
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
	if a, ok := apiHandler.(interface {
		AlertBreakGlass(context.Context, store.BreakGlass)
	}); ok {
		cfg.OnBreakGlass = a.AlertBreakGlass // the dashboard's break-glass alerts like the API's
	}
	dash, err := web.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	if a, ok := apiHandler.(interface{ Routes() []string }); ok {
		n.routes = append(n.routes, a.Routes()...)
	}
	n.routes = append(n.routes, dash.Routes()...)
	return web.Mount(apiHandler, dash), nil
}

// Routes lists the HTTP route patterns the node serves ("GET /fhir/Patient",
// "/fhir/"), API first, then the dashboard; the security tests walk them
// all without credentials. Empty before Start or with HTTP off.
func (n *Node) Routes() []string { return slices.Clone(n.routes) }
