package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/ingest"
	"github.com/tendhealth/tend/internal/store"
)

// postObservations is the HTTP device uplink. 202 means durable.
func (h *Handler) postObservations(w http.ResponseWriter, r *http.Request) error {
	p := h.cfg.Ingest
	device := r.PathValue("id")
	limit := int64(p.Limits.MaxBytes)
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Detail: "could not read the request body"}
	}
	req := ingest.Request{Source: "http", Device: device, ContentType: r.Header.Get("Content-Type"), Payload: body}

	if chain := peerChain(r); len(chain) > 0 && p.CertificateDevice(chain[0]) == device {
		// Mutual TLS with a certificate issued for this device (devicecerts.go).
		err = p.AuthenticateCertificate(r.Context(), device, chain)
	} else {
		var secret string
		if secret, err = auth.BearerToken(r); err == nil {
			err = p.Authenticate(r.Context(), device, secret)
		}
	}
	if err != nil {
		if !errors.Is(err, ingest.ErrBadCredentials) && !errors.Is(err, auth.ErrNoCredentials) && !errors.Is(err, auth.ErrNotBearer) {
			return err
		}
		// Kept for the operator to see, but marked so it can never be
		// replayed: nothing proves it came from the device it names.
		req.Source = ingest.SourceUnauthenticated
		return p.Reject(r.Context(), req, &ingest.Rejection{Status: http.StatusUnauthorized,
			Reason: "authentication failed: send the device secret as Authorization: Bearer <secret>, or connect with a client certificate issued for this device"})
	}
	if int64(len(body)) > limit {
		return p.Reject(r.Context(), req, &ingest.Rejection{Status: http.StatusRequestEntityTooLarge,
			Reason: fmt.Sprintf("payload is over the %d byte limit", limit)})
	}
	n, err := p.Ingest(r.Context(), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, map[string]any{"accepted": n})
}

type credentials struct {
	Device   string `json:"device"`
	Username string `json:"username"`
	Secret   string `json:"secret"`
}

// postCredentials issues a new device secret, replacing any earlier one and
// closing the device's open connections so the old secret stops at once.
func (h *Handler) postCredentials(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if d, err := h.cfg.Store.Device(r.Context(), id); err != nil || store.OrgOrDefault(d.Org) != requestOrg(r) {
		if err == nil || errors.Is(err, store.ErrNotFound) { // another organisation's device does not exist here
			return &Error{Status: http.StatusNotFound, Detail: fmt.Sprintf("no device %q; create it with POST /fhir/Device first", id)}
		}
		return err
	}
	secret := auth.NewSecret()
	if err := h.cfg.Store.SetDeviceSecret(r.Context(), id, auth.HashSecret(secret)); err != nil {
		return fmt.Errorf("store device secret: %w", err)
	}
	closed := 0
	for _, k := range h.cfg.Kickers {
		closed += k.Disconnect(id)
	}
	h.cfg.Logger.Info("device credentials issued", "device", id, "closed_connections", closed)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, credentials{Device: id, Username: id, Secret: secret})
}
