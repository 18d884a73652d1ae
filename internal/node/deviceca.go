package node

import (
	"context"
	"fmt"
	"os"

	"github.com/tendhealth/tend/internal/deviceca"
	"github.com/tendhealth/tend/internal/store"
)

// deviceCertVerifier is the node's one verifier of device certificates,
// shared by the TLS listeners (handshake) and the ingest pipeline (MQTT
// CONNECT, HTTP requests).
func (n *Node) deviceCertVerifier() *deviceca.Verifier {
	if n.deviceCerts == nil {
		n.deviceCerts = deviceca.NewVerifier(n.store, n.cfg.Now)
	}
	return n.deviceCerts
}

// deviceCA issues (with Config.DeviceCAKey) and revokes through the API.
func (n *Node) deviceCA() *deviceca.Authority {
	return &deviceca.Authority{Store: n.store, Key: n.cfg.DeviceCAKey, Now: n.cfg.Now}
}

// startRevocationWatch closes MQTT connections of devices whose
// certificate was revoked elsewhere (another node, tend ca revoke); only
// MQTT over TLS holds such connections, and HTTP checks every request.
func (n *Node) startRevocationWatch(ctx context.Context) error {
	if n.mqtt == nil || n.tls == nil {
		return nil
	}
	n.revocations = &deviceca.Watcher{Store: n.store, Kick: n.mqtt.Disconnect, Interval: n.cfg.RevocationPoll,
		Now: n.cfg.Now, Logger: n.cfg.Logger}
	if err := n.revocations.Start(ctx); err != nil {
		n.revocations = nil
		return err
	}
	return nil
}

func (n *Node) stopRevocationWatch() error {
	if n.revocations == nil {
		return nil
	}
	return n.revocations.Close()
}

// OpenStore opens (and migrates) the node's store as `tend serve` would,
// without starting anything, for operator commands such as `tend ca`.
func OpenStore(ctx context.Context, cfg Config) (store.Store, error) {
	cfg = New(cfg).cfg
	if cfg.StoreURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}
	return openStore(ctx, cfg)
}
