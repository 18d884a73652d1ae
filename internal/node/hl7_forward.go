package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/tendhealth/tend/internal/hl7/outbound"
	"github.com/tendhealth/tend/internal/mllp"
)

// hl7ForwarderLease names the one node that forwards readings to the EHR:
// the forwarder sends strictly in order, and two forwarders sharing its
// durable consumer would interleave and acknowledge each other's messages.
const hl7ForwarderLease = "hl7-forwarder"

// HL7Forward configures forwarding readings to an EHR as HL7 ORU^R01.
type HL7Forward struct {
	Addr              string // EHR MLLP endpoint host:port; "" disables forwarding
	TLSCA             string // PEM CA of the EHR's certificate; "" means plain TCP
	SendingFacility   string // MSH-4
	ReceivingApp      string // MSH-5
	ReceivingFacility string // MSH-6
}

func (c HL7Forward) enabled() bool { return c.Addr != "" }

// durables is the forwarder's stream consumer when forwarding is on, so
// the stream keeps what the EHR has not yet accepted.
func (c HL7Forward) durables() []string {
	if !c.enabled() {
		return nil
	}
	return []string{outbound.DefaultDurable}
}

func (c HL7Forward) leases() []string {
	if !c.enabled() {
		return nil
	}
	return []string{hl7ForwarderLease}
}

// hl7Fwd is the node's part in forwarding: the settings checked at
// start, and the forwarder while this node holds the lease.
type hl7Fwd struct {
	tls     *tls.Config
	metrics *outbound.Metrics

	mu  sync.Mutex
	fwd *outbound.Forwarder
}

// prepareForwarding checks the forwarding settings, so a wrong address or
// CA file stops the start instead of failing later in the background.
func (n *Node) prepareForwarding() error {
	c := n.cfg.HL7Forward
	if !c.enabled() {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("--hl7-forward %q: want HOST:PORT: %w", c.Addr, err)
	}
	f := &hl7Fwd{}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return fmt.Errorf("--hl7-forward-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--hl7-forward-tls-ca %s: no PEM certificate in the file", c.TLSCA)
		}
		f.tls = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	pending := func(ctx context.Context) (uint64, error) { return n.stream.Pending(ctx, outbound.DefaultDurable) }
	if f.metrics, err = outbound.NewMetrics(n.registry, pending); err != nil {
		return err
	}
	n.forwarding = f
	return nil
}

// startForwarder runs the forwarder; called when this node takes the lease.
func (n *Node) startForwarder() {
	f := n.forwarding
	if f == nil {
		return
	}
	c := n.cfg.HL7Forward
	fwd := &outbound.Forwarder{
		Stream: n.stream, Registry: n.store,
		Sender: &mllp.Client{Addr: c.Addr, TLS: f.tls},
		Header: outbound.Header{SendingFacility: c.SendingFacility, ReceivingApp: c.ReceivingApp, ReceivingFacility: c.ReceivingFacility},
		Now:    n.cfg.Now, Logger: n.cfg.Logger, Metrics: f.metrics,
	}
	if err := fwd.Start(context.Background()); err != nil {
		n.cfg.Logger.Error("start HL7 forwarder", "err", err)
		return
	}
	f.mu.Lock()
	f.fwd = fwd
	f.mu.Unlock()
	n.cfg.Logger.Info("forwarding readings to the EHR over HL7", "to", c.Addr)
}

// stopForwarder stops it when the lease is handed over or lost: the
// message in hand is abandoned unacknowledged and sent again by the next
// holder.
func (n *Node) stopForwarder() {
	f := n.forwarding
	if f == nil {
		return
	}
	f.mu.Lock()
	fwd := f.fwd
	f.fwd = nil
	f.mu.Unlock()
	if fwd != nil {
		fwd.Close()
	}
}
